"""Per-step overhead of each technique relative to its base optimizer, and of the peer implementations.

    .venv/bin/python benchmarks/optim_overhead.py [--model mlp|resnet|all] [--rounds R] [--steps N] [--device D]
                                                  [--only NAME ...]

For every (model, technique) it times, in the same process and interleaved round by round with its baseline, the
full training iteration (zero_grad + forward + backward + step) and the optimizer step alone, and reports the
median of the per-round ratios technique/baseline (and their range). Baselines are ``torch.optim.Adam``/``SGD`` with
``foreach=True``; AdaScale is compared with the *same* micro-batch accumulation under plain SGD, AdaHessian with
an Adam iteration. Techniques that act every few steps (Lookahead, Anderson) are timed over a multiple of their
period, i.e. averaged over steps. Peers (pytorch-optimizer, torch-optimizer, fairscale) are timed the same way
when installed. ``--quick`` shrinks everything for a smoke run.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoaccel.optim import AdaHessian, AdaScale, AndersonAcceleration, DemonAdam, DemonSGD, Lookahead

warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")


@dataclass
class Case:
    name: str
    baseline: str  # name of the case it is divided by
    build: Callable[[nn.Module], torch.optim.Optimizer]
    micro_batches: int = 1
    create_graph: bool = False
    peer: str = ""  # "" for ours/torch, else the peer package


def _adam(m: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(m.parameters(), lr=1e-4, foreach=True)


def _sgd(m: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, foreach=True)


def cases(total_steps: int) -> list[Case]:
    out = [
        Case("adam", "adam", _adam),
        Case("sgd", "sgd", _sgd),
        Case("sgd, 2 micro-batches", "sgd, 2 micro-batches", _sgd, micro_batches=2),
        Case("lookahead(adam) k=5", "adam", lambda m: Lookahead(_adam(m), k=5)),
        Case("demon_sgd", "sgd", lambda m: DemonSGD(m.parameters(), lr=1e-3, total_steps=total_steps)),
        Case("demon_adam", "adam", lambda m: DemonAdam(m.parameters(), lr=1e-4, total_steps=total_steps)),
        Case(
            "adascale(sgd) S=2",
            "sgd, 2 micro-batches",
            lambda m: AdaScale(_sgd(m), num_gradients_to_accumulate=2),
            micro_batches=2,
        ),
        Case("anderson(adam) m=5, averaging off", "adam", lambda m: AndersonAcceleration(_adam(m), averaging="off")),
        Case("anderson(adam) m=5, averaging auto", "adam", lambda m: AndersonAcceleration(_adam(m))),
        Case("adahessian", "adam", lambda m: AdaHessian(m.parameters(), lr=1e-4), create_graph=True),
        Case(
            "adahessian update_each=4",
            "adam",
            lambda m: AdaHessian(m.parameters(), lr=1e-4, update_each=4),
            create_graph=True,
        ),
    ]
    try:
        import pytorch_optimizer as po

        out += [
            Case("lookahead(adam) k=5", "adam", lambda m: po.Lookahead(_adam(m), k=5), peer="pytorch-optimizer"),
            Case(
                "adahessian",
                "adam",
                lambda m: po.AdaHessian(m.parameters(), lr=1e-4),
                create_graph=True,
                peer="pytorch-optimizer",
            ),
        ]
    except ImportError:
        pass
    try:
        import torch_optimizer as to

        out += [
            Case("lookahead(adam) k=5", "adam", lambda m: to.Lookahead(_adam(m), k=5), peer="torch-optimizer"),
            Case(
                "adahessian",
                "adam",
                lambda m: to.Adahessian(m.parameters(), lr=1e-4, hessian_power=1.0),
                create_graph=True,
                peer="torch-optimizer",
            ),
        ]
    except ImportError:
        pass
    try:
        from fairscale.optim import AdaScale as FairAdaScale

        out.append(
            Case(
                "adascale(sgd) S=2",
                "sgd, 2 micro-batches",
                lambda m: FairAdaScale(_sgd(m), world_size=1, num_gradients_to_accumulate=2),
                micro_batches=2,
                peer="fairscale",
            )
        )
    except ImportError:
        pass
    return out


def models(name: str, quick: bool) -> dict[str, tuple[Callable[[], nn.Module], Callable[[int], Any]]]:
    """name -> (model factory, batch factory). The MLP has ≈12.6M parameters, the ResNet-18 11.2M."""
    found: dict[str, tuple[Callable[[], nn.Module], Callable[[int], Any]]] = {}
    if name in ("mlp", "all"):
        width = 64 if quick else 2048

        def mlp() -> nn.Module:
            torch.manual_seed(0)
            return nn.Sequential(
                nn.Linear(width // 2, width),
                nn.ReLU(),
                nn.Linear(width, width),
                nn.ReLU(),
                nn.Linear(width, width),
                nn.ReLU(),
                nn.Linear(width, width // 2),
            )

        found[f"MLP {width // 2}-{width}-{width}-{width}-{width // 2}"] = (
            mlp,
            lambda b: (torch.randn(b, width // 2), torch.randn(b, width // 2)),
        )
    if name in ("resnet", "all"):
        import torchvision

        def resnet() -> nn.Module:
            torch.manual_seed(0)
            return torchvision.models.resnet18(num_classes=10)

        size = 16 if quick else 32
        found[f"ResNet-18 (torchvision), {size}×{size} inputs"] = (
            resnet,
            lambda b: (torch.randn(b, 3, size, size), torch.randint(0, 10, (b,))),
        )
    return found


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    out = model(batch[0])
    if batch[1].dtype == torch.long:
        return nn.functional.cross_entropy(out, batch[1])
    return nn.functional.mse_loss(out, batch[1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_case(
    case: Case, model: nn.Module, batches: list[Any], steps: int, device: torch.device, warmup: int = 3
) -> tuple[float, float]:
    """Mean seconds per full iteration and per optimizer step over ``steps`` iterations, after ``warmup``
    untimed iterations of the same optimizer on the same model (lazy state, allocations, first calls)."""
    opt = case.build(model)
    full = step_only = 0.0
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad()
        for micro in range(case.micro_batches):
            loss = _loss(model, batches[(i + micro) % len(batches)]) / case.micro_batches
            loss.backward(create_graph=case.create_graph)
        _sync(device)
        t1 = time.perf_counter()
        opt.step()
        _sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            full += t2 - t0
            step_only += t2 - t1
    return full / steps, step_only / steps


def run(
    model_name: str,
    rounds: int,
    steps: int,
    batch_size: int,
    device: torch.device,
    quick: bool,
    only: list[str] | tuple[str, ...] = (),
) -> list[dict]:
    rows = []
    for label, (make_model, make_batch) in models(model_name, quick).items():
        model = make_model().to(device)
        params = sum(p.numel() for p in model.parameters())
        batches = [tuple(t.to(device) for t in make_batch(batch_size)) for _ in range(4)]
        all_cases = cases(total_steps=rounds * (steps + 5) * 4)
        if only:  # the cases named, and the baselines they are divided by
            chosen = [c for c in all_cases if any(word in c.name for word in only)]
            baselines = {c.baseline for c in chosen}
            all_cases = [c for c in all_cases if c in chosen or (c.name in baselines and not c.peer)]
        per_round: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(rounds):
            for case in all_cases:
                # A fresh copy per case: AdaScale's gradient hooks and graph-carrying gradients left by
                # AdaHessian peers must not leak into the next case.
                timing = time_case(case, copy.deepcopy(model), batches, steps, device)
                per_round.setdefault((case.name, case.peer), []).append(timing)
        for case in all_cases:
            ours, base = per_round[(case.name, case.peer)], per_round[(case.baseline, "")]
            iteration = [a[0] / b[0] for a, b in zip(ours, base, strict=True)]
            step = [a[1] / b[1] for a, b in zip(ours, base, strict=True)]
            rows.append(
                {
                    "model": label,
                    "parameters": params,
                    "technique": case.name,
                    "implementation": case.peer or "autoaccel/torch",
                    "baseline": case.baseline,
                    "iteration_ms": 1e3 * statistics.median(t for t, _ in ours),
                    "iteration_ratio": statistics.median(iteration),
                    "iteration_ratio_range": (min(iteration), max(iteration)),
                    "step_ms": 1e3 * statistics.median(s for _, s in ours),
                    "step_ratio": statistics.median(step),
                    "step_ratio_range": (min(step), max(step)),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        subset = [r for r in rows if r["model"] == model]
        lines += [
            f"**{model}** ({subset[0]['parameters'] / 1e6:.1f}M parameters)",
            "",
            "| technique | implementation | baseline | iteration ms | iteration × base (range) | step ms "
            "| step × base (range) |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for r in subset:
            (ilo, ihi), (slo, shi) = r["iteration_ratio_range"], r["step_ratio_range"]
            lines.append(
                f"| {r['technique']} | {r['implementation']} | {r['baseline']} | {r['iteration_ms']:.1f} | "
                f"{r['iteration_ratio']:.2f} ({ilo:.2f}–{ihi:.2f}) | {r['step_ms']:.2f} | "
                f"{r['step_ratio']:.2f} ({slo:.2f}–{shi:.2f}) |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("mlp", "resnet", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="iterations per timing (a multiple of 5 and 6)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models, few steps: a smoke run")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--only", action="append", default=[], help="time only cases whose name contains this")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.batch_size = 1, 6, 4
    device = torch.device(args.device)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(f"# {' '.join(sys.argv)}")
    rows = run(args.model, args.rounds, args.steps, args.batch_size, device, args.quick, args.only)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
