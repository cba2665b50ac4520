"""Training losses per task and model, one value per sample ``(B,)``.

* classification: cross entropy of ``logits`` ``(B, C)`` against ``labels`` ``(B,)``;
* DDEQ completion: Riesz MMD² between the whole output cloud and the full target cloud;
* PCN completion: Chamfer distance between its output points and the full target cloud.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ddeqs.batch import CloudBatch
from ddeqs.config import ExperimentConfig
from ddeqs.errors import DataError
from ddeqs.models.base import ModelOutput

__all__ = ["loss_name", "per_sample_loss"]


def loss_name(cfg: ExperimentConfig) -> str:
    """``cross_entropy``, ``mmd2`` or ``chamfer``."""
    if cfg.task == "classification":
        return "cross_entropy"
    return "chamfer" if cfg.model.name == "pcn" else "mmd2"


def per_sample_loss(cfg: ExperimentConfig, out: ModelOutput, batch: CloudBatch) -> torch.Tensor:
    """The training loss of every sample of ``batch``, ``(B,)`` (float32 even under autocast)."""
    name = loss_name(cfg)
    if name == "cross_entropy":
        if out.logits is None or batch.labels is None:
            raise DataError("classification needs model logits and batch labels (CloudBatch.labels is None)")
        return F.cross_entropy(out.logits.float(), batch.labels.long(), reduction="none")
    if out.points is None or batch.target is None:
        raise DataError(
            "completion needs model output points and batch targets (CloudBatch.target is None: "
            "prepare the dataset with targets, e.g. 'ddeqs data prepare')"
        )
    if name == "mmd2":
        from ddeqs.mmd import riesz_mmd2

        return riesz_mmd2(out.points.float(), out.mask, batch.target.float(), batch.target_mask)
    from ddeqs.metrics import chamfer

    return chamfer(out.points.float(), out.mask, batch.target.float(), batch.target_mask)
