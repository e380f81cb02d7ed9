"""DFG (Suh et al., Pattern Recognition 2022; method.md §2): discriminative feature generation.

One step, exactly the authors' algorithm (train.py train_gan) on a queue of `critic_iters` real batches:
1. critic: one WGAN-GP update per queued batch, real = F_t(x_i), fake = G(z, y) * A[y]; F_t frozen;
2. G adversarial: -E[D(G(z, y))];
3. G label-preserving: CE(C_t([G(z, y); F_t(x_0)]), [y; y_0]), only G steps;
4. F_t, C_t: [CE + a_E Omega_E] + [CE + a_C Omega_C + b_C Omega_fc] on x_0, one backward, both step;
5. every `classifier_every` steps (not step 0), C_t only: 1/3 [CE_real + a_C Omega_C + b_C Omega_fc]
   + 1/3 CE(C_t(G(z, y')), y') + 1/3 CE(C_t([G(z, y'); F_t(x_0)]), [y'; y_0]);
6. attention refresh every `refresh_every` steps when the last extractor loss < `refresh_max_loss`.
The queue then drops x_0 and appends a fresh batch.

Overhead removed, same mathematics (each is exact):
- backward(inputs=...) instead of requires_grad copies/toggles: G's updates compute no D/C weight
  gradients, the critic's none for G/F;
- F_t(x_0) is computed once per step with its graph: the critic (update 0) and step 3 use it detached
  (F_t does not change before step 4, which uses the graph); F_t of the other queued batches in one
  no-grad forward when F has no batch-coupled layer (batch norm);
- the source maps F_s(x_0) and the source hook outputs are computed once (step 4) and reused in step 5;
  the source forward stops after its last hook layer;
- when C_t is row-wise (no batch norm, no dropout), step 3 forwards only the generated half (the real
  half of the merged batch carries no gradient to G; the loss keeps the 1/(2B) scale) and step 5 does
  ONE forward of [F_t(x_0); G(z, y')] whose row blocks give the real, fake and merged terms;
- with the faithful slope-1 activation the critic is affine: WGAN terms on mean features and the
  penalty from one probe (gan.py; `gp_shortcut: false` forces the double-backward path).
Kept faithful: G stays in train mode throughout (its batch-norm statistics move on every G forward,
the critic's included, as in the authors' loop); F_t and C_t stay in train mode (VGG dropout active).
Deliberate difference: the attention refresh ablates F_t/C_t in eval mode (the authors' refresh ran
them in train mode, which moves ResNet's BN statistics 257 times and applies VGG's dropout).
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any, ClassVar

import torch
import torch.nn.functional as nnf
from torch import nn

from dfg.methods import METHODS
from dfg.methods.attention import class_attention, eval_mode, load_training_samples, threshold_attention
from dfg.methods.base import Logs
from dfg.methods.delta import Delta, extractor_scores, per_backbone, seeded
from dfg.methods.gan import FeatureCritic, FeatureGenerator, critic_loss, critic_mean, sample_noise
from dfg.methods.losses import one_hot

_BATCH_COUPLED = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def row_wise(module: nn.Module) -> bool:
    """True when a module's output rows depend only on their own input rows in train mode."""
    return not any(isinstance(m, _BATCH_COUPLED) for m in module.modules())


def build_gan(ctx, hp: dict, conditional_critic: bool = False) -> tuple[FeatureGenerator, FeatureCritic]:
    """G and D for ctx.net's backbone from the method's hyper-parameters (gan.py)."""
    bb, info = ctx.net.backbone, ctx.net.info
    g = FeatureGenerator(
        noise_dim=int(per_backbone(hp, "noise_dim", bb)), num_classes=ctx.data.num_classes,
        base_channels=int(per_backbone(hp, "generator_channels", bb)), seed_side=hp["generator_seed_side"],
        layers=per_backbone(hp, "generator_layers", bb), feature_shape=info.feature_shape,
        slope=hp["activation_slope"]).to(ctx.device)
    d = FeatureCritic(info.feature_shape, hp["critic_channels"], hp["critic_kernel"], hp["activation_slope"],
                      num_classes=ctx.data.num_classes if conditional_critic else 0).to(ctx.device)
    g.train()
    d.train()
    return g, d


def gan_optimizer(module: nn.Module, hp: dict, which: str, capturable: bool = False) -> torch.optim.Optimizer:
    """Adam for G or D (`capturable` when the step is recorded as a CUDA graph)."""
    return torch.optim.Adam(module.parameters(), lr=hp[f"lr_{which}"], betas=tuple(hp["gan_betas"]),
                            capturable=capturable)


