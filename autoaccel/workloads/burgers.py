"""Physics-informed neural networks for Burgers' equation: the 1+1-d benchmark and a 100-d Burgers-type equation.

``dim=1`` — viscous Burgers (the PINN benchmark of Raissi, Perdikaris & Karniadakis, "Physics-informed neural
networks", J. Comput. Phys. 378, 2019)::

    u_t + u u_x − ν u_xx = 0,   x ∈ [−1, 1], t ∈ [0, 1],   ν = 0.01/π,
    u(x, 0) = −sin(πx),   u(−1, t) = u(1, t) = 0.

Its exact solution comes from the Cole–Hopf transform u = −2ν ∂ₓ log θ, θ solving the heat equation θ_t = ν θ_xx
with θ(x, 0) = f(x) = exp(−cos(πx)/(2πν)) (Basdevant et al., "Spectral and finite difference solutions of the
Burgers equation", Computers & Fluids 14, 1986)::

    u(x, t) = −∫ sin(π(x−η)) f(x−η) exp(−η²/(4νt)) dη / ∫ f(x−η) exp(−η²/(4νt)) dη.

Integrating over all of ℝ with the 2-periodic f is what makes u(±1, t) = 0: the numerator is odd in η there.
:func:`burgers_1d_exact` evaluates it in float64 torch, so autograd can differentiate the exact solution (the tests
check its PDE residual that way). After η = √(4νt)·z both integrals are ∫ e^{−z²}·g(z) dz with g entire; the
trapezoid rule on a truncated uniform grid converges geometrically for such integrands (Trefethen & Weideman, "The
exponentially convergent trapezoidal rule", SIAM Review 56, 2014). The window |z| ≤ 13 is wide enough although f
can outweigh e^{−z²} by up to e^{1/(πν)} = e^{100}: e^{−169+100} ≈ 1e−30. The narrowest feature of g is f's peak,
of width 1/(π√50) ≈ 0.045 in η, i.e. ≥ 0.4 in z (at t = 1); 201 nodes (spacing 0.13) resolve it.
``tests/test_burgers.py`` checks the quadrature against a finer one and Basdevant et al.'s steepest slope
u_x(0, 1.6037/π) = −152.00516.

``dim=100`` — a Burgers-type equation with a closed-form solution, from E, Han & Jentzen, "Deep learning-based
numerical methods for high-dimensional parabolic partial differential equations and backward stochastic
differential equations", Commun. Math. Stat. 5 (2017), §4.5 (the deep BSDE method is also in Han, Jentzen & E,
PNAS 115, 2018). With z = t + (1/d) Σᵢ xᵢ and φ the logistic function, u(t, x) = φ(z) solves::

    u_t + a Δu + b (u − c) Σᵢ ∂u/∂xᵢ = 0   with   b = 2a/d,  c = (d + a)/(2a).

Derivation: φ' = φ(1−φ), φ'' = φ'(1−2φ); u_t = φ', Σᵢ∂ᵢu = φ', Δu = φ''/d. Dividing the equation by φ' gives
1 + (a/d)(1 − 2φ) + bφ − bc = 0 for every φ, so b = 2a/d and bc = 1 + a/d. The diffusion a = σ²/2 belongs to the
forward process X = σW of the BSDE formulation. E–Han–Jentzen take σ = d/√2, which gives a = d²/4 = 2500,
b = d/2 = 50 and c = 1/2 + 2/d at d = 100. The residual then balances u_t = φ' against (d/4) φ'' and
(d/2)(φ − c) φ', each several times φ' (up to ≈ 20× at the cube's corners): a near-cancellation of large terms. We
take σ = √d instead: a = d/2, b = 1, c = 3/2 (b and c do not depend on d), and every term is O(φ'). The PDE solved
is u_t + (d/2) Δu + (u − 3/2) Σᵢ ∂u/∂xᵢ = 0 on x ∈ [−1, 1]^d, t ∈ [0, T], T = 1. With a > 0 it is a backward heat
equation in t, well posed as the source's terminal-value problem. The time condition is therefore
u(T, x) = φ(T + mean(x)). The spatial faces xᵢ = ±1 carry the exact solution as Dirichlet values (a uniform point
with one random coordinate set to ±1).
Uniform points concentrate mean(x) (std 1/√(3d) ≈ 0.058), so u varies mostly with t. The best x-blind predictor
E[u | t] has relative L2 error ≈ 0.021 and the best constant ≈ 0.11.

Targets (``val_rel_l2``): 0.1 in 1-d (most of that error sits on the few grid points beside the shock, so 0.1
means the shock is placed within a few thousandths of x = 0); 0.01 in 100-d, half the x-blind error, so the
x-dependence must be learnt. How many Adam steps each takes: ``docs/workloads.md``.

Loss (both dims): mean squared PDE residual over the batch of interior collocation points + the MSE against the exact
values on the *whole* initial/terminal + boundary set (small; kept out of the mini-batching so every step sees the
conditions that make the solution unique) + the MSE on ``source_points`` observed exact values when that is > 0.
Every term has weight 1. Because the condition terms are the same in every micro-batch, micro-batch losses of equal
size average to the batch loss, as :meth:`Workload.split` requires. The input derivatives stay in the graph
(autograd with ``create_graph=True``), so the loss can be backpropagated twice, as AdaHessian's
``backward(create_graph=True)`` does. In 100-d the Laplacian of the default tanh MLP is carried forward through the
layers together with its input Jacobian (the "forward Laplacian" of Li et al., arXiv:2307.08214, 2023). It is
exact and takes one pass instead of d second-derivative backward passes, which other models fall back to. The
validation residual is always exact (no Hutchinson estimate).

Collocation points are uniform in the space-time domain. The default count is 10,000 in 1-d (Raissi et al.'s N_f):
with far fewer the network's shock settles between collocation points, off x = 0, and the training loss falls while
the validation residual grows. In 100-d 2,000 suffice.

Every point set is drawn once per ``data_seed`` from its own generator (never the global RNG), so it does not depend
on the trial seed or on the sizes of the other sets. The validation sets are independent draws of fixed sizes, so
metrics compare across option values: the default collocation count of the dimension for the residual, 400
condition points, and 400 source points when ``source_points`` > 0. The relative L2 error uses a fixed
256 × 100 (x, t) grid in 1-d and 4096 uniform points in 100-d.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from autoaccel.config import Hyperparameter

from ._base import InMemoryBatches, Workload

__all__ = ["NU", "BurgersPINN", "burgers_1d_exact", "burgers_highdim_exact"]

NU = 0.01 / math.pi
T_END = 1.0
GRID_X, GRID_T = 256, 100  # the validation grid of the 1-d problem (Raissi et al.'s data set has this shape)
HIGH_DIM_VAL_POINTS = 4096
# collocation points by dimension when the option is null: Raissi et al.'s N_f = 10,000 in 1-d (fewer leave the shock
# under-resolved); 2,000 suffice in 100-d
DEFAULT_COLLOCATION = {1: 10_000, 100: 2_000}
VAL_CONDITIONS = 400  # validation initial/terminal + boundary points, and source points when source_points > 0
_EVAL_CHUNK = 1024  # bounds the memory of the residual's graph during evaluation


def burgers_1d_exact(x: torch.Tensor, t: torch.Tensor, nodes: int = 201, half_width: float = 13.0) -> torch.Tensor:
    """The Cole–Hopf solution of the 1-d benchmark at same-shaped ``x``, ``t`` (float64, differentiable).

    ``nodes`` trapezoid nodes on z ∈ [−half_width, half_width] after η = √(4νt)·z; see the module docstring for why
    the defaults are converged to rounding. At t = 0 the initial condition is returned exactly.
    """
    x, t = torch.broadcast_tensors(x.to(torch.float64), t.to(torch.float64))
    shape = x.shape
    x, t = x.reshape(-1), t.reshape(-1)
    z = torch.linspace(-half_width, half_width, nodes, dtype=torch.float64, device=x.device)
    # t = 0 would put an infinite derivative of √t into the graph; its value is replaced by the initial condition
    positive = t > 0
    t_safe = torch.where(positive, t, torch.ones_like(t))
    chunk = max(1, 2**21 // nodes)
    parts = []
    for xs, ts in zip(x.split(chunk), t_safe.split(chunk), strict=True):
        y = xs[:, None] - torch.sqrt(4 * NU * ts)[:, None] * z
        exponent = -(z**2) - torch.cos(math.pi * y) / (2 * math.pi * NU)
        # the exponent spans ±100: shift by its row maximum (it cancels in the ratio)
        weight = torch.exp(exponent - exponent.amax(dim=1, keepdim=True).detach())
        parts.append(-(torch.sin(math.pi * y) * weight).sum(1) / weight.sum(1))
    u = torch.cat(parts) if parts else x.new_empty(0)
    return torch.where(positive, u, -torch.sin(math.pi * x)).reshape(shape)


def burgers_highdim_exact(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """φ(t + mean(x)) for ``x`` (N, d) and ``t`` (N, 1), shape (N, 1); differentiable."""
    return torch.sigmoid(t + x.mean(dim=1, keepdim=True))


@functools.lru_cache(maxsize=4)
def _grid_1d(nx: int, nt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (nx·nt, 2) grid of (x, t) and the exact u there (float64, CPU); shared, so treat as read-only."""
    x, t = torch.meshgrid(
        torch.linspace(-1, 1, nx, dtype=torch.float64),
        torch.linspace(0, T_END, nt, dtype=torch.float64),
        indexing="ij",
    )
    points = torch.stack([x.reshape(-1), t.reshape(-1)], dim=1)
    return points, burgers_1d_exact(points[:, 0], points[:, 1]).unsqueeze(1)


