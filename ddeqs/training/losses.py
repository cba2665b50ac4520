"""Training losses per task and model, one value per sample ``(B,)``.

* classification: cross entropy of ``logits`` ``(B, C)`` against ``labels`` ``(B,)``;
* DDEQ completion: Riesz MMD² between the whole output cloud and the full target cloud;
* PCN completion: PCN's own loss, ``CD(coarse, target) + alpha · CD(fine, target)`` against the
  full target cloud, alpha ramped from 0.01 to 1 over training (:func:`ddeqs.models.pcn.pcn_loss`).
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
    """``cross_entropy``, ``mmd2`` or ``chamfer`` (PCN: Chamfer of the coarse and the fine output)."""
    if cfg.task == "classification":
        return "cross_entropy"
    return "chamfer" if cfg.model.name == "pcn" else "mmd2"


def per_sample_loss(
    cfg: ExperimentConfig, out: ModelOutput, batch: CloudBatch, progress: float | None = None
) -> torch.Tensor:
    """The training loss of every sample of ``batch``, ``(B,)`` (float32 even under autocast).

    ``progress``: fraction of training done, in [0, 1] (PCN's alpha ramp; None: the end value).
    """
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
    from ddeqs.models.pcn import pcn_alpha, pcn_loss

    coarse = out.solver.get("coarse")
    out32 = ModelOutput(points=out.points.float(), mask=out.mask,
                        solver={"coarse": coarse.float() if coarse is not None else None})
    return pcn_loss(out32, batch.target.float(), batch.target_mask, alpha=pcn_alpha(progress))
