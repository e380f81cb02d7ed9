"""DELTA (Li et al., ICLR 2019; method.md §3): FINE-TUNING plus the behaviour regularisers Omega_E,
Omega_C, Omega_fc with channel weights from filter ablation on the source model (method.md §2).

Also home of what DELTA and DFG share before training starts (`analyse_source`): the optional linear
warm-up of a new head (ResNet: DELTA's train_fc, 10 epochs, SGD 0.01 m 0.9 wd 1e-4, exponential decay
to x0.1 after 6 epochs), the initial extractor ablation (DFG's attention and Omega_E's weights), and
Omega_C's weights, each from seeded random training samples drawn outside the training batch stream.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as nnf

from dfg.methods import METHODS
from dfg.methods.attention import (
    channel_weights,
    classifier_layer_deltas,
    eval_mode,
    extractor_ablation,
    load_training_samples,
    per_class_positions,
    training_batches,
)
from dfg.methods.base import Logs, Method, RunContext
from dfg.methods.regularizers import BehaviourRegularizer
from dfg.runtime import derive_seed


def per_backbone(hp: dict, key: str, backbone: str) -> Any:
    """hp[key][backbone] for maps keyed by backbone name; a clear error when the backbone is missing."""
    table = hp[key]
    if backbone not in table:
        from dfg import DfgError

        raise DfgError(f"methods.*.{key} has no entry for backbone {backbone!r}; add one in params.yaml")
    return table[backbone]


def seeded(ctx: RunContext, *parts: object) -> tuple[torch.Generator, torch.Generator]:
    """(CPU generator, device generator) for a named side stream of the run."""
    cpu = torch.Generator()
    cpu.manual_seed(derive_seed(ctx.seed, ctx.method, *parts))
    dev = torch.Generator(device=ctx.device)
    dev.manual_seed(derive_seed(ctx.seed, ctx.method, *parts, "device"))
    return cpu, dev


def random_batches(ctx: RunContext, n_batches: int, batch_size: int, *stream: object
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n_batches` uniformly drawn, training-augmented batches (the authors' shuffled loader)."""
    train = ctx.data.train
    cpu, dev = seeded(ctx, *stream)
    perm = torch.randperm(len(train), generator=cpu)
    chunks = [perm[(b * batch_size) % len(train):][:batch_size] for b in range(n_batches)]
    return list(training_batches(train, chunks, dev))


