"""Tiny real models and deterministic batches shared by the optimizer tests."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoaccel.optim import AndersonAcceleration


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


class TinyConvNet(nn.Module):
    """Conv2d (4-d kernel), Conv1d (3-d kernel) and Linear layers: every spatial-averaging branch of AdaHessian."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2 = nn.Conv2d(1, 2, 3)
        self.conv1 = nn.Conv1d(2, 2, 3)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = nn.functional.interpolate(x.view(-1, 1, 2, 2), size=(4, 4))  # (N, 1, 4, 4)
        maps = torch.tanh(self.conv2(image)).flatten(2)  # (N, 2, 4)
        return self.head(torch.tanh(self.conv1(maps)).flatten(1))  # (N, 2·2) → (N, 1)


def tiny_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinyConvNet()


def batch(step: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic regression batch for training step ``step`` (independent of any global RNG)."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(size, 4, generator=g)
    y = (x[:, :1] * 0.7 - x[:, 1:2] ** 2 + 0.1 * torch.randn(size, 1, generator=g)).tanh()
    return x, y


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    steps: int,
    start: int = 0,
    *,
    create_graph: bool = False,
    micro_batches: int = 1,
    closure: bool = False,
    device: str | torch.device = "cpu",
) -> list[float]:
    """Train ``steps`` steps from step index ``start``; return the losses.

    ``micro_batches`` > 1 accumulates gradients of losses divided by their count (AdaScale's contract);
    ``closure`` passes a closure that also works under ``torch.no_grad()`` (AndersonAcceleration's safeguard).
    """
    losses = []
    for step in range(start, start + steps):
        opt.zero_grad()
        if closure:
            x, y = (t.to(device) for t in batch(step))

            def evaluate(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                loss = nn.functional.mse_loss(model(x), y)
                if torch.is_grad_enabled():
                    loss.backward()
                return loss

            losses.append(opt.step(evaluate).item())
            continue
        total = 0.0
        for micro in range(micro_batches):
            x, y = (t.to(device) for t in batch(step * micro_batches + micro))
            loss = nn.functional.mse_loss(model(x), y) / micro_batches
            loss.backward(create_graph=create_graph)
            total += loss.item()
        opt.step()
        losses.append(total)
    return losses


def roundtrip(obj: object) -> object:
    """torch.save then torch.load(weights_only=True): what a checkpoint goes through."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def params_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` hold the same bits (``torch.equal`` calls −0.0 and 0.0 equal, and NaN unequal to itself)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.detach().cpu().numpy().tobytes() == b.detach().cpu().numpy().tobytes()
    )


class Interrupted(Exception):
    """Raised by a trial's report: the process "dies" right after that epoch's checkpoint was written."""


def interrupted_and_resumed(config: dict[str, Any], folder: Path, after_epoch: int) -> dict[str, Any]:
    """Run the trial ``config`` with checkpoints in ``folder``, cut it off after epoch ``after_epoch``, then resume
    it from its checkpoint to the end; the resumed run's result."""
    from autoaccel.run import run_trial

    def stop(metrics: dict[str, Any], _: str | None) -> None:
        if metrics["epoch"] == after_epoch:
            raise Interrupted

    try:
        run_trial(config, report=stop, checkpoint_dir=folder)
    except Interrupted:
        pass
    else:
        raise AssertionError(f"the trial ended before epoch {after_epoch}: nothing was interrupted")
    return run_trial(config, checkpoint_dir=folder)


def without_time(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch records without their wall-clock fields, which no two runs share."""
    return [{k: v for k, v in h.items() if k not in ("time_s", "time_to_target")} for h in history]


def ill_conditioned_quadratic(d: int = 100, seed: int = 0, low: float = 1e-3):
    """f(x) = ½ xᵀAx − bᵀx with A's eigenvalues log-spaced in [low, 1]: (A, b, the minimiser x*), float64."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(math.log10(low), 0, d, dtype=torch.float64)) @ q.T
    x_star = 10 * torch.randn(d, generator=g, dtype=torch.float64)
    return a, a @ x_star, x_star


def gradient_descent(a, b, steps, lr=1.0, x0=None, **anderson):
    """``steps`` of SGD on the quadratic, wrapped in AndersonAcceleration(**anderson) if any are given."""
    x = (torch.zeros(len(b), dtype=torch.float64) if x0 is None else x0.clone()).requires_grad_()
    opt = torch.optim.SGD([x], lr=lr)
    if anderson:
        opt = AndersonAcceleration(opt, **anderson)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * x @ a @ x - b @ x).backward()
        opt.step()
    return x.detach(), opt


def averaging_fraction_on_noisy_regression(
    batch: int,
    steps: int = 400,
    criterion: str = "norm_ratio",
    negative: bool = False,
    threshold: float = 0.1,
    seed: int = 0,
) -> float:
    """Anderson(SGD) with ``averaging="auto"`` on a noisy 256 × 10 linear regression at this batch size (256 = full
    batch): the fraction of steps it averaged. ``negative`` makes every true weight negative."""
    g = torch.Generator().manual_seed(seed)
    n, d = 256, 10
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    if negative:
        w_true = -w_true.abs() - 3.0
    y = x @ w_true + torch.randn(n, generator=g, dtype=torch.float64)
    w = (w_true + 0.5 * torch.randn(d, generator=g, dtype=torch.float64)).requires_grad_()
    opt = AndersonAcceleration(
        torch.optim.SGD([w], lr=0.05), history=5, averaging="auto", rsd_criterion=criterion, rsd_threshold=threshold
    )
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g) if batch < n else torch.arange(n)
        opt.zero_grad()
        ((x[idx] @ w - y[idx]) ** 2).mean().backward()
        opt.step()
    return opt.statistics()["aa_averaging_fraction"]


