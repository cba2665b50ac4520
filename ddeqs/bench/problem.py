"""The problem a benchmark times: a paper-sized DDEQ, one synthetic batch and its training loss.

Sizes follow the paper (App. C.1): the default :class:`ddeqs.config.ModelConfig` (z_dim 128,
32 heads, FFN 512), one cross layer for MNIST-pc classification, three otherwise. A problem is shaped
like the paper dataset of its role (``mnist``: MNIST-pc, ``modelnet``: ModelNet40-s; dimension, classes
and cross layers from :mod:`ddeqs.data.registry`). The batch is ``batch`` clouds of ``points`` points
drawn from N(0, I) in d = 2 (``mnist``) or 3 (``modelnet``) dimensions (the datasets are normalized to
zero mean and unit variance, so the scale matches).
Completion gets ``points + ceil(0.275 · points)`` slots (200 points -> 255 slots) and a target
cloud with the free particles' worth of extra points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn as nn

from ddeqs.batch import CloudBatch
from ddeqs.config import ExperimentConfig, load_config
from ddeqs.data.registry import DATASETS, DatasetSpec, role_datasets

Shape = Literal["mnist", "modelnet"]  # the role whose paper dataset the problem is shaped like
#: ``{shape: paper dataset}``, e.g. ``{"mnist": "mnist-pc", "modelnet": "modelnet40-s"}``
DATASET = role_datasets(paper=True)


def shape_spec(shape: str) -> DatasetSpec:
    """The registry's spec of the paper dataset a problem of ``shape`` is shaped like."""
    return DATASETS[DATASET[shape]]


@dataclass(frozen=True)
class ProblemSpec:
    """One benchmark configuration. ``overrides``: extra ``key=value`` config overrides."""

    task: Literal["classification", "completion"] = "classification"
    shape: Shape = "mnist"
    batch: int = 8
    points: int = 200
    z_particles: int = 10
    iters: int = 200
    impl: Literal["fast", "naive", "graph"] = "fast"  # graph: fast with solver.cuda_graph
    momentum: float = 0.0
    nesterov: bool = False
    compile: bool = False
    bf16: bool = False
    device: str = "auto"
    seed: int = 0
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def label(self) -> dict:
        return asdict(self)


def problem_config(spec: ProblemSpec) -> ExperimentConfig:
    """The validated run configuration of ``spec`` (paper architecture, paper step size 5)."""
    cross = shape_spec(spec.shape).cls_cross_layers if spec.task == "classification" else 3
    return load_config(None, [
        f"task={spec.task}", f"data.dataset={DATASET[spec.shape]}", f"model.cross_layers={cross}",
        f"model.z_particles={spec.z_particles}", f"solver.iters={spec.iters}",
        *(["solver.impl=fast", "solver.cuda_graph=true"] if spec.impl == "graph" else [f"solver.impl={spec.impl}"]),
        f"solver.momentum={spec.momentum}", f"solver.nesterov={str(spec.nesterov).lower()}",
        f"solver.compile={str(spec.compile).lower()}", f"solver.bf16={str(spec.bf16).lower()}",
        f"train.device={spec.device}", f"seed={spec.seed}", *spec.overrides,
    ])


@dataclass
class BenchProblem:
    """A model, its optimizer and one batch on ``device``; :meth:`train_step` is what is timed."""

    cfg: ExperimentConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    batch: CloudBatch
    device: torch.device

    def train_step(self) -> dict:
        """Inner solve + phantom-gradient backward + optimizer step; returns the solver diagnostics."""
        from ddeqs.training.losses import per_sample_loss

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(self.batch.points, self.batch.mask)
        loss = per_sample_loss(self.cfg, out, self.batch).mean()
        loss.backward()
        self.optimizer.step()
        return dict(out.solver, loss=float(loss.detach()))

    @torch.no_grad()
    def fixed_point(self, seed: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``Z*`` ``(B, K, p)`` of one eval-mode solve with the RNG seeded by ``seed`` (same Z0/noise).

        ``dtype``: cast the model and the batch first (float64 separates implementation
        differences from float32 rounding, which the flow amplifies over iterations).
        """
        if dtype is not None:
            self.model.to(dtype)
            self.batch.points = self.batch.points.to(dtype)
        self.model.eval()
        torch.manual_seed(seed)
        return self.model(self.batch.points, self.batch.mask).z_star


def synthetic_batch(spec: ProblemSpec, device: torch.device) -> CloudBatch:
    """``spec.batch`` N(0, I) clouds of ``spec.points`` points (all real) with labels and targets."""
    g = torch.Generator().manual_seed(spec.seed)
    d = shape_spec(spec.shape).dim
    B, N = spec.batch, spec.points
    extra = -(-N * 11 // 40)  # ceil(0.275 N): the target holds the removed points' worth more
    target = torch.randn(B, N + extra, d, generator=g)
    labels = torch.randint(0, shape_spec(spec.shape).num_classes, (B,), generator=g)
    batch = CloudBatch(
        points=target[:, :N].clone(), mask=torch.ones(B, N, dtype=torch.bool), labels=labels,
        target=target if spec.task == "completion" else None,
        target_mask=torch.ones(B, N + extra, dtype=torch.bool) if spec.task == "completion" else None,
    )
    return batch.to(device)


def build_problem(spec: ProblemSpec) -> BenchProblem:
    """Model (seeded by ``spec.seed``), Adam 1e-3 and the synthetic batch on the resolved device."""
    from ddeqs.models import build_model
    from ddeqs.training.seeding import resolve_device
    from ddeqs.training.optim import make_optimizer

    cfg = problem_config(spec)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(spec.seed)
    data = shape_spec(spec.shape)
    model = build_model(cfg, data.dim, data.num_classes).to(device)
    return BenchProblem(cfg, model, make_optimizer(cfg.train, model), synthetic_batch(spec, device), device)
