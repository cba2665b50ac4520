"""The one configuration model shared by the CLI, Snakemake and the tests.

Every parameter of the paper has exactly one name, used in YAML files under
``params/``, in ``--set key=value`` overrides, in MLflow params and in code.
Unknown or mistyped keys are errors that name the key and suggest the closest
valid one.

Layout of a run configuration (``ExperimentConfig``)::

    seed, task
    data:    dataset, root, noise, noise_mode, noise_test, redraw_partial, input_share,
             partial_radius, max_train, max_test ...
    model:   name, z_dim, bilinear_dim, heads, ffn_dim, cross_layers, self_layers,
             pushforward, z_particles, free_share, coupling_width, dropout, ...
    solver:  preset, kind, impl, iters, step, tol, momentum, nesterov, grad_steps, attention, ...
    train:   epochs, batch_size, optimizer, lr, schedule, milestones, gamma, device, amp ...
             (optimizer/schedule fields left null take model.name's paper default: TRAIN_DEFAULTS)
    tracking: enabled, uri, experiment, rule
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError,
                      field_validator, model_validator)
from pydantic_core import core_schema

from ddeqs.data.registry import DATASETS, PROCESSED_ROOT, dataset_dim  # noqa: F401 (dataset_dim: re-exported for callers)


class _Registered:
    """Pydantic annotation: a name of :data:`ddeqs.data.registry.DATASETS`, read when a value is checked
    and when the JSON schema is generated (its ``enum``), so a registered dataset needs no edit here."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def check(name: str) -> str:
            if name not in DATASETS:
                raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
            return name

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {"enum": list(DATASETS), "type": "string"}