def _listeners() -> list[tuple[str, int, str]]:
    """Every TCP socket this machine listens on: (local address, port, socket inode), from /proc/net/tcp and tcp6."""
    import ipaddress

    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[3] != "0A":  # 0A: LISTEN
                    continue
                address, _, hex_port = fields[1].partition(":")
                raw = bytes.fromhex(address)
                # /proc writes each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.append((str(ipaddress.ip_address(raw)), int(hex_port, 16), fields[9]))  # 4 bytes: IPv4
    return found


def listening_addresses(port: int) -> set[str]:
    """The local addresses this machine listens on at TCP ``port`` (Linux)."""
    return {address for address, at, _ in _listeners() if at == port}


def listening_addresses_of_children(marker: str = "spawn_main") -> set[str]:
    """The local addresses that this process's child processes whose command line holds ``marker`` (by default the
    ``multiprocessing`` spawned ones, not a Ray an earlier test left running) listen on (TCP, Linux: /proc)."""
    import os

    me, inodes = os.getpid(), set()
    for pid, parent in _parents().items():
        if parent != me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if marker.encode() not in handle.read():
                    continue
        except OSError:  # it ended meanwhile
            continue
        inodes |= _socket_inodes(pid)
    return {address for address, _, inode in _listeners() if inode in inodes}


def listeners_of_process_tree(root: int) -> list[tuple[str, int, str]]:
    """Every TCP socket that process ``root`` or any process descended from it listens on: (local address, port,
    the listening process's command line), Linux: /proc."""
    parents, tree = _parents(), {root}
    for pid in parents:
        chain, at = [], pid
        while at in parents and at not in tree and at not in chain:  # up to the root, or to a process outside it
            chain.append(at)
            at = parents[at]
        if at in tree:
            tree.update(chain)
    owners = {inode: pid for pid in tree for inode in _socket_inodes(pid)}
    return [(address, port, _command(owners[inode])) for address, port, inode in _listeners() if inode in owners]


def _parents() -> dict[int, int]:
    """Every process of this machine: its parent's id."""
    import os

    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                found[int(pid)] = int(handle.read().rsplit(")", 1)[1].split()[1])  # the field after the state
        except OSError:  # it ended meanwhile
            continue
    return found


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open (none if it ended meanwhile)."""
    import os

    inodes = set()
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"pid {pid} (ended)"
