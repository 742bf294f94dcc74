"""The ``autoaccel`` command. Thin: every command calls into the library."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoaccel.errors import ConfigError, DataError


def _optimizers(args: argparse.Namespace) -> int:
    from autoaccel.optim import techniques

    TECHNIQUES = techniques()

    if args.json:
        rows = [
            {
                "name": t.name,
                "kind": t.kind,
                "summary": t.summary,
                "reference": t.reference,
                "hyperparameters": [
                    {"key": key, "default": h.default, "allowed": h.allowed(), "help": h.help}
                    for key, h in t.hyperparameters
                ],
            }
            for t in TECHNIQUES.values()
        ]
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    for t in TECHNIQUES.values():
        print(f"{t.name} ({t.kind}) — {t.summary} [{t.reference}]")
        width = max((len(key) for key, _ in t.hyperparameters), default=0)
        for key, h in t.hyperparameters:
            default = "required" if h.default is None and not h.nullable else json.dumps(h.default)
            print(f"    {key:<{width}}  default {default:<9} {h.allowed():<34} {h.help}")
        print()
    return 0


def _workloads(args: argparse.Namespace) -> int:
    from autoaccel.workloads import WORKLOADS, options_table

    rows = []
    for name in WORKLOADS:
        cls = WORKLOADS[name]
        rows.append(
            {
                "name": name,
                "task": cls.task,
                "summary": cls.summary,
                "metric": cls.metric,
                "mode": cls.mode,
                "target": cls().target,
                "default_batch_size": cls.default_batch_size,
                "options": options_table(cls),
            }
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    for row in rows:
        print(f"{row['name']} ({row['task']}) — {row['summary']}")
        print(
            f"    metric {row['metric']} ({row['mode']}), target {row['target']:g}, "
            f"default batch size {row['default_batch_size']}"
        )
        width = max((len(o["key"]) for o in row["options"]), default=0)
        for o in row["options"]:
            print(f"    {o['key']:<{width}}  default {json.dumps(o['default']):<9} {o['allowed']:<30} {o['help']}")
        print()
    return 0


def _train(args: argparse.Namespace) -> int:
    from autoaccel.cli.train import train_command

    return train_command(args)


def _spaces_show(args: argparse.Namespace) -> int:
    from autoaccel.sweep.space import load_space, show

    print(show(load_space(args.file), samples=args.samples, seed=args.seed))
    return 0


def _resume_hint(args: argparse.Namespace) -> str:
    """The command that continues this sweep, as typed (every --set included): it must pass the resume check."""
    words = ["autoaccel", args.command, args.spec, *(w for value in args.set for w in ("--set", value))]
    words += ["--address", args.address] if args.address else []
    words += ["--output-json", args.output_json] if args.output_json else []
    words += ["--out", args.out] if getattr(args, "out", None) else []  # compare: the report where it was asked for
    return "interrupted; continue with: " + " ".join(shlex.quote(w) for w in [*words, "--resume"])


def _sweep(args: argparse.Namespace) -> int:
    from autoaccel.comparison import report_folder
    from autoaccel.sweep import load_spec, run_sweep

    spec = load_spec(args.spec, args.set)  # every bad input fails here, before Ray starts
    report = report_folder(spec, args.out) if args.command == "compare" else None
    _check_outputs(files={"--output-json": args.output_json}, folders={"--out": report})  # written after the work
    if args.check:
        from autoaccel.sweep.preflight import check_environment

        ran = check_environment(spec, args.address)  # what run_sweep checks before Ray starts
        print(f"{args.spec}: valid ({_trials_planned(spec)}, folder {spec.folder})")
        if ran:
            print(f"{_workload_name(spec)}: {ran}")
        return 0
    try:
        result = run_sweep(spec, resume=args.resume, address=args.address)
    except KeyboardInterrupt:
        print(_resume_hint(args), file=sys.stderr)
        return 130
    if args.output_json:
        from autoaccel.redaction import redact_uri

        with open(args.output_json, "w") as handle:
            json.dump({**result, "tracking_uri": redact_uri(result["tracking_uri"])}, handle, indent=2, default=str)
    if result["unfinished"]:  # Ctrl-C: Ray stops the trials and fit() returns
        print(_resume_hint(args), file=sys.stderr)
        return 130
    code = 0
    if args.command == "compare":
        code = _report_and_print([spec.experiment], spec.tracking_uri, report)
    errored = result["statuses"].get("errored", 0)
    if errored:  # recorded and reported as failures; the exit status says so too, for scripts and schedulers
        where = Path(result["folder"]) / "tune"
        print(f"{errored} trial(s) errored: their tracebacks are in {where}/**/error.txt", file=sys.stderr)
        return code or 1
    return code


def _workload_name(spec: Any) -> str:
    from autoaccel.workloads import workload_class

    return workload_class(spec.workload["name"]).name  # a "module:Class" is named as it names itself


def _trials_planned(spec: Any) -> str:
    """What a sweep will train, in words: its trials, or a comparison's tuning trials and final runs."""
    name = _workload_name(spec)
    if spec.compare is None:
        return f"{spec.num_samples} trials of {name}"
    tuning, final = spec.compare.tuning_trials, spec.compare.final_trials
    return f"{tuning} tuning trials + {final} final runs = {tuning + final} trials of {name}"