def warm_up_head(ctx: RunContext, net: torch.nn.Module, hp: dict) -> None:
    """Train only the last linear layer of `net` on the frozen backbone (eval mode: a linear probe),
    `fc_warmup_epochs` epochs of shuffled training batches (DELTA's train_fc)."""
    epochs = int(per_backbone(hp, "fc_warmup_epochs", ctx.net.backbone))
    if epochs <= 0:
        return
    fc = net.get_submodule(net.info.last_fc)
    fc.requires_grad_(True)  # `net` is a copy of the frozen source model
    opt = torch.optim.SGD(fc.parameters(), lr=hp["fc_warmup_lr"], momentum=hp["fc_warmup_momentum"],
                          weight_decay=hp["fc_warmup_weight_decay"])
    gamma = math.exp(math.log(hp["fc_warmup_decay_factor"]) / hp["fc_warmup_decay_epochs"])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    train = ctx.data.train
    bs = int(ctx.params["train"]["batch_size"])
    with eval_mode(net):
        for epoch in range(epochs):
            cpu, dev = seeded(ctx, "fc-warmup", epoch)
            perm = torch.randperm(len(train), generator=cpu)
            chunks = [perm[s:s + bs] for s in range(0, len(train) - bs + 1, bs)]
            for x, y in training_batches(train, chunks, dev):
                with torch.no_grad(), ctx.autocast():
                    head_in = head_input(net, fc, x)
                loss = nnf.cross_entropy(fc(head_in.float()), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()


class _HeadReached(Exception):
    pass


def head_input(net: torch.nn.Module, fc: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the last linear layer for images x (the forward stops there)."""
    box: list[torch.Tensor] = []

    def pre_hook(module, inputs):
        box.append(inputs[0])
        raise _HeadReached

    handle = fc.register_forward_pre_hook(pre_hook)
    try:
        net(x)
    except _HeadReached:
        pass
    finally:
        handle.remove()
    return box[0]


@dataclass
class SourceAnalysis:
    """What the source model says before training: per-sample extractor ablation w [n, C_F] with labels,
    Omega_E's and Omega_C's channel weights."""

    w: torch.Tensor
    labels: torch.Tensor
    extractor_weights: torch.Tensor
    classifier_weights: list[torch.Tensor]
    analysis_net: torch.nn.Module


def extractor_scores(ctx: RunContext, net: torch.nn.Module, hp: dict, draw: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(w [n, C_F], labels) on `attention_samples_per_class` random samples per class (draw k = the
    k-th selection of the run, so refreshes see fresh samples as the authors' shuffled loader did)."""
    cpu, dev = seeded(ctx, "attention-samples", draw)
    train = ctx.data.train
    pos = per_class_positions(train.labels, ctx.data.num_classes, hp["attention_samples_per_class"], cpu)
    x, y = load_training_samples(train, pos, dev)
    with ctx.autocast():
        w = extractor_ablation(net, net.info.attention_conv, x, y, per_backbone(hp, "ablation_max_rows", net.backbone))
    return w.float(), y


def analyse_source(ctx: RunContext, hp: dict) -> SourceAnalysis:
    """Channel weights from the source model (its new head warmed up first where configured)."""
    net = ctx.source_net
    if int(per_backbone(hp, "fc_warmup_epochs", ctx.net.backbone)) > 0:
        net = copy.deepcopy(ctx.source_net)
        warm_up_head(ctx, net, hp)
        if hp["fc_warmup_keep"]:
            ctx.net.get_submodule(ctx.net.info.last_fc).load_state_dict(
                net.get_submodule(net.info.last_fc).state_dict())
    w, y = extractor_scores(ctx, net, hp, 0)
    bs = int(ctx.params["train"]["batch_size"])
    batches = random_batches(ctx, hp["omega_c_batches"], bs, "omega-c")
    with ctx.autocast():
        deltas = classifier_layer_deltas(net, net.info.hook_layers, batches,
                                         per_backbone(hp, "ablation_max_rows", net.backbone))
    t = hp["weight_temperature"]
    return SourceAnalysis(w=w, labels=y, extractor_weights=channel_weights(w.mean(0), t),
                          classifier_weights=[channel_weights(d.float(), t) for d in deltas], analysis_net=net)


def make_regularizer(ctx: RunContext, analysis: SourceAnalysis) -> BehaviourRegularizer:
    info = ctx.net.info
    return BehaviourRegularizer(ctx.net, ctx.source_net, info.omega_c_taps, info.last_fc,
                                analysis.extractor_weights.to(ctx.device),
                                [w.to(ctx.device) for w in analysis.classifier_weights])


@METHODS.register("delta")
class Delta(Method):
    """Per step: CE + alpha_E Omega_E + alpha_C Omega_C + beta_C Omega_fc on one batch, all of F and C."""

    needs_source: ClassVar[bool] = True
    label: ClassVar[str] = "DELTA"

    def setup(self) -> None:
        """The regularised fine-tuning set-up DFG shares: channel analysis of the source model, the
        behaviour regulariser, the F/C optimiser and its schedule."""
        ctx = self.ctx
        self.require_source()
        ctx.net.train()
        self.analysis = analyse_source(ctx, ctx.hp)
        self.reg = make_regularizer(ctx, self.analysis)
        self.optimizer = ctx.make_optimizer(ctx.net.parameters())
        self.scheduler = ctx.make_scheduler(self.optimizer)

    # -- the step, in the parts dfg.capture records ------------------------------------------------------
    def capture_key(self, step: int) -> str:
        return "delta"

    def step_inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ctx.data.train.next()

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        ctx, hp = self.ctx, self.ctx.hp
        x, y = inputs
        with ctx.autocast():
            src_feats, src_hooks = self.reg.source_maps(x)
            feats = ctx.net.F(x)
            logits, hooks = self.reg.classify(feats)
        ce = nnf.cross_entropy(logits.float(), y)
        oe = self.reg.omega_e(feats.float(), src_feats.float())
        oc = self.reg.omega_c([h.float() for h in hooks], [h.float() for h in src_hooks])
        ofc = self.reg.omega_fc()
        loss = ce + hp["alpha_e"] * oe + hp["alpha_c"] * oc + hp["beta_c"] * ofc
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), "loss_ce": ce.detach(), "omega_e": oe.detach(), "omega_c": oc.detach(),
                "omega_fc": ofc.detach()}

    def step_after(self, step: int) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