Task = Literal["classification", "completion"]
DatasetName = Annotated[str, _Registered()]
ModelName = Literal["ddeq", "pointnet", "point-transformer", "pcn"]
SolverKind = Literal["wgf", "fixed_point", "anderson", "broyden"]


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Which prepared dataset to read and how to derive the model input from it."""

    dataset: DatasetName = "digits"
    root: str = Field(PROCESSED_ROOT, description="folder holding prepared datasets")
    noise: float = Field(
        0.0, ge=0.0, le=1.0,
        description="completion: fraction of input particles given N(0, I) noise, drawn afresh each time a training "
                    "sample is seen (training split only unless data.noise_test; Table 2)",
    )
    noise_mode: Literal["add", "replace"] = Field(
        "add", description="add: x + eps, eps ~ N(0, I) (paper §4.2); replace: the points become N(0, I) draws"
    )
    noise_test: bool = Field(
        False, description="also noise the test inputs (fixed per sample); default: test inputs are clean at every noise level"
    )
    redraw_partial: bool = Field(
        True, description="completion: re-draw the removed balls (and the input_share subsample) each time a training "
                          "sample is seen; test partials are always fixed per sample"
    )
    input_share: float = Field(1.0, gt=0.0, le=1.0, description="fraction of input particles kept (Table 5)")
    partial_radius: float | None = Field(
        None, gt=0.0, description="completion: removal radius around 2 random centres (default 0.6 2-D, 0.8 3-D)"
    )
    classes: list[str] | None = Field(None, description="restrict to these class names (None: all)")
    max_train: int | None = Field(None, ge=1, description="use at most this many training samples")
    max_test: int | None = Field(None, ge=1, description="use at most this many test samples")
    workers: int = Field(0, ge=0, description="DataLoader worker processes")


class ModelConfig(_Strict):
    """Architecture. DDEQ fields follow the paper App. C.1; baselines have their own fields."""

    name: ModelName = "ddeq"
    # --- DDEQ (paper App. C.1) ---
    z_dim: int = Field(128, ge=1, description="dimension of the particles of Z and width of the encoders")
    bilinear_dim: int = Field(16, ge=1, description="latent dimension of the bilinear (EI) layer")
    heads: int = Field(32, ge=1, description="attention heads (width z_dim / heads each; must divide z_dim)")
    ffn_dim: int = Field(512, ge=1, description="hidden width of encoder feed-forward blocks")
    cross_layers: int = Field(3, ge=0, description="layers of the cross-encoder Z <- X (1 for MNIST classification)")
    self_layers: int = Field(1, ge=0, description="layers of each self-encoder (X and Z)")
    pushforward: bool = Field(False, description="Table 3 variant: drop the 11^T Z beta term and the Z self-encoder")
    z_particles: int = Field(10, ge=1, description="classification: particles of Z (Z0 ~ N(0, I))")
    free_share: float = Field(0.275, gt=0.0, description="completion: free particles as a share of |X|")
    coupling_width: int = Field(64, ge=1, description="completion: hidden width of the affine coupling layer nets")
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0,
        description="dropout; DDEQ: one mask per forward solve, never per inner step; PointNet: before its last "
        "layer. None: the model's paper default (DDEQ 0, PointNet 0.3)",
    )
    # --- baselines ---
    pt_k: int = Field(16, ge=1, description="Point Transformer: neighbours in kNN")
    pt_channels: list[int] = Field([32, 64, 128, 256, 512], description="Point Transformer: stage widths")
    pt_strides: list[int] = Field([1, 4, 4, 4, 4], description="Point Transformer: stage strides")
    pcn_points: int | None = Field(None, ge=1, description="PCN output points (default 256 in 2-D, 768 in 3-D)")
    pcn_grid: int = Field(
        1, ge=1, description="PCN folding grid size: each coarse point becomes pcn_grid**2 output points (1: one each)"
    )

    @model_validator(mode="after")
    def _baseline_shapes(self) -> "ModelConfig":
        if not self.pt_channels or len(self.pt_channels) != len(self.pt_strides):
            raise ValueError(
                f"model.pt_channels {self.pt_channels} and model.pt_strides {self.pt_strides} must be "
                "non-empty lists of the same length (one entry per stage)"
            )
        if min(self.pt_channels) < 1 or min(self.pt_strides) < 1:
            raise ValueError("model.pt_channels and model.pt_strides must be positive integers")
        if self.pcn_points is not None and self.pcn_points % (self.pcn_grid**2) != 0:
            raise ValueError(f"model.pcn_points={self.pcn_points} must be a multiple of model.pcn_grid**2={self.pcn_grid**2}")
        if self.dropout is None:  # the model's paper default (see MODEL_DEFAULTS)
            object.__setattr__(self, "dropout", MODEL_DEFAULTS[self.name]["dropout"])
        return self


#: Named solver settings (``solver.preset``): the :class:`SolverConfig` fields each one sets. A preset
#: sets its fields where it is given: ``--set solver.preset=fast-train`` replaces them (a later ``--set``
#: still wins), and in a YAML mapping the fields written next to ``preset`` win over it.
SOLVER_PRESETS: dict[str, dict[str, Any]] = {
    # the paper's forward solver (§4, App. C.1): plain particle descent, 200 iterations of step 5
    "paper": {"kind": "wgf", "iters": 200, "eval_iters": None, "step": 5.0, "tol": 0.0, "momentum": 0.0,
              "nesterov": False, "objective_ratio": 0.0, "eval_momentum": None, "eval_objective_ratio": None},
    # heavy ball 0.5 for 25 iterations in training (an eighth of the paper's) and 200 at evaluation:
    # on the cpu profile's digits runs it trains in under a quarter of the paper solver's time and
    # evaluates at least as well (docs/benchmarks.md, "Time to accuracy"). Heavy ball 0.5 is the best
    # momentum of `ddeqs bench momentum`; training the flow short and solving it long at test time
    # gave a lower W2 than training it at 200 (completion), see the measured table there.
    "fast-train": {"kind": "wgf", "iters": 25, "eval_iters": 200, "step": 5.0, "tol": 0.0, "momentum": 0.5,
                   "nesterov": False, "objective_ratio": 0.0, "eval_momentum": None, "eval_objective_ratio": None},
}
SolverPreset = Literal["paper", "fast-train"]
#: the DDEQ's attention kernel (``solver.attention``; ddeqs.models.ddeq.fastpath.attention_kernel)
AttentionChoice = Literal["auto", "sdpa", "sdpa_pad8"]


def _with_preset(solver: Any) -> Any:
    """A ``solver`` mapping with its preset's fields filled in where it gives none (else as given)."""
    if isinstance(solver, dict) and solver.get("preset") in SOLVER_PRESETS:
        return {**SOLVER_PRESETS[solver["preset"]], **solver}
    return solver


