"""Training, evaluation, checkpoints, App. D.1 diagnostics and run folders.

* :func:`train_run` — train a configured model and write its run folder (``ddeqs train``).
* :func:`evaluate_run` — evaluate a run folder's model on a split (``ddeqs evaluate``).
* :func:`evaluate_model` — metrics (with standard errors) of a model on a data loader.

``train_run`` runs the phases of :mod:`ddeqs.training.session` (setup, resume, fit, finish) with the
callbacks of :mod:`ddeqs.training.callbacks`; :mod:`ddeqs.training.runtime` is the setup (torch
settings, device, data, model, MLflow run) that training and evaluation share.
"""

from ddeqs.training.evaluate import EvalResult, evaluate_model, evaluate_run, load_run_model
from ddeqs.training.source import DataSource, default_source
from ddeqs.training.trainer import make_optimizer, make_scheduler, milestone_epochs, train_run

__all__ = [
    "DataSource",
    "EvalResult",
    "default_source",
    "evaluate_model",
    "evaluate_run",
    "load_run_model",
    "make_optimizer",
    "make_scheduler",
    "milestone_epochs",
    "train_run",
]
