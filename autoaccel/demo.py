"""``autoaccel demo``: every technique on one small real regression, compared with its base optimizer.

The data is scikit-learn's diabetes set (442 patients, 10 features; shipped with scikit-learn, so no download);
the model the 3 × 64 ReLU MLP of the Anderson-acceleration reference code, trained with batches of 40. This is a
single-seed illustration, not evidence: the sweep and robustness reports are what answer "does it help".
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import nn

from autoaccel.optim import AdaHessian, AdaScale, build_optimizer, iter_stack, optimizer_statistics

BATCH = 40

# (label, config, the base it is compared with)
CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("sgd", {"base": "sgd", "lr": 0.01, "momentum": 0.9}, "sgd"),
    ("demon_sgd", {"base": "demon_sgd", "lr": 0.01, "demon": {"beta_init": 0.9}}, "sgd"),
    (
        "adascale(sgd)",
        {"base": "sgd", "lr": 0.01, "momentum": 0.9, "adascale": {"num_gradients_to_accumulate": 4}},
        "sgd",
    ),
    ("anderson(sgd)", {"base": "sgd", "lr": 0.01, "momentum": 0.9, "anderson": {"history": 5}}, "sgd"),
    ("adam", {"base": "adam", "lr": 1e-3}, "adam"),
    ("demon_adam", {"base": "demon_adam", "lr": 2e-4, "demon": {"beta_init": 0.9}}, "adam"),
    ("lookahead(adam)", {"base": "adam", "lr": 1e-3, "lookahead": {"k": 5, "alpha": 0.5}}, "adam"),
    ("anderson(adam)", {"base": "adam", "lr": 1e-3, "anderson": {"history": 5}}, "adam"),
    ("adahessian", {"base": "adahessian", "lr": 0.05}, "adam"),
]


def _data(seed: int) -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32).unsqueeze(1)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, val = order[:354], order[354:]
    mean, std = x[train].mean(0), x[train].std(0)  # statistics of the training split only
    y_mean, y_std = y[train].mean(), y[train].std()
    x, y = (x - mean) / std, (y - y_mean) / y_std
    return x[train], y[train], x[val], y[val]


def train_config(config: dict[str, Any], epochs: int, seed: int) -> tuple[float, float, dict[str, float]]:
    """Train the demo MLP with one optimizer config: (validation MSE, seconds, optimizer statistics)."""
    x, y, x_val, y_val = _data(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
    )
    steps_per_epoch = -(-len(x) // BATCH)
    config = dict(config)
    if "demon" in config:
        config["demon"] = {**config["demon"], "total_steps": epochs * steps_per_epoch}
    opt = build_optimizer(model.parameters(), config)
    layers = list(iter_stack(opt))
    hessian = next((o for o in layers if isinstance(o, AdaHessian)), None)
    micro = opt.num_gradients_to_accumulate if isinstance(opt, AdaScale) else 1
    order = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=order).split(BATCH):
            opt.zero_grad()
            for part in idx.tensor_split(micro):
                loss = nn.functional.mse_loss(model(x[part]), y[part]) / micro
                loss.backward(create_graph=hessian is not None and hessian.needs_create_graph)
            opt.step()
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        val = nn.functional.mse_loss(model(x_val), y_val).item()
    return val, elapsed, optimizer_statistics(opt)


def run_demo(epochs: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    print(f"diabetes regression (scikit-learn), MLP 3×64, batch {BATCH}, {epochs} epochs, seed {seed}")
    print(f"{'technique':<18}{'val MSE':>10}{'vs base':>9}{'time s':>8}  statistics")
    val_mse: dict[str, float] = {}
    rows = []
    for label, config, base in CONFIGS:
        with warnings.catch_warnings():
            # torch's generic advice on backward(create_graph=True); AdaHessian detaches its gradients after the HVP.
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
            val, elapsed, stats = train_config(config, epochs, seed)
        val_mse[label] = val
        ratio = val / val_mse[base]
        shown = ", ".join(f"{k}={v:.3g}" for k, v in stats.items() if "fraction" in k or k.endswith("gain"))
        print(f"{label:<18}{val:>10.4f}{ratio:>9.3f}{elapsed:>8.2f}  {shown}")
        rows.append({"technique": label, "val_mse": val, "vs_base": ratio, "seconds": elapsed, **stats})
    print("One seed, one learning rate each: an illustration. `make test` checks correctness; sweeps measure.")
    return rows