@METHODS.register("dfg")
class DFG(Delta):
    """DELTA's regularised F/C (its set-up and Ω terms) plus the attention-masked feature GAN."""

    needs_source: ClassVar[bool] = True
    label: ClassVar[str] = "DFG"

    # -- set-up ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()  # source analysis, regulariser, F/C optimiser and schedule (delta.py)
        ctx, hp = self.ctx, self.ctx.hp
        self.G, self.D = build_gan(ctx, hp)
        graph = ctx.capture == "graph"
        self.opt_g = gan_optimizer(self.G, hp, "g", graph)
        self.opt_d = gan_optimizer(self.D, hp, "d", graph)
        k = ctx.data.num_classes
        self.classes = torch.arange(k, device=ctx.device)
        raw = class_attention(self.analysis.w, self.analysis.labels, k)
        self.attention = threshold_attention(raw, hp["attention_threshold_initial"]).to(ctx.device)
        self.attention_steps: list[int] = [0]
        self.attention_history: list[torch.Tensor] = [self.attention.cpu().clone()]
        self.refreshes = 0
        self.last_e_loss = float("inf")
        self.queue: deque | None = None
        self.queue_states: deque = deque()
        self._resume_queue_state: dict | None = None
        self.f_row_wise = row_wise(ctx.net.F)
        self.c_row_wise = row_wise(ctx.net.C)
        self.shortcut = bool(hp["gp_shortcut"])

    # -- pieces ------------------------------------------------------------------------------------------
    def _draw(self) -> None:
        train = self.ctx.data.train
        self.queue_states.append(copy.deepcopy(train.state_dict()))
        self.queue.append(train.next())

    def _fill_queue(self) -> None:
        self.queue, self.queue_states = deque(), deque()
        if self._resume_queue_state is not None:
            self.ctx.data.train.load_state_dict(self._resume_queue_state)
            self._resume_queue_state = None
        for _ in range(self.ctx.hp["critic_iters"]):
            self._draw()

    def _noise(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, y = sample_noise(batch, self.G.noise_dim, self.classes, self.ctx.generator)
        onehot = one_hot(y, self.ctx.data.num_classes)
        return z, onehot, y

    def generate(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(G(z, y) * A[y], y) with y uniform over all classes; graph to G when grad is enabled."""
        z, onehot, y = self._noise(batch)
        with self.ctx.autocast():
            fake = self.G(z, onehot, onehot @ self.attention)
        return fake.float(), y

    # -- one step, in the parts dfg.capture records --------------------------------------------------------
    def capture_key(self, step: int) -> tuple[str, bool]:
        """Two bodies: with and without step 5 (the classifier update every `classifier_every` steps)."""
        return ("dfg", self.classifier_step(step))

    def classifier_step(self, step: int) -> bool:
        return step % self.ctx.hp["classifier_every"] == 0 and step != 0

    def step_inputs(self, step: int) -> tuple[torch.Tensor, ...]:
        """The queue's batches, flattened: (x_0, y_0, x_1, y_1, ...)."""
        if self.queue is None:
            self._fill_queue()
        return tuple(t for batch in self.queue for t in batch)

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        xs, (y0, *_) = list(inputs[0::2]), inputs[1::2]
        x0 = xs[0]
        f0, reals = self.queue_features(xs)
        logs = self.critic_updates(reals)
        logs["loss_g"] = self.generator_adversarial()
        self.generator_label_preserving(f0.detach(), y0)
        extractor_logs, src_hooks = self.extractor_classifier_update(x0, y0, f0)
        logs.update(extractor_logs)
        if self.classifier_step(step):
            logs.update(self.classifier_update(x0, y0, src_hooks))
        return logs

    def step_after(self, step: int) -> None:
        """Scheduler, attention refresh (reads the last extractor loss: a host sync at refresh steps only),
        then the queue drops x_0 and draws a fresh batch."""
        hp = self.ctx.hp
        if self.scheduler is not None:
            self.scheduler.step()
        if step % hp["refresh_every"] == 0 and step != 0 and float(self.last_e_loss) < hp["refresh_max_loss"]:
            self.refresh_attention(step)
        self.queue.popleft()
        self.queue_states.popleft()
        self._draw()

    def queue_features(self, xs: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(F_t(x_0) with its graph, [F_t(x_i) detached for every queued batch]) of `xs` (default: the
        queue's images); one no-grad forward for the batches behind x_0 when F is row-wise."""
        ctx, net = self.ctx, self.ctx.net
        xs = [b[0] for b in self.queue] if xs is None else xs
        with ctx.autocast():
            f0 = net.F(xs[0])
            with torch.no_grad():
                if self.f_row_wise and len(xs) > 1:
                    rest = list(net.F(torch.cat(xs[1:])).float().split([x.shape[0] for x in xs[1:]]))
                else:
                    rest = [net.F(x).float() for x in xs[1:]]
        return f0, [f0.detach().float(), *rest]

    def critic_updates(self, reals: list[torch.Tensor]) -> Logs:
        """Step 1: one WGAN-GP critic update per real feature batch (F_t frozen; G runs in train mode)."""
        hp = self.ctx.hp
        for real in reals:
            with torch.no_grad():
                fake, _ = self.generate(real.shape[0])
            d_loss, gp = critic_loss(self.D, real, fake, hp["gp_weight"], self.ctx.generator, self.shortcut)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward(inputs=list(self.D.parameters()))
            self.opt_d.step()
        return {"loss_d": d_loss.detach(), "gp": gp.detach()}

    def generator_adversarial(self) -> torch.Tensor:
        """Step 2: G minimises -E[D(G(z, y))]."""
        fake, _ = self.generate(self.ctx.data.train.batch_size)
        g_loss = -critic_mean(self.D, fake, self.shortcut)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(self.G.parameters()))
        self.opt_g.step()
        return g_loss.detach()

    def generator_label_preserving(self, real: torch.Tensor, y_real: torch.Tensor) -> torch.Tensor:
        """Step 3: CE(C_t([G(z, y); F_t(x_0)]), [y; y_0]) through the current C_t; only G steps.
        With a row-wise C_t only the generated half is forwarded (same gradient, see module doc)."""
        net = self.ctx.net
        bsz = real.shape[0]
        fake, yf = self.generate(bsz)
        with self.ctx.autocast():
            if self.c_row_wise:
                loss = nnf.cross_entropy(net.C(fake).float(), yf, reduction="sum") / (bsz + fake.shape[0])
            else:
                logits = net.C(torch.cat([fake, real.to(fake.dtype)]))
                loss = nnf.cross_entropy(logits.float(), torch.cat([yf, y_real]))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.G.parameters()))
        self.opt_g.step()
        return loss.detach()

    def extractor_classifier_update(self, x0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor
                                    ) -> tuple[Logs, list[torch.Tensor]]:
        """Step 4: [CE + a_E Omega_E] + [CE + a_C Omega_C + b_C Omega_fc], one backward, F_t and C_t
        step. Returns the logs and the source hook outputs (reused by step 5)."""
        hp = self.ctx.hp
        with self.ctx.autocast():
            src_feats, src_hooks = self.reg.source_maps(x0)
            logits, hooks = self.reg.classify(f0)
        ce = nnf.cross_entropy(logits.float(), y0)
        oe = self.reg.omega_e(f0.float(), src_feats.float())
        oc = self.reg.omega_c([h.float() for h in hooks], [h.float() for h in src_hooks])
        ofc = self.reg.omega_fc()
        e_loss = ce + hp["alpha_e"] * oe
        c_loss_real = ce + hp["alpha_c"] * oc + hp["beta_c"] * ofc
        self.optimizer.zero_grad(set_to_none=True)
        (e_loss + c_loss_real).backward()
        self.optimizer.step()
        self.last_e_loss = e_loss.detach()  # a tensor: read (a host sync) only at refresh steps
        logs = {"loss_e": self.last_e_loss, "loss_c_real": c_loss_real.detach(), "loss_ce": ce.detach(),
                "omega_e": oe.detach(), "omega_c": oc.detach(), "omega_fc": ofc.detach()}
        return logs, src_hooks

    def classifier_update(self, x0: torch.Tensor, y0: torch.Tensor, src_hooks: list[torch.Tensor]) -> Logs:
        """Step 5: C_t only, 1/3 [CE_real + a_C Omega_C + b_C Omega_fc] + 1/3 CE_fake + 1/3 CE_merged.
        Logs the loss (loss_c) and its two cross-entropies apart: on the generated features (clf_ce_generated)
        and on the real ones (clf_ce_real), which show how much the generated features still teach C_t."""
        ctx, hp, net = self.ctx, self.ctx.hp, self.ctx.net
        bsz = x0.shape[0]
        with torch.no_grad():
            with ctx.autocast():
                real = net.F(x0).float()
            fake, yf = self.generate(bsz)
        with ctx.autocast():
            if self.c_row_wise:
                logits_all, hooks = self.reg.classify(torch.cat([real, fake]))
                logits_all = logits_all.float()
                logits_real, logits_fake = logits_all[:bsz], logits_all[bsz:]
                ce_merged = nnf.cross_entropy(logits_all, torch.cat([y0, yf]))
            else:
                logits_real, hooks = self.reg.classify(real)
                logits_fake = net.C(fake)
                ce_merged = nnf.cross_entropy(net.C(torch.cat([fake, real])).float(), torch.cat([yf, y0]))
        ce_real = nnf.cross_entropy(logits_real.float(), y0)
        ce_fake = nnf.cross_entropy(logits_fake.float(), yf)
        oc = self.reg.omega_c([h.float() for h in hooks], [h.float() for h in src_hooks])
        real_term = ce_real + hp["alpha_c"] * oc + hp["beta_c"] * self.reg.omega_fc()
        loss = (real_term + ce_fake + ce_merged) / 3.0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=list(net.C.parameters()))
        self.optimizer.step()
        return {"loss_c": loss.detach(), "clf_ce_generated": ce_fake.detach(), "clf_ce_real": ce_real.detach()}

    # -- attention -----------------------------------------------------------------------------------------
    def refresh_attention(self, step: int) -> None:
        """Recompute A with the current F_t, C_t on fresh per-class samples; plain replacement, or
        rho * A_old + (1 - rho) * A_new (the blend the authors computed and discarded) when
        `refresh_blend`; then the refresh threshold."""
        hp = self.ctx.hp
        self.refreshes += 1
        w, y = extractor_scores(self.ctx, self.ctx.net, hp, self.refreshes)
        new = class_attention(w, y, self.ctx.data.num_classes).to(self.ctx.device)
        if hp["refresh_blend"]:
            new = hp["refresh_rho"] * self.attention + (1 - hp["refresh_rho"]) * new
        # in place: a recorded step reads A from this tensor's memory
        self.attention.copy_(threshold_attention(new, hp["attention_threshold_refresh"]))
        self.attention_steps.append(step)
        self.attention_history.append(self.attention.cpu().clone())

    # -- resume ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # optimizer, scheduler
        state.update({
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "attention": self.attention.cpu(), "attention_steps": list(self.attention_steps),
            "attention_history": torch.stack(self.attention_history), "refreshes": self.refreshes,
            "last_e_loss": float(self.last_e_loss),
            # The queue is rebuilt on resume by re-drawing from the data stream's state before its
            # oldest batch (draws are pure functions of the stream counters): no image tensors saved.
            "queue_state": self.queue_states[0] if self.queue_states else None,
        })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.attention.copy_(state["attention"])
        self.attention_steps = [int(s) for s in state["attention_steps"]]
        self.attention_history = list(state["attention_history"].unbind(0))
        self.refreshes = int(state["refreshes"])
        self.last_e_loss = float(state["last_e_loss"])
        self.queue = None
        self._resume_queue_state = state["queue_state"]

    # -- figures -------------------------------------------------------------------------------------------
    def artefacts(self) -> dict[str, Any]:
        out = feature_artefacts(self.ctx, self.ctx.hp, lambda n, classes: self._generate_for(n, classes))
        out["attention"] = {"steps": torch.tensor(self.attention_steps, dtype=torch.int64),
                            "matrices": torch.stack(self.attention_history).float()}
        return out

    @torch.no_grad()
    def _generate_for(self, n: int, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = copy.deepcopy(self.G)  # train-mode batch statistics, as during training, on a copy
        z, y = sample_noise(n, g.noise_dim, classes, seeded(self.ctx, "artefacts-noise")[1])
        onehot = one_hot(y, self.ctx.data.num_classes)
        return g(z, onehot, onehot @ self.attention).float(), y


def feature_artefacts(ctx, hp: dict, generate) -> dict[str, Any]:
    """Real (F_t of training images) and generated minority-class features, flattened, at most
    `artefact_samples` each (docs/architecture.md, artefacts.pt)."""
    k = ctx.data.num_classes
    minority = list(ctx.data.minority_classes) or list(range(k))
    n_max = int(hp["artefact_samples"])
    cpu, dev = seeded(ctx, "artefacts")
    train = ctx.data.train
    per_class = max(1, n_max // len(minority))
    labels = train.labels
    keep = torch.isin(labels, torch.tensor(minority))
    pos_all = torch.nonzero(keep).flatten()
    pos_all = pos_all[torch.randperm(pos_all.numel(), generator=cpu)]
    chosen = torch.cat([pos_all[labels[pos_all] == c][:per_class] for c in minority])[:n_max]
    x, y = load_training_samples(train, chosen, dev)
    with torch.no_grad(), eval_mode(ctx.net), ctx.autocast():
        real = ctx.net.F(x).float().flatten(1)
    gen, gy = generate(min(n_max, max(2, real.shape[0])), torch.tensor(minority, device=ctx.device))
    return {"features": {"real": real.cpu(), "real_labels": y.cpu(), "generated": gen.flatten(1).cpu(),
                         "generated_labels": gy.cpu()},
            "minority_classes": minority, "classes": list(ctx.data.classes)}