def _check_outputs(*, files: Mapping[str, str | None], folders: Mapping[str, str | None]) -> None:
    """Every place a command will write (flag → path; None: not asked for), checked before it starts any work."""
    from autoaccel.paths import check_output_file, check_output_folder

    for key, path in files.items():
        if path is not None:
            check_output_file(key, path)
    for key, path in folders.items():
        if path is not None:
            check_output_folder(key, path)


def _report_and_print(experiments: list[str], uri: str | None, out: str, parquet: Sequence[str] = ()) -> int:
    from autoaccel.analysis import build_report

    try:
        written = build_report(experiments, uri, out, parquet=parquet)
    except ValueError as error:  # no such experiment, no trials: one clear line
        print(f"autoaccel report: error: {error}", file=sys.stderr)
        return 2
    for line in written["verdict"]:
        print(line)
    print(f"report of {written['runs']} trials: {written['html']} (summary {written['markdown']})")
    return 0


def _store(args: argparse.Namespace) -> str:
    """``--tracking-uri`` (a relative SQLite path is relative to the working folder), else the first experiment's
    default store (:func:`autoaccel.tracking.sweep_tracking_uri`)."""
    from autoaccel.tracking import check_tracking_uri, resolve_tracking_uri, sweep_tracking_uri

    if not args.tracking_uri:
        return sweep_tracking_uri(args.experiment[0])
    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_uri(uri, key="--tracking-uri")
    return uri


