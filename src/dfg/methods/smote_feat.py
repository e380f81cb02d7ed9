"""Feature-space SMOTE, the interpolation control for DFG (method.md §5).

From the fine-tuned model of the same task and seed: F's outputs (flattened) over the whole training
split, without augmentation; imbalanced-learn's SMOTE (k nearest same-class neighbours) oversamples every
class below the majority count up to it, each synthetic feature x_i + λ(x_nn − x_i), λ ~ U(0, 1); then C
alone trains on the pool of real + synthetic features (uniform batches from the pool), F frozen.
Asks: does a GAN in feature space (DFG) beat interpolation?
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from dfg import DfgError
from dfg.methods import METHODS
from dfg.methods.base import Logs
from dfg.methods.longtail import FrozenBodyMethod, step_generator
from dfg.runtime import derive_seed

log = logging.getLogger(__name__)

#: Real and generated minority features kept in artefacts.pt, per kind (docs/architecture.md).
ARTEFACT_SAMPLES = 200


def smote_oversample(
    features: np.ndarray, labels: np.ndarray, k_neighbors: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic features and labels that bring every class below the largest class count up to it.

    Only the classes to oversample go into imblearn (SMOTE searches neighbours within a class), which
    keeps memory to what is generated. Returns empty arrays when the classes are already balanced."""
    from imblearn.over_sampling import SMOTE

    classes, counts = np.unique(labels, return_counts=True)
    target = int(counts.max())
    grow = {int(c): target for c, n in zip(classes, counts, strict=True) if n < target}
    dim = features.shape[1]
    if not grow:
        return np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
    smallest = int(min(n for c, n in zip(classes, counts, strict=True) if int(c) in grow))
    if smallest <= k_neighbors:
        raise DfgError(f"smote_feat: a class has only {smallest} training samples, SMOTE needs more than "
                       f"k_neighbors = {k_neighbors}; lower methods.smote_feat.k_neighbors")
    keep = np.isin(labels, list(grow))
    x_sub, y_sub = features[keep], labels[keep]
    sampler = SMOTE(sampling_strategy=grow, k_neighbors=k_neighbors, random_state=seed % (1 << 32))
    x_res, y_res = sampler.fit_resample(x_sub, y_sub)
    # imblearn returns the input rows first, then the synthetic ones.
    return np.asarray(x_res[len(x_sub):], dtype=np.float32), np.asarray(y_res[len(y_sub):], dtype=np.int64)


@METHODS.register("smote_feat")
class SmoteFeat(FrozenBodyMethod):
    """hp: k_neighbors, step_fraction (C's training steps as a share of train.steps), lr_scale,
    max_memory_gb (refuse feature pools larger than this rather than exhaust memory)."""

    init_from_run = "finetune"
    label = "SMOTE (features)"

    def trained_module(self) -> nn.Module:
        return self.ctx.net.C

    def setup(self) -> None:
        self.freeze()
        super().setup()
        ctx, hp = self.ctx, self.ctx.hp
        self.feature_shape = self.unaugmented_feature_shape()
        dim = math.prod(self.feature_shape)
        counts = torch.as_tensor(ctx.data.class_counts)
        pool_rows = int(counts.max()) * int((counts > 0).sum())
        need_gb = (pool_rows + int(counts.sum())) * dim * 4 / 2**30
        if need_gb > float(hp["max_memory_gb"]):
            raise DfgError(f"smote_feat: the feature pool of this task needs about {need_gb:.1f} GB "
                           f"({pool_rows} rows x {dim} features); raise methods.smote_feat.max_memory_gb if the "
                           "machine has it, or leave smote_feat out of run.methods for this task")
        real, labels = self.extract_features()
        fake, fake_labels = smote_oversample(real, labels, int(hp["k_neighbors"]),
                                             derive_seed(ctx.seed, "smote"))
        log.info("smote_feat: %d real + %d synthetic features of dimension %d", len(real), len(fake), dim)
        self.n_real = len(real)
        self.pool = torch.from_numpy(np.concatenate([real, fake])).to(ctx.device)
        self.pool_labels = torch.from_numpy(np.concatenate([labels, fake_labels])).to(ctx.device)

    @torch.no_grad()
    def unaugmented_feature_shape(self) -> tuple[int, ...]:
        """F's output shape for an unaugmented training image. It can differ from the backbone's nominal
        feature_shape: 224-px data is stored at 256 px and only cropped by augmentation (ResNet-50 then
        gives 256x64x64 instead of 256x56x56, like the test images); C's pooling takes either."""
        x, _ = next(iter(self.ctx.data.train.iterate(1)))
        self.ctx.net.eval()
        return tuple(self.ctx.net.F(x).shape[1:])

    @torch.no_grad()
    def extract_features(self) -> tuple[np.ndarray, np.ndarray]:
        """F's outputs over the training split in order, unaugmented, flattened (float32 on the CPU)."""
        net = self.ctx.net
        net.eval()
        feats, labels = [], []
        for x, y in self.ctx.data.train.iterate(int(self.ctx.params["train"]["eval_batch_size"])):
            with self.ctx.autocast():
                f = net.F(x)
            feats.append(f.float().flatten(1).cpu())
            labels.append(y.cpu())
        return torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(np.int64)

    def step_inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's batch of pooled features and labels (indices from a per-step CPU generator)."""
        batch = int(self.ctx.params["train"]["batch_size"])
        idx = torch.randint(len(self.pool), (batch,), generator=step_generator(self.ctx.seed, "smote-batch", step))
        idx = idx.to(self.pool.device)
        return self.pool[idx].view(batch, *self.feature_shape), self.pool_labels[idx]

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        f, y = inputs
        self.set_modes()
        with self.ctx.autocast():
            logits = self.ctx.net.C(f)
        loss = Fn.cross_entropy(logits.float(), y)
        self.optimize(loss)
        return {"loss": loss.detach()}

    def artefacts(self) -> dict[str, Any] | None:
        """A sample of real and synthetic minority features (the figures' t-SNE), as for dfg."""
        minority = torch.as_tensor(list(self.ctx.data.minority_classes), dtype=torch.int64)
        out = {}
        for kind, rows in (("real", slice(0, self.n_real)), ("generated", slice(self.n_real, None))):
            x, y = self.pool[rows].cpu(), self.pool_labels[rows].cpu()
            pick = torch.isin(y, minority).nonzero().squeeze(1)
            gen = step_generator(self.ctx.seed, f"smote-artefact-{kind}", 0)
            pick = pick[torch.randperm(len(pick), generator=gen)[:ARTEFACT_SAMPLES]].sort().values
            out[kind], out[f"{kind}_labels"] = x[pick], y[pick]
        return {"features": out, "minority_classes": list(self.ctx.data.minority_classes),
                "classes": list(getattr(self.ctx.data, "classes", []))}
