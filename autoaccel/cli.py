"""The ``autoaccel`` command. Thin: every command calls into the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _optimizers(args: argparse.Namespace) -> int:
    from autoaccel.optim import TECHNIQUES

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


def _demo(args: argparse.Namespace) -> int:
    from autoaccel.demo import run_demo

    run_demo(epochs=args.epochs, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoaccel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("optimizers", help="list every technique with its hyperparameters and ranges")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_optimizers)

    demo = commands.add_parser("demo", help="train a small real regression with each technique and compare")
    demo.add_argument("--epochs", type=int, default=60)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
