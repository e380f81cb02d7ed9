"""Channel ablation: DFG's class attention A (K x C_F) and DELTA's channel weights (method.md §2).

Ablating channel j of a conv = zeroing its filter j (weight only; the bias stays, as the authors'
`state_dict()[name + '.weight'][j] = 0`), so the channel's output becomes the constant bias_j. Instead
of editing weights C times and re-running, the samples are replicated and a forward hook overwrites
channel j of replica j with bias_j: one batched forward per chunk, the same numbers (the networks run
in eval mode here, so replicas do not see each other through batch statistics).

- Attention: w_ij = CE_base(i) - CE_without_j(i) (base minus ablated, the authors' sign), softmax over
  j per sample, mean over each class's samples -> A[k] (rows sum to 1); keep A[k, c] where
  C_F * A[k, c] >= t (0.9 initially, 0.95 on refresh), else 0.
- Omega_E weights: softmax(zscore(mean_i w_ij) / 5) from the same initial ablation.
- Omega_C weights: Delta_j = CE_without_j - CE_base (batch means) averaged over 4 batches, per hook
  layer, softmax(zscore(Delta) / 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as nnf
from torch import nn

from dfg import DfgError
from dfg.batches import augment as augment_batch
from dfg.batches import normalise


def _ablation_hook(conv: nn.Module, channels: torch.Tensor, n: int):
    """Forward hook: the output holds len(channels) + 1 replicas of n samples; replica 0 is left as is,
    replica r >= 1 gets channel channels[r-1] replaced by the conv's bias (0 without bias)."""
    bias = conv.bias

    def hook(module, inputs, out):
        out = out.clone()
        view = out.view(len(channels) + 1, n, *out.shape[1:])
        for r, j in enumerate(channels.tolist(), start=1):
            view[r, :, j] = 0.0 if bias is None else bias[j].to(out.dtype)
        return out

    return hook


@torch.no_grad()
def ablation_losses(forward: Callable[[torch.Tensor], torch.Tensor], conv: nn.Module, inputs: torch.Tensor,
                    y: torch.Tensor, max_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE_base [n], CE_without_j [C, n]) per sample, for every output channel j of `conv`.

    `forward(inputs) -> logits` must pass through `conv` exactly once; rows per forward <= max_rows
    (at least one replica pair)."""
    n = inputs.shape[0]
    channels = conv.weight.shape[0]
    base = nnf.cross_entropy(forward(inputs), y, reduction="none")
    per_forward = max(1, max_rows // max(n, 1) - 1)
    ablated = torch.empty(channels, n, device=base.device)
    for start in range(0, channels, per_forward):
        group = torch.arange(start, min(start + per_forward, channels))
        handle = conv.register_forward_hook(_ablation_hook(conv, group, n))
        try:
            rep = inputs.repeat(len(group) + 1, *([1] * (inputs.dim() - 1)))
            logits = forward(rep)
        finally:
            handle.remove()
        ce = nnf.cross_entropy(logits, y.repeat(len(group) + 1), reduction="none").view(len(group) + 1, n)
        ablated[start:start + len(group)] = ce[1:]
    return base.float(), ablated.float()


def class_attention(w: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A [K, C]: softmax over channels of w [n, C] per sample, averaged per class (empty class: 0 row)."""
    soft = torch.softmax(w.double(), dim=1)
    att = torch.zeros(num_classes, w.shape[1], dtype=torch.float64, device=w.device)
    att.index_add_(0, y, soft)
    counts = torch.bincount(y, minlength=num_classes).clamp(min=1).to(att.dtype)
    return (att / counts[:, None]).float()


