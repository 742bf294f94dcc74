"""Why AndersonAcceleration's defaults are what they are: acceleration on a quadratic, stability on mini-batches.

    .venv/bin/python benchmarks/anderson_defaults.py [--seeds 0 1 2] [--epochs 60]

1. Deterministic gradient descent (lr 1, 300 steps) on the ill-conditioned quadratic of the tests (eigenvalues
   1e-3..1): the error ‖x − x*‖ of plain GD and of Anderson acceleration at several settings.
2. The RSD switch of ``averaging="auto"``: the fraction of steps averaged on a noisy linear regression at batch
   sizes 1, 4 and 256 (full batch).
3. The moving average after an accepted jump, on the quadratic of 1. (history 5, every 6 steps): averaging off,
   ``auto`` with the window restarted after each jump (the default, ``restart_average``) and without, ``on``.
4. The graduate-admissions MLP (3 × 64, batch 40; the workload ``admissions_mlp``) with SGD (momentum 0.9) and
   Adam, plain and under Anderson acceleration with history 5 at several extrapolation frequencies and coefficient
   caps: validation MSE per seed (nan = diverged). Quality only, no timing.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

from autoaccel.run import run_trial

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import averaging_fraction_on_noisy_regression, gradient_descent, ill_conditioned_quadratic

QUADRATIC = [  # (label, anderson options or None for plain GD)
    ("gradient descent", None),
    ("history 5, every step", {"history": 5, "frequency": 1}),
    ("history 10, every step", {"history": 10, "frequency": 1}),
    ("history 5, every 6 steps, cap 10 (default)", {"history": 5}),
    ("history 5, every 6 steps, cap 1e3", {"history": 5, "max_coefficient": 1e3}),
]

BASES = {"sgd": {"base": "sgd", "lr": 0.01, "momentum": 0.9}, "adam": {"base": "adam", "lr": 1e-3}}
VARIANTS = [  # (label, anderson section or None for the plain base)
    ("plain", None),
    ("every step, cap 1e3", {"frequency": 1, "max_coefficient": 1e3, "averaging": "off"}),
    ("every 6 steps, cap 1e3", {"frequency": 6, "max_coefficient": 1e3, "averaging": "off"}),
    ("every 6 steps, cap 10 (default)", {"averaging": "off"}),
    ("every 6 steps, cap 10, averaging auto", {}),
    ("every 6 steps, cap 10, averaging on", {"averaging": "on"}),
    ("every 6 steps, cap 10, reset inner state", {"averaging": "off", "reset_inner_state": True}),
]
AVERAGING = [  # (label, anderson options), history 5 every 6 steps on the quadratic
    ("averaging off", {"averaging": "off"}),
    ("averaging auto, window restarted after a jump (default)", {"averaging": "auto"}),
    ("averaging auto, window kept across a jump", {"averaging": "auto", "restart_average": False}),
    ("averaging on, window restarted after a jump", {"averaging": "on"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    a, b, x_star = ill_conditioned_quadratic()
    print("| quadratic, 300 steps | error ‖x − x*‖ |\n|---|---:|")
    for label, options in QUADRATIC:
        x, _ = gradient_descent(a, b, 300, **({"averaging": "off", **options} if options else {}))
        print(f"| {label} | {(x - x_star).norm().item():.3g} |")
    print()
    print("| quadratic, 300 steps, history 5 every 6 steps | error ‖x − x*‖ |\n|---|---:|")
    for label, options in AVERAGING:
        x, _ = gradient_descent(a, b, 300, history=5, **options)
        print(f"| {label} | {(x - x_star).norm().item():.3g} |")
    print()
    print("| noisy linear regression, SGD lr 0.05, 400 steps | fraction of steps averaged (auto, τ = 0.1) |")
    print("|---|---:|")
    for batch in (1, 4, 256):
        fraction = averaging_fraction_on_noisy_regression(batch)
        print(f"| batch {batch}{' (full)' if batch == 256 else ''} | {fraction:.3f} |")
    print()
    print(f"| base | Anderson (history 5) | validation MSE, seeds {', '.join(map(str, args.seeds))} | diverged |")
    print("|---|---|---|---:|")
    for base, config in BASES.items():
        for label, section in VARIANTS:
            full = dict(config) if section is None else {**config, "anderson": {"history": 5, **section}}
            values = [_val_mse(full, args.epochs, seed) for seed in args.seeds]
            shown = ", ".join("nan" if math.isnan(v) or v > 1e3 else f"{v:.4g}" for v in values)
            diverged = sum(math.isnan(v) or v > 1e3 for v in values)
            print(f"| {base} | {label} | {shown} | {diverged} |")


def _val_mse(optimizer: dict, epochs: int, seed: int) -> float:
    config = {
        "workload": {"name": "admissions_mlp"},
        "optimizer": optimizer,
        "budget": {"epochs": epochs, "batch_size": 40},
        "seed": seed,
        "device": "cpu",
    }
    result = run_trial(config)
    return math.nan if result["status"] == "diverged" else result["val_mse"]


if __name__ == "__main__":
    main()