def expand_preset(layer: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run-configuration layer (a dict shaped as :class:`ExperimentConfig`) with its ``solver.preset``
    fields written out, the layer's own solver fields winning; layers without a preset come back as given.

    Merging expanded layers in order gives a preset the meaning it has in ``--set``: it replaces the
    solver fields of the layers below it (e.g. a pipeline's defaults), and a later layer still wins.
    """
    if not layer or "solver" not in layer:
        return layer
    return {**layer, "solver": _with_preset(layer["solver"])}


class SolverConfig(_Strict):
    """Forward solver of the DEQ (inner problem) and its backward (phantom gradient)."""

    preset: SolverPreset | None = Field(
        None, description="named solver setting filling the fields it names (SOLVER_PRESETS): paper (plain descent, "
        "200 iterations) or fast-train (heavy ball 0.5, 25 iterations in training, 200 at evaluation); fields given "
        "next to it win"
    )
    kind: SolverKind = Field("wgf", description="wgf (MMD Wasserstein gradient flow) or a classical DEQ solver")
    impl: Literal["fast", "naive"] = Field("fast", description="fast path or the in-project naive reference")
    iters: int = Field(200, ge=1, description="inner iterations (paper: 200)")
    eval_iters: int | None = Field(None, ge=1, description="inner iterations at evaluation (default: iters)")
    step: float = Field(5.0, gt=0.0, description="inner step size eta (paper: 5)")
    tol: float = Field(0.0, ge=0.0, description="stop when the relative objective change falls below this (0: never; "
                       "with momentum: change of the best objective over 10 iterations)")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="heavy-ball / Nesterov momentum of the particle update "
                            "(then each sample's lowest-objective iterate is returned)")
    nesterov: bool = Field(False, description="use Nesterov momentum")
    objective_ratio: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="stop a sample once its objective is at most this times its value at Z0 (relative objective; 0: off)",
    )
    eval_momentum: float | None = Field(
        None, ge=0.0, lt=1.0, description="solver.momentum at evaluation (default: solver.momentum); nesterov is shared",
    )
    eval_objective_ratio: float | None = Field(
        None, ge=0.0, lt=1.0, description="solver.objective_ratio at evaluation (default: solver.objective_ratio)",
    )
    grad_steps: int = Field(1, ge=1, description="phantom gradient steps (torchdeq 'grad')")
    tau: float = Field(1.0, gt=0.0, le=1.0, description="phantom gradient damping (torchdeq 'tau')")
    compile: bool = Field(False, description="torch.compile the inner step (GPU)")
    bf16: bool = Field(False, description="bf16 autocast of F's Z branch inside the inner solve, on CUDA or CPU (MMD "
                       "gradient and particle update stay float32); moves Z* by a few per cent: ddeqs bench bf16")
    cuda_graph: bool = Field(
        False, description="replay the fast inner iteration from a CUDA graph (GPU; needs tol = 0 and "
        "objective_ratio = 0, a fixed iteration count; the eager loop's values up to float rounding; no use on CPU)",
    )
    # "auto" keeps the kernels measured fastest so far: CPU the hand-written ones, CUDA plain SDPA until a GPU
    # measurement (make gpu-check's bench attention part) decides between sdpa and sdpa_pad8 (fastpath.AUTO_CUDA).
    attention: AttentionChoice = Field(
        "auto", description="attention kernel of the DDEQ: auto (CPU: hand-written kernels; CUDA: plain SDPA), sdpa "
        "(PyTorch's SDPA on any device) or sdpa_pad8 (SDPA at the head width zero-padded to a multiple of 8, which "
        "PyTorch's fused CUDA backends take; any device); the same values up to float rounding"
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        return _with_preset(data)  # fields given next to the preset win


class TrainConfig(_Strict):
    """Outer optimisation (paper §4: batch 64, Adam 1e-3, x0.1 at 40 % and 80 % of epochs).

    Optimizer and schedule fields left ``None`` (absent, or ``null`` in YAML) take the default of
    ``model.name`` from :data:`TRAIN_DEFAULTS` when the :class:`ExperimentConfig` is validated (each
    model as its own paper trains it); a value given explicitly always wins.
    """

    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "sgd"] | None = Field(None, description="None: the model's paper optimizer")
    lr: float | None = Field(
        None, gt=0.0, description="initial learning rate; None: the model's paper default (DDEQ, PointNet 1e-3; "
        "Point Transformer 0.05; PCN 1e-4)",
    )
    momentum: float | None = Field(None, ge=0.0, lt=1.0, description="SGD momentum (None: model default, 0.9)")
    weight_decay: float | None = Field(None, ge=0.0, description="None: model default (Point Transformer 1e-4, else 0)")
    schedule: Literal["multistep", "exponential"] | None = Field(
        None,
        description="multistep: lr x gamma at the milestones (per epoch; DDEQ and the classifiers); exponential: "
        "lr x gamma every decay_every of the training steps, not below min_lr (per step; PCN). None: model default",
    )
    milestones: list[float] = Field([0.4, 0.8], description="multistep: fractions of epochs at which lr is multiplied by gamma")
    gamma: float | None = Field(None, gt=0.0, description="lr factor per decay (None: model default; 0.1, PCN 0.7)")
    decay_every: float | None = Field(
        None, gt=0.0, le=1.0, description="exponential: fraction of the training steps between two decays (PCN 1/6)"
    )
    min_lr: float | None = Field(None, ge=0.0, description="exponential: lr floor (None: model default; PCN 1e-6)")
    device: str = Field("auto", description="auto (cuda when present, else cpu), cpu, cuda, cuda:N")
    amp: bool = Field(False, description="mixed precision (GPU only)")
    deterministic: bool = Field(False, description="torch deterministic algorithms (bit-reproducible on CPU)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch default)")
    diagnostics_every: int = Field(0, ge=0, description="log App. D.1 diagnostics every N steps (0: off)")
    save_embeddings: int = Field(4, ge=0, description="test batches whose Z*, F(Z*) and pooled embeddings are saved")
    eval_every: int = Field(
        0, ge=0, description="also evaluate on the test split every N epochs (history.json test_*; 0: only at the end)"
    )
    eval_init: bool = Field(
        False, description="also evaluate the initial model on the test split (metrics.json 'init'): the baseline "
        "against which a completion's W2 is 'well below its value at initialisation'"
    )
    quiet: bool = Field(False, description="no progress bars (pipelines)")

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < m < 1.0 for m in v):
            raise ValueError("milestones are fractions of the epochs, each in (0, 1)")
        return sorted(v)


# Per-model defaults of the fields left None above (DDEQ paper §4: the classification baselines use
# the DDEQ's epochs and lr schedule and their own papers' optimizers; PCN is trained as its paper
# trains it, see below).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "ddeq": {"dropout": 0.0},
    "pointnet": {"dropout": 0.3},  # PointNet (Qi et al. 2017): dropout keep ratio 0.7 before the last layer
    "point-transformer": {"dropout": 0.0},  # unused
    "pcn": {"dropout": 0.0},  # unused
}
_MULTISTEP = {"schedule": "multistep", "gamma": 0.1, "decay_every": None, "min_lr": 0.0}
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    # DDEQ paper §4: Adam 1e-3, lr x0.1 at 40 % and 80 % of the epochs
    "ddeq": {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, **_MULTISTEP},
    # PointNet (Qi et al. 2017): Adam, initial learning rate 0.001; the DDEQ's schedule
    "pointnet": {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, **_MULTISTEP},
    # Point Transformer (Zhao et al. 2021): SGD, lr 0.05, momentum 0.9, weight decay 1e-4; the DDEQ's schedule
    "point-transformer": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, **_MULTISTEP},
    # PCN (Yuan et al. 2018): Adam 1e-4 for 300k iterations, lr x0.7 every 50k iterations, floor 1e-6.
    # We keep the shape of that decay relative to the length of training: x0.7 after every sixth of
    # the training steps (50k / 300k), stepped per optimizer step. Our PCN runs take a few thousand
    # steps, so "every 50k iterations" taken literally would never decay. (Over PCN's own 300k
    # iterations the floor is never reached: 1e-4 x 0.7^5 = 1.7e-5; it only binds with more decays.)
    "pcn": {"optimizer": "adam", "lr": 1e-4, "momentum": 0.9, "weight_decay": 0.0,
            "schedule": "exponential", "gamma": 0.7, "decay_every": 1.0 / 6.0, "min_lr": 1e-6},
}


def train_defaults(model_name: str) -> dict[str, Any]:
    """The optimizer/schedule defaults of ``model_name`` (a ``model.name`` value), keys of :class:`TrainConfig`."""
    return dict(TRAIN_DEFAULTS[model_name])


class TrackingConfig(_Strict):
    """MLflow. uri None: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow/mlflow.db."""

    enabled: bool = True
    uri: str | None = None
    experiment: str | None = Field(None, description="default: one experiment per task family, e.g. ddeqs-classification")
    parent_run: str | None = Field(None, description="name of a parent run (ablation grid) to nest under")
    run_name: str | None = None
    rule: str | None = Field(None, description="pipeline rule that started the run (tag)")


class ExperimentConfig(_Strict):
    """A complete, validated run configuration."""

    seed: int = 0
    task: Task = "classification"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    solver: SolverConfig = SolverConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        if self.task == "completion" and self.model.name in ("pointnet", "point-transformer"):
            raise ValueError(f"model.name={self.model.name!r} is a classifier; completion uses 'ddeq' or 'pcn'")
        if self.task == "classification" and self.model.name == "pcn":
            raise ValueError("model.name='pcn' is a completion network; classification uses ddeq, pointnet or point-transformer")
        fill = {k: v for k, v in TRAIN_DEFAULTS[self.model.name].items() if getattr(self.train, k) is None}
        if fill:  # fields left None take the model's paper default; explicit values win
            object.__setattr__(self, "train", self.train.model_copy(update=fill))
        if self.train.schedule == "exponential" and self.train.decay_every is None:
            raise ValueError("train.schedule='exponential' needs train.decay_every (fraction of the training steps "
                             "between two lr decays, e.g. 0.1667)")
        m = self.model
        if m.name == "ddeq":  # the structural constraints the DDEQ modules check at build time, here at load time
            if m.z_dim % m.heads:
                divisors = [h for h in range(1, m.z_dim + 1) if m.z_dim % h == 0]
                raise ValueError(f"model.heads={m.heads} does not divide model.z_dim={m.z_dim} (each head is "
                                 f"z_dim / heads wide); use heads in {divisors[-8:]} or change z_dim")
            if self.task == "completion":
                d = dataset_dim(self.data.dataset)
                if m.z_dim % 2:
                    raise ValueError(f"model.z_dim={m.z_dim} must be even for completion (the affine coupling "
                                     "layer splits it in two halves)")
                if m.z_dim // 2 < d:
                    raise ValueError(f"model.z_dim={m.z_dim} is too small for the {d}-D points of "
                                     f"{self.data.dataset}: completion needs z_dim >= {2 * d}")
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, e.g. ``{'solver.iters': 200, ...}`` (MLflow params, tables)."""
        return flatten(self.model_dump(mode="json"))


# ---------------------------------------------------------------------------
# loading, overrides and error messages


#: Fields added after runs were trained, each with the value that leaves a run as it was. A resolved
#: configuration holding one at that value is recorded without it (:func:`omit_late_defaults`: pipeline
#: params, which Snakemake compares to decide reruns, and checkpoint fingerprints), so adding a field
#: reruns no finished pipeline and orphans no checkpoint.
LATE_FIELDS: dict[str, Any] = {"solver.preset": None, "solver.cuda_graph": False, "solver.attention": "auto"}


def omit_late_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """A nested (``model_dump``) or dotted (:func:`flatten`) configuration dict without the
    :data:`LATE_FIELDS` that hold their default; other keys as given (a new dict)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    for key, default in LATE_FIELDS.items():
        if key in out:
            if out[key] == default:
                del out[key]
            continue
        section, _, leaf = key.partition(".")
        if isinstance(out.get(section), dict) and leaf in out[section] and out[section][leaf] == default:
            del out[section][leaf]
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def valid_keys(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[str]:
    """All dotted keys of a config model (leaves and sections)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key = prefix + name
        keys.append(key)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(valid_keys(ann, key + "."))
    return keys


def suggest(key: str, choices: list[str] | None = None) -> str:
    """' (did you mean 'solver.iters'?)' or ''."""
    choices = choices if choices is not None else valid_keys()
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    if not close:  # try the leaf name alone against leaves of any section
        by_leaf = {c.rsplit(".", 1)[-1]: c for c in choices}
        hit = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        close = [by_leaf[hit[0]]] if hit else []
    return f" (did you mean '{close[0]}'?)" if close else ""


def format_errors(err: ValidationError, header: str, unknown_hint: Callable[[str], str]) -> str:
    """Pydantic errors as one line each under ``header``; an unknown key gets ``unknown_hint(key)``."""
    lines = [header]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}'{unknown_hint(key)}")
        else:
            lines.append(f"  {key or '(top level)'}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _format_errors(err: ValidationError, source: str) -> str:
    return format_errors(err, f"invalid configuration in {source}:", suggest)


def parse_value(text: str) -> Any:
    """Parse an override value with YAML rules: '3' -> 3, 'true' -> True, '[1,2]' -> [1, 2]."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


#: Keys removed from the run configuration and where their setting lives now. Training never read either
#: (a run reads the prepared splits under data.root, whose .json sidecars record the preparation
#: parameters), so they only suggested a control that did not exist. A file that still has one (e.g. a
#: run folder's config.yaml written before) loads with a warning; ``--set`` of one is an error.
REMOVED_KEYS = {
    "data.max_points": "it is a preparation setting: give it to 'ddeqs data prepare --max-points N' (pipeline: "
                       "prepare: {<dataset>: \"--max-points N\"}); a prepared split's .json records the value used",
    "data.raw_root": "training reads the prepared splits under data.root only: give the download folder to "
                     "'ddeqs data fetch/prepare --raw-root DIR'",
}


def drop_removed(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """``raw`` without the keys of :data:`REMOVED_KEYS` (a warning per key found); ``raw`` is not changed."""
    out = dict(raw)
    for key, note in REMOVED_KEYS.items():
        section, leaf = key.split(".")
        if isinstance(out.get(section), dict) and leaf in out[section]:
            out[section] = {k: v for k, v in out[section].items() if k != leaf}
            warnings.warn(f"{source}: '{key}' is no longer a run setting and is ignored; {note}", UserWarning,
                          stacklevel=3)
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a raw (unvalidated) nested dict; returns a new dict."""
    import copy

    out = copy.deepcopy(raw)
    keys = valid_keys()
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. solver.iters=50)")
        key, value = item.split("=", 1)
        key = key.strip()
        if key in REMOVED_KEYS:
            raise ConfigError(f"'{key}' was removed from the run configuration (--set {item!r}): {REMOVED_KEYS[key]}")
        if key not in keys:
            raise ConfigError(f"unknown key '{key}' in --set {item!r}{suggest(key, keys)}")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set '{key}': '{p}' is not a section")
        node[parts[-1]] = parse_value(value)
        if key == "solver.preset" and node["preset"] in SOLVER_PRESETS:
            node.update(SOLVER_PRESETS[node["preset"]])  # the preset replaces what came before it
    return out


def from_dict(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(drop_removed(raw, source))
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping (PyYAML keeps the last one silently,
    so ``solver: {iters: 5}`` twice would drop a setting without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].line + 1}); keep one", key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def safe_load_unique(text: str) -> Any:
    """``yaml.safe_load`` that raises ``yaml.YAMLError`` on duplicate keys."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def load_yaml(path: str | Path, missing: str = "configuration file not found: {path}",
              expected: str = "a mapping at the top level") -> dict[str, Any]:
    """A YAML mapping read strictly (duplicate keys are errors); ``missing`` / ``expected`` word the
    errors of an absent file and of a file that is not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(missing.format(path=path))
    try:
        raw = safe_load_unique(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a run configuration from YAML (or defaults) and apply ``key=value`` overrides."""
    raw = load_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    return from_dict(raw, str(path) if path is not None else "--set overrides")


def dump_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