def threshold_attention(att: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keep A[k, c] where C_F * A[k, c] >= threshold (entries >= threshold / C_F), else 0."""
    return torch.where(att * att.shape[1] >= threshold, att, torch.zeros_like(att))


def channel_weights(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(zscore(scores) / temperature), population std as np.std (the authors' / 5 = temperature)."""
    s = scores.double()
    std = s.std(unbiased=False)
    z = (s - s.mean()) / std if float(std) > 0 else torch.zeros_like(s)
    return torch.softmax(z / temperature, dim=0).float()


# -- sample selection --------------------------------------------------------------------------------------
def per_class_positions(labels: torch.Tensor, num_classes: int, per_class: int, gen: torch.Generator) -> torch.Tensor:
    """Positions (into the training split) of up to `per_class` random samples of every class."""
    order = torch.randperm(labels.numel(), generator=gen)
    picked = []
    for c in range(num_classes):
        picked.append(order[labels[order] == c][:per_class])
    return torch.cat(picked)


def load_training_samples(train, positions: torch.Tensor, gen_device: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised, training-augmented images of the split positions (the authors drew them through the
    training DataLoader, i.e. with its transform) without touching the training batch stream."""
    return next(training_batches(train, [positions], gen_device))


def training_batches(train, chunks: Sequence[torch.Tensor], gen_device: torch.Generator
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of the given split positions, each normalised and augmented like training batches:
    a device gather for in-memory data, a DataLoader with the run's workers for 224-px files."""
    images = train.images
    if hasattr(images, "gather"):
        for pos in chunks:
            x, y = images.gather(train.indices[pos])
            yield normalise(augment_batch(x, train.augment_kind, train.out_size, gen_device)), y
        return
    loader = torch.utils.data.DataLoader(images, batch_sampler=[train.indices[p].tolist() for p in chunks],
                                         num_workers=train.num_workers, pin_memory=train.device.type == "cuda")
    for x, y in loader:
        x, y = x.to(train.device, non_blocking=True), y.to(train.device, non_blocking=True)
        yield normalise(augment_batch(x, train.augment_kind, train.out_size, gen_device)), y


def in_chunks(fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
              y: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a per-sample ablation to chunks of samples and concatenate (base [n], ablated [C, n])."""
    bases, abls = [], []
    for s in range(0, x.shape[0], chunk):
        b, a = fn(x[s:s + chunk], y[s:s + chunk])
        bases.append(b)
        abls.append(a)
    return torch.cat(bases), torch.cat(abls, dim=1)


def extractor_ablation(net: nn.Module, conv_name: str, x: torch.Tensor, y: torch.Tensor, max_rows: int
                       ) -> torch.Tensor:
    """w [n, C_F] = CE_base - CE_without_j for the conv that produces F's channels, net in eval mode."""
    conv = net.get_submodule(conv_name)
    chunk = max(1, max_rows // 2)
    with eval_mode(net):
        base, abl = in_chunks(lambda xb, yb: ablation_losses(net, conv, xb, yb, max_rows), x, y, chunk)
    return (base[None, :] - abl).T.contiguous()


def classifier_layer_deltas(net: nn.Module, layer_names: Sequence[str], batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                            max_rows: int) -> list[torch.Tensor]:
    """Per hook layer inside C: Delta_j = mean over batches of (CE_without_j - CE_base), CE a batch mean
    (the authors' calculate_weighting_feature_maps_classifier). F runs once per batch."""
    out = []
    with eval_mode(net), torch.no_grad():
        feats = [(net.F(x), y) for x, y in batches]
        for name in layer_names:
            conv = net.get_submodule(name)
            if not name.startswith("C."):
                raise DfgError(f"hook layer {name} must be inside C (backbone info hook_layers)")
            deltas = []
            for f, y in feats:
                base, abl = ablation_losses(net.C, conv, f, y, max_rows)
                deltas.append(abl.mean(dim=1) - base.mean())
            out.append(torch.stack(deltas).mean(0))
    return out


class eval_mode:
    """Context manager: every module in eval mode, original flags restored afterwards."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.modes: dict[nn.Module, bool] = {}

    def __enter__(self) -> nn.Module:
        self.modes = {m: m.training for m in self.net.modules()}
        self.net.eval()
        return self.net

    def __exit__(self, *exc) -> None:
        for m, mode in self.modes.items():
            m.training = mode
