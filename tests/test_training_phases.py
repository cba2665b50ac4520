"""Training phases (ddeqs.training.session) and their callbacks (ddeqs.training.callbacks); the setup
that training, evaluation and ``ddeqs bench train`` share (ddeqs.training.runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ddeqs.training import evaluate_run, runtime
from ddeqs.training.callbacks import Callback, CheckpointCallback, DiagnosticsCallback, TrackingCallback
from ddeqs.training.optim import make_optimizer, make_scheduler, steps_per_decay
from ddeqs.training.session import fit, resume, setup
from test_training import make_source, tiny_cfg


class Recorder(Callback):
    """Records every hook call, and a parameter's value after backward and after the optimizer step."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.steps: list[Any] = []
        self.entries: list[dict[str, Any]] = []
        self.finished_epochs: list[int] = []
        self.param_before: list[torch.Tensor] = []
        self.param_after: list[torch.Tensor] = []
        self.grad_seen: list[bool] = []

    def _param(self, state: Any) -> torch.Tensor:
        return next(p for p in state.model.parameters() if p.requires_grad)

    def on_init_evaluated(self, state, metrics):
        self.calls.append(("init", dict(metrics)))

    def on_epoch_start(self, state, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_backward(self, state, step):
        p = self._param(state)
        self.grad_seen.append(p.grad is not None)
        self.param_before.append(p.detach().clone())
        self.calls.append(("backward", step.step))

    def on_step(self, state, step):
        self.param_after.append(self._param(state).detach().clone())
        self.steps.append(step)
        self.calls.append(("step", step.step))

    def on_epoch_end(self, state, entry):
        self.entries.append(dict(entry))
        self.finished_epochs.append(state.epoch)
        self.calls.append(("epoch_end", entry["epoch"]))

    def on_fit_end(self, state):
        self.calls.append(("fit_end", state.epoch))


def _state(tmp_path: Path, *extra: str, name: str = "run"):
    cfg = tiny_cfg("classification", "ddeq", *extra)
    return setup(cfg, tmp_path / name, tmp_path / name / ".work", source=make_source(), log=lambda m: None)


def test_fit_calls_each_hook_with_the_steps_epochs_and_losses(tmp_path: Path) -> None:
    state = _state(tmp_path, "train.epochs=2", "train.eval_init=true")  # 48 training clouds, batches of 16
    rec = Recorder()
    fit(state, [rec])
    kinds = [c[0] for c in rec.calls]
    assert kinds[:2] == ["init", "epoch_start"] and kinds[-1] == "fit_end" and kinds.count("fit_end") == 1
    assert [c[1] for c in rec.calls if c[0] == "epoch_start"] == [0, 1]
    assert [c[1] for c in rec.calls if c[0] == "backward"] == [1, 2, 3, 4, 5, 6]
    assert [c[1] for c in rec.calls if c[0] == "step"] == [1, 2, 3, 4, 5, 6]
    # every backward hook comes right before the step hook of the same step
    pairs = [c for c in rec.calls if c[0] in ("backward", "step")]
    assert pairs == [(k, s) for s in range(1, 7) for k in ("backward", "step")]
    assert [s.epoch for s in rec.steps] == [0, 0, 0, 1, 1, 1]
    # on_backward: gradients there, the optimizer has not stepped; on_step: it has
    assert all(rec.grad_seen)
    assert all(not torch.equal(a, b) for a, b in zip(rec.param_before, rec.param_after))
    # the epoch's row is the mean of its (equal-sized) batches' losses; the inner solver's stats are reported
    assert rec.finished_epochs == [1, 2] and rec.entries == state.history
    for e, entry in enumerate(rec.entries):
        losses = [s.loss for s in rec.steps if s.epoch == e]
        assert entry["train_loss"] == pytest.approx(sum(losses) / 3, rel=1e-6)
        assert entry["inner_iters"] == pytest.approx(sum(s.inner_iters for s in rec.steps if s.epoch == e) / 3)
    assert state.step == 6 and state.epoch == 2
    init = [c[1] for c in rec.calls if c[0] == "init"][0]
    assert init == state.init_metrics and 0.0 <= init["accuracy"] <= 1.0


class _StopAfterEpoch(Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, state, entry):
        if state.epoch == self.epochs:
            raise KeyboardInterrupt


def test_resume_restores_the_checkpoint_and_fit_continues_at_the_next_epoch(tmp_path: Path) -> None:
    ref = _state(tmp_path, "train.epochs=3", "train.diagnostics_every=2", name="ref")
    fit(ref, [DiagnosticsCallback()])

    first = _state(tmp_path, "train.epochs=3", "train.diagnostics_every=2")
    assert not resume(first)  # nothing to resume yet
    with pytest.raises(KeyboardInterrupt):
        fit(first, [DiagnosticsCallback(), CheckpointCallback(), _StopAfterEpoch(1)])

    logs: list[str] = []
    again = setup(first.cfg, first.out_dir, first.work, source=make_source(), log=logs.append)
    assert resume(again)
    assert (again.epoch, again.step, len(again.history)) == (1, 3, 1)
    assert logs == [f"ddeqs: resuming run from its checkpoint after epoch 1 of 3 ({first.work})"]
    rec = Recorder()
    fit(again, [DiagnosticsCallback(), rec])
    assert [c[1] for c in rec.calls if c[0] == "epoch_start"] == [1, 2]
    assert [s.step for s in rec.steps] == [4, 5, 6, 7, 8, 9]
    # deterministic CPU: the resumed training ends where the uninterrupted one does
    assert [h["train_loss"] for h in again.history] == [h["train_loss"] for h in ref.history]
    assert again.diag.series == ref.diag.series and again.diag.series["step"] == [2, 4, 6, 8]
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


class _FakeTracker:
    run_id, experiment_id = "r1", "e1"

    def __init__(self) -> None:
        self.steps: list[list[tuple[str, float, int]]] = []
        self.metrics: list[tuple[dict[str, Any], int | None]] = []
        self.series: list[str] = []
        self.ended: str | None = None

    def log_steps(self, items):
        self.steps.append(list(items))

    def log_metrics(self, metrics, step=None):
        self.metrics.append((dict(metrics), step))

    def log_metric_series(self, key, values):
        self.series.append(key)

    def end(self, status="FINISHED"):
        self.ended = status


def test_tracking_logs_each_steps_loss_and_the_diagnostics_per_epoch(tmp_path: Path) -> None:
    state = _state(tmp_path, "train.epochs=2", "train.diagnostics_every=2")
    tracker, rec = _FakeTracker(), Recorder()
    cb = TrackingCallback(tracker)
    fit(state, [DiagnosticsCallback(), cb, rec])
    cb.close("FINISHED")
    assert tracker.ended == "FINISHED" and len(tracker.steps) == 2  # one flush per epoch
    flat = [x for epoch in tracker.steps for x in epoch]
    assert [(v, s) for k, v, s in flat if k == "train_loss_step"] == [(s.loss, s.step) for s in rec.steps]
    assert sorted({s for k, _, s in flat if k in ("b10", "b11")}) == [2, 4, 6]
    assert [s for k, _, s in flat if k == "b12"] == [2, 4, 6]  # b12 at every diagnostic step (defined for T > 1)
    assert state.diag.series["step"] == [2, 4, 6]
    per_epoch = [(m, s) for m, s in tracker.metrics if "train_loss" in m]
    assert [s for _, s in per_epoch] == [1, 2]
    assert [m["train_loss"] for m, _ in per_epoch] == [h["train_loss"] for h in state.history]
    assert tracker.series == ["inner_objective_trace/epoch_001", "inner_objective_trace/epoch_002"]


def test_train_settings_alone_build_the_same_optimizer_and_schedule() -> None:
    cfg = tiny_cfg("completion", "pcn", "train.epochs=6")
    model = torch.nn.Linear(2, 2)
    a, b = make_optimizer(cfg, model), make_optimizer(cfg.train, model)
    assert type(a) is type(b) and a.defaults == b.defaults
    assert steps_per_decay(cfg.train, 10) == steps_per_decay(cfg, 10) == 10
    sa, sb = make_scheduler(cfg, a, 10), make_scheduler(cfg.train, b, 10)
    for _ in range(25):
        a.step(), b.step(), sa.step(), sb.step()
    assert sa.get_last_lr() == sb.get_last_lr() == [pytest.approx(1e-4 * 0.7 ** 2)]


def test_bench_train_and_evaluate_take_device_data_and_model_from_the_shared_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ddeqs bench train`` (through train_run) and ``ddeqs evaluate`` open their data through
    ``runtime.open_runtime``: with it replaced, no prepared dataset is needed, and evaluation of the
    saved model on that data repeats training's final test metrics."""
    from ddeqs.bench.train import Setting, run_train_bench
    from ddeqs.config import ExperimentConfig

    seen: list[ExperimentConfig] = []
    real = runtime.open_runtime

    def spy(cfg, source=None, device=None):
        seen.append(cfg)
        return real(cfg, source or make_source(), device)

    monkeypatch.setattr(runtime, "open_runtime", spy)
    from test_training import TINY

    rows = run_train_bench(None, ["task=classification", "model.name=ddeq", *TINY, "tracking.enabled=false",
                                  "train.epochs=1", "data.root=" + str(tmp_path / "nodata")],
                           [Setting("few", ["solver.iters=2"])], tmp_path / "bench")
    assert len(seen) == 1 and seen[0].solver.iters == 2
    m = evaluate_run(tmp_path / "bench" / "few", track=False)
    assert len(seen) == 2 and seen[1].solver.iters == 2 and seen[1].data.root == seen[0].data.root
    assert m["test"] == rows[0].test  # same data, same model, same numbers