def _stream(data_seed: int, purpose: int) -> torch.Generator:
    """An independent generator per (data_seed, purpose): changing one set's size leaves the others unchanged."""
    seed = int(np.random.SeedSequence((data_seed, purpose)).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed)


def _tanh_mlp_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of an ``nn.Sequential`` alternating Linear and Tanh (ending in Linear), else ``None``."""
    if type(model) is not nn.Sequential or len(model) % 2 == 0:
        return None
    layers = list(model)
    linears = layers[0::2]
    if not all(type(m) is nn.Linear for m in linears) or not all(type(m) is nn.Tanh for m in layers[1::2]):
        return None
    return linears


class BurgersPINN(Workload):
    """Burgers PINN, 1+1-d (Raissi et al.'s benchmark) or 100-d (E–Han–Jentzen's Burgers-type PDE); see the module."""

    name = "burgers_pinn"
    task = "pde"
    summary = "PINN for viscous Burgers: 1+1-d shock benchmark (Cole–Hopf exact) or a 100-d Burgers-type PDE"
    metric = "val_rel_l2"
    mode = "min"
    metrics = ("val_loss", "val_rel_l2", "val_residual")
    default_batch_size = 500
    options = (
        Hyperparameter("dim", int, 1, "spatial dimension: 1 (1+1-d benchmark) or 100 (Burgers-type)", choices=(1, 100)),
        Hyperparameter(
            "collocation",
            int,
            None,
            "interior collocation points per epoch; null: 10000 in 1-d, 2000 in 100-d",
            low=1,
            nullable=True,
        ),
        Hyperparameter("boundary", int, 400, "initial/terminal + boundary points, half on each (used whole)", low=2),
        Hyperparameter("source_points", int, 0, "observed exact values added as an MSE term (0: pure PINN)", low=0),
        Hyperparameter("width", int, 50, "hidden units per layer (tanh MLP)", low=1),
        Hyperparameter("depth", int, 4, "hidden layers", low=1),
        Hyperparameter("data_seed", int, 0, "seed of every point set (independent of the trial seed)", low=0),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._data: dict[str, torch.Tensor] | None = None
        self._train: InMemoryBatches | None = None

    def check_options(self) -> None:
        # ``choices`` compares with ==, which lets True through as 1 (and 1.0, harmless once converted)
        if isinstance(self.config["dim"], bool):
            raise self.option_error("dim", "one of 1, 100")
        self.config["dim"] = int(self.config["dim"])
        if self.config["collocation"] is None:
            self.config["collocation"] = DEFAULT_COLLOCATION[self.config["dim"]]

    @property
    def dim(self) -> int:
        return self.config["dim"]

    @property
    def target(self) -> float:
        return 0.1 if self.dim == 1 else 0.01

    # ----------------------------------------------------------------------------------------------- data

    def exact_solution(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """u at ``x`` (N, dim) and ``t`` (N, 1) as (N, 1), in ``x``'s dtype and device (differentiable)."""
        if self.dim == 1:
            u = burgers_1d_exact(x[:, 0], t[:, 0]).unsqueeze(1)
        else:
            u = burgers_highdim_exact(x.to(torch.float64), t.to(torch.float64))
        return u.to(dtype=x.dtype, device=x.device)

    def _interior(self, n: int, g: torch.Generator) -> torch.Tensor:
        x = torch.rand(n, self.dim, generator=g, dtype=torch.float64) * 2 - 1
        return torch.cat([x, torch.rand(n, 1, generator=g, dtype=torch.float64) * T_END], dim=1)

    def _conditions(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Half the points on the time face (t = 0 in 1-d, t = T in 100-d), the rest on the spatial faces."""
        points = self._interior(n, g)
        n_time = n // 2
        points[:n_time, -1] = 0.0 if self.dim == 1 else T_END
        faces = points[n_time:]
        coordinate = torch.randint(self.dim, (len(faces),), generator=g)
        sign = torch.randint(2, (len(faces),), generator=g, dtype=torch.float64) * 2 - 1
        faces[torch.arange(len(faces)), coordinate] = sign
        return points

    def _labelled(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return points, self.exact_solution(points[:, :-1], points[:, -1:])

    def setup(self, device: torch.device) -> None:
        device = torch.device(device)
        if self._data is not None and self.device == device:
            return
        self.device = device
        cfg, seed = self.config, self.config["data_seed"]
        boundary, boundary_u = self._labelled(self._conditions(cfg["boundary"], _stream(seed, 1)))
        source, source_u = self._labelled(self._interior(cfg["source_points"], _stream(seed, 2)))
        # validation sizes do not follow the options, so metrics compare across option values
        val_boundary, val_boundary_u = self._labelled(self._conditions(VAL_CONDITIONS, _stream(seed, 4)))
        val_sources = VAL_CONDITIONS if cfg["source_points"] else 0
        val_source, val_source_u = self._labelled(self._interior(val_sources, _stream(seed, 5)))
        if self.dim == 1:
            grid, grid_u = _grid_1d(GRID_X, GRID_T)
        else:
            grid, grid_u = self._labelled(self._interior(HIGH_DIM_VAL_POINTS, _stream(seed, 6)))
        data = {
            "interior": self._interior(cfg["collocation"], _stream(seed, 0)),
            "boundary": boundary,
            "boundary_u": boundary_u,
            "source": source,
            "source_u": source_u,
            "val_interior": self._interior(DEFAULT_COLLOCATION[self.dim], _stream(seed, 3)),
            "val_boundary": val_boundary,
            "val_boundary_u": val_boundary_u,
            "val_source": val_source,
            "val_source_u": val_source_u,
            "grid": grid,
            "grid_u": grid_u,
        }
        self._data = {k: v.to(device=device, dtype=torch.float32) for k, v in data.items()}
        self._train = InMemoryBatches(self._data["interior"])

    def _ready(self) -> dict[str, torch.Tensor]:
        if self._data is None:
            raise RuntimeError("BurgersPINN.setup(device) must be called first")
        return self._data

    # ---------------------------------------------------------------------------------------------- model

    def model(self) -> nn.Module:
        width, layers, size = self.config["width"], [], self.dim + 1
        for _ in range(self.config["depth"]):
            layers += [nn.Linear(size, width), nn.Tanh()]
            size = width
        layers.append(nn.Linear(size, 1))
        return nn.Sequential(*layers).to(self.device)

    def train_size(self) -> int:
        return self.config["collocation"]

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        self._ready()
        return self._train(batch_size, generator)

    # ------------------------------------------------------------------------------------------- residual

    def residual(self, model: nn.Module, points: torch.Tensor) -> torch.Tensor:
        """The PDE residual at ``points`` (N, dim + 1) = (x, t), shape (N,), differentiable (create_graph)."""
        if self.dim > 1 and (linears := _tanh_mlp_layers(model)) is not None:
            u, grad, laplacian = _forward_laplacian(linears, points, self.dim)
        else:
            u, grad, laplacian = _autograd_laplacian(model, points, self.dim)
        u_t = grad[:, -1]
        if self.dim == 1:
            return u_t + u * grad[:, 0] - NU * laplacian
        a = self.dim / 2
        b, c = 2 * a / self.dim, (self.dim + a) / (2 * a)
        return u_t + a * laplacian + b * (u - c) * grad[:, :-1].sum(dim=1)

    def _condition_terms(self, model: nn.Module, data: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        loss = nn.functional.mse_loss(model(data[prefix + "boundary"]), data[prefix + "boundary_u"])
        if self.config["source_points"]:
            loss = loss + nn.functional.mse_loss(model(data[prefix + "source"]), data[prefix + "source_u"])
        return loss

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        data = self._ready()
        return self.residual(model, batch[0]).square().mean() + self._condition_terms(model, data, "")

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        data = self._ready()
        squares = 0.0
        with torch.enable_grad():  # the residual needs input derivatives even when the caller disabled grad
            for chunk in data["val_interior"].split(_EVAL_CHUNK):
                squares += self.residual(model, chunk).detach().square().sum().item()
        with torch.no_grad():
            conditions = self._condition_terms(model, data, "val_").item()
            error = (model(data["grid"]) - data["grid_u"]).norm() / data["grid_u"].norm()
        residual = squares / len(data["val_interior"])
        return {"val_loss": residual + conditions, "val_rel_l2": error.item(), "val_residual": residual}


def _autograd_laplacian(
    model: nn.Module, points: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u (N,), ∇u over all dim + 1 inputs (N, dim + 1) and Σᵢ ∂²u/∂xᵢ² over the dim spatial inputs (N,).

    Reverse mode, one backward per spatial dimension for the Laplacian: exact for any model.
    """
    points = points.detach().requires_grad_(True)
    u = model(points).squeeze(1)
    (grad,) = torch.autograd.grad(u.sum(), points, create_graph=True)
    laplacian = sum(torch.autograd.grad(grad[:, i].sum(), points, create_graph=True)[0][:, i] for i in range(dim))
    return u, grad, laplacian


def _forward_laplacian(
    linears: list[nn.Linear], points: torch.Tensor, dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same three quantities for a tanh MLP, carried forward layer by layer (Li et al. 2023).

    Per hidden vector h: its Jacobian J with respect to the inputs (N, dim + 1, width) and its spatial Laplacian L.
    A linear layer maps J ↦ J Wᵀ and L ↦ L Wᵀ; tanh maps J ↦ tanh'(h) J and L ↦ tanh'(h) L + tanh''(h) Σᵢ Jᵢ²
    (spatial i only). Gradients with respect to the weights flow through these ordinary ops.
    """
    h = points
    jacobian = laplacian = None
    for index, linear in enumerate(linears):
        if index == 0:
            jacobian = linear.weight.T.unsqueeze(0).expand(len(points), -1, -1)
            h = linear(h)
            laplacian = torch.zeros_like(h)
        else:
            h = linear(h)
            jacobian = jacobian @ linear.weight.T
            laplacian = laplacian @ linear.weight.T
        if index < len(linears) - 1:
            h = torch.tanh(h)
            slope = 1 - h * h
            curvature = -2 * h * slope
            laplacian = slope * laplacian + curvature * jacobian[:, :dim].square().sum(dim=1)
            jacobian = slope.unsqueeze(1) * jacobian
    return h.squeeze(1), jacobian.squeeze(2), laplacian.squeeze(1)
