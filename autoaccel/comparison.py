"""A comparison from Python: what ``autoaccel compare`` does (tune each family, re-run the best configurations on
paired seeds, report), returning the verdicts as data instead of printing them::

    result = autoaccel.compare("compare.yaml", overrides=["compare.tuning.trials_per_family=4"])
    result.verdicts[["technique", "baseline", "verdict"]]     # a pandas DataFrame, one row per technique
    print("\\n".join(result.sentences))                        # what the command prints
    result.report                                             # the HTML report (Path)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoaccel.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from autoaccel.sweep import SweepSpec

__all__ = ["Comparison", "compare", "report_folder"]


@dataclass(frozen=True)
class Comparison:
    """A finished comparison.

    ``verdicts``: the verdict table (``verdict.parquet``: one row per technique and setting — its baseline, the
    medians, the interval and the verdict; columns in ``docs/compare.md``); ``sentences``: one line per technique,
    as ``autoaccel compare`` prints them; ``report``: the HTML report; ``folder``: the sweep folder (its state and, by
    default, its MLflow store); ``summary``: what :func:`autoaccel.run_sweep` returned (statuses, tracking URI)."""

    verdicts: pd.DataFrame
    sentences: list[str]
    report: Path
    folder: Path
    summary: dict[str, Any] = field(repr=False)

    @property
    def errored(self) -> int:
        """Trials that raised (recorded and reported as failures; their tracebacks are under ``folder/tune``)."""
        return int(self.summary["statuses"].get("errored", 0))


def report_folder(spec: SweepSpec, out: str | os.PathLike[str] | None) -> str:
    """Where a comparison's report goes: ``out``, else ``reports/<name>`` (relative to the working folder); refuses
    a spec without a ``compare`` section."""
    if spec.compare is None:
        raise ConfigError("compare", None, f"a compare section in {spec.path} (or run it with `autoaccel sweep`)")
    return str(out) if out is not None else str(Path("reports") / spec.name)


def compare(
    spec: SweepSpec | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    out: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    address: str | None = None,
) -> Comparison:
    """Run the comparison ``spec`` (a path, with ``overrides`` as ``--set`` takes them, or a loaded spec) and report
    it into ``out`` (default ``reports/<name>``). Bad input raises :class:`~autoaccel.errors.ConfigError` (or
    ``DataError``) before Ray starts, the workload's own code run once included; a Ctrl-C raises KeyboardInterrupt
    once the trials have stopped at their checkpoints (``resume=True`` continues)."""
    from autoaccel.paths import check_output_folder
    from autoaccel.sweep import SweepSpec, load_spec, run_sweep

    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec, overrides)
    elif overrides:
        raise ConfigError("overrides", list(overrides), "none with a loaded spec (pass its path instead)")
    where = report_folder(spec, out)
    check_output_folder("out", where)
    summary = run_sweep(spec, resume=resume, address=address)
    if summary["unfinished"]:
        raise KeyboardInterrupt(f"{summary['unfinished']} trial(s) unfinished: compare(..., resume=True) continues")
    return _reported(spec, summary, where)


def _reported(spec: SweepSpec, summary: dict[str, Any], where: str) -> Comparison:
    import pandas as pd

    from autoaccel.analysis import build_report

    written = build_report([spec.experiment], spec.tracking_uri, where)
    table = written.get("verdict_table")
    verdicts = pd.read_parquet(table) if table else pd.DataFrame()
    return Comparison(verdicts, list(written["verdict"]), Path(written["html"]), Path(summary["folder"]), summary)