def _export(args: argparse.Namespace) -> int:
    from autoaccel.analysis import export

    store = _store(args)
    _check_outputs(files={}, folders={"--out": args.out})
    try:
        result = export(args.experiment, store, args.out)
    except ValueError as error:  # no such experiment, no trials: one clear line
        print(f"autoaccel export: error: {error}", file=sys.stderr)
        return 2
    print(
        f"exported {result['runs_rows']} runs and {result['history_rows']} metric values of "
        f"{', '.join(result['experiments'])} to {result['runs']} and {result['history']} "
        f"in {result['seconds']:.2f} s"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.parquet:  # offline, from an export: no tracking store
        if args.tracking_uri:
            raise ConfigError("--tracking-uri", args.tracking_uri, "left out with --parquet (the tables are the data)")
        if not args.out:
            raise ConfigError("--out", None, "a folder for the report (required with --parquet)")
        if any(Path(args.out).resolve() == Path(folder).resolve() for folder in args.parquet):
            raise ConfigError("--out", args.out, "a folder other than the --parquet ones (the report writes tables)")
        _check_outputs(files={}, folders={"--out": args.out})
        return _report_and_print(args.experiment or [], None, args.out, args.parquet)
    if not args.experiment:
        raise ConfigError("--experiment", None, "an experiment (sweep) name, or --parquet FOLDER")
    store, out = _store(args), args.out or str(Path("reports") / args.experiment[0])
    _check_outputs(files={}, folders={"--out": out})
    return _report_and_print(args.experiment, store, out)


def build_parser() -> argparse.ArgumentParser:
    from autoaccel.run.budget import SCHEDULES

    parser = argparse.ArgumentParser(prog="autoaccel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("optimizers", help="list every technique with its hyperparameters and ranges")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_optimizers)

    workloads = commands.add_parser("workloads", help="list workloads with their options, metric and target")
    workloads.add_argument("--json", action="store_true", help="machine-readable output")
    workloads.set_defaults(func=_workloads)

    train = commands.add_parser("train", help="train one workload with one optimizer config (one trial)")
    train.add_argument("--workload", required=True, help="workload name (see `autoaccel workloads`)")
    train.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a workload option")
    train.add_argument("--config", help="optimizer config YAML (nested, as build_optimizer takes it)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="optimizer config override with a dotted key, e.g. anderson.history=5",
    )
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="training epochs (default 10)")
    budget.add_argument("--steps", type=int, help="optimizer steps instead of epochs")
    train.add_argument("--batch-size", type=int, help="default: the workload's")
    train.add_argument("--schedule", choices=SCHEDULES, default="constant", help="learning-rate schedule")
    train.add_argument("--gamma", type=float, help="step: factor at each milestone (0.1); exponential: per epoch")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    train.add_argument("--checkpoint-dir", help="checkpoint every epoch there; resume from a checkpoint found there")
    train.add_argument(
        "--workers",
        type=int,
        default=1,
        help="data-parallel worker processes on this machine (gloo; NCCL with one GPU each); the global batch is "
        "workers × batch size",
    )
    train.add_argument("--output-json", help="write the final metrics there")
    train.add_argument("--tracking-uri", help="also record an MLflow run there (e.g. sqlite:///mlflow.db)")
    train.add_argument("--experiment", default="autoaccel-train", help="MLflow experiment (with --tracking-uri)")
    train.set_defaults(func=_train)

    spaces = commands.add_parser("spaces", help="inspect search spaces")
    spaces_commands = spaces.add_subparsers(dest="spaces_command", required=True)
    show = spaces_commands.add_parser("show", help="print a space's tree and sampled configurations")
    show.add_argument("file", help="a search_spaces/*.yaml file")
    show.add_argument("--samples", type=int, default=5, help="configurations to draw (random sampler)")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(func=_spaces_show)

    for name, text in (
        ("sweep", "run a tuning sweep from a spec (trials/*.yaml)"),
        ("compare", "run a comparison spec (tuning per family, final runs), then report each technique's verdict"),
    ):
        sweep = commands.add_parser(name, help=text)
        sweep.add_argument("spec", help="the sweep spec YAML")
        sweep.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a spec value with a dotted key, e.g. search.num_samples=8",
        )
        sweep.add_argument("--resume", action="store_true", help="continue a sweep whose driver died")
        sweep.add_argument("--address", help="join an existing Ray cluster (default: RAY_ADDRESS, else local Ray)")
        sweep.add_argument("--check", action="store_true", help="validate the spec and its space, run nothing")
        sweep.add_argument("--output-json", help="write the sweep summary there")
        if name == "compare":
            sweep.add_argument("--out", help="the report's folder (default: reports/<name>)")
        sweep.set_defaults(func=_sweep)

    export = commands.add_parser("export", help="MLflow experiment(s) → runs.parquet and history.parquet")
    export.add_argument("--experiment", action="append", required=True, help="an experiment (sweep) name; repeatable")
    export.add_argument("--tracking-uri", help="default: sweeps/<experiment>/mlflow.db if it exists, else ./mlflow.db")
    export.add_argument("--out", required=True, help="folder for the Parquet files")
    export.set_defaults(func=_export)

    report = commands.add_parser(
        "report", help="sensitivity and robustness report of sweep(s): HTML, Markdown, Parquet"
    )
    report.add_argument("--experiment", action="append", help="an experiment (sweep) name; repeatable")
    report.add_argument("--tracking-uri", help="default: sweeps/<experiment>/mlflow.db if it exists, else ./mlflow.db")
    report.add_argument(
        "--parquet",
        action="append",
        default=[],
        metavar="FOLDER",
        help="report the runs.parquet and history.parquet of an export there instead, offline; repeatable",
    )
    report.add_argument("--out", help="default: reports/<experiment>")
    report.set_defaults(func=_report)

    from autoaccel.cli.cluster import add_cluster_parser, add_tracking_parser

    add_cluster_parser(commands)
    add_tracking_parser(commands)
    return parser


def _redacted_traceback(kind: type[BaseException], error: BaseException, trace: Any) -> None:
    """An unexpected error's traceback as Python prints it, with any URI password masked (MLflow's messages name
    the URL they called, credentials included)."""
    import traceback

    from autoaccel.redaction import redact_uri

    sys.stderr.write(redact_uri("".join(traceback.format_exception(kind, error, trace))))


def main(argv: Sequence[str] | None = None) -> int:
    sys.excepthook = _redacted_traceback
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError) as error:  # bad input: one clear line, exit code 2, nothing started
        print(f"autoaccel {args.command}: error: {error}", file=sys.stderr)
        return 2
