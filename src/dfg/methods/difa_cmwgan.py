"""DIFA + CMWGAN, a reconstruction (method.md §3 [choice]; labelled so in every result).

DIFA (Volpi et al., CVPR 2018) trains a conditional feature generator S(z, y) adversarially in feature
space, then makes an encoder match S's features with a second discriminator. "CMWGAN" is not
identifiable in public sources; we read it as a Conditional WGAN-GP in feature space. The reconstruction:

Phase 1 (the first `generator_fraction` of the steps; F_t and C_t untouched): S(z, y) -- DFG's
generator architecture, no attention mask -- is trained with WGAN-GP against a class-conditional
projection critic D1(f, y) on the target images' features under the source extractor F_s (DIFA's step 1
learns the features of the frozen pre-trained encoder); `critic_iters` critic updates per S update, each
on a fresh training batch whose labels S is given too.

Phase 2 (the remaining steps; S frozen, eval mode): per step one batch (x, y) and
- D2(f, y) (a second conditional critic, WGAN-GP) learns to tell S(z, y) ("real") from F_t(x);
- F_t, C_t: CE(C_t([F_t(x); S(z', y')]), [y; y']) + adv_weight * -E[D2(F_t(x), y)], with y' uniform
  over the minority classes (all classes when the split has none): DIFA's step 2 adversarial matching
  of F_t to S, and C_t trained on real features plus S's features for the minority classes.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
import torch.nn.functional as nnf

from dfg.methods import METHODS
from dfg.methods.base import Logs, Method
from dfg.methods.delta import seeded
from dfg.methods.dfg import build_gan, feature_artefacts, gan_optimizer
from dfg.methods.gan import critic_loss, critic_mean, sample_noise
from dfg.methods.losses import one_hot


@METHODS.register("difa_cmwgan")
class DifaCmwgan(Method):
    needs_source: ClassVar[bool] = True
    label: ClassVar[str] = "DIFA + CMWGAN (reconstruction)"

    def setup(self) -> None:
        ctx, hp = self.ctx, self.ctx.hp
        self.require_source()
        ctx.net.train()
        self.S, self.D1 = build_gan(ctx, hp, conditional_critic=True)
        _, self.D2 = build_gan(ctx, hp, conditional_critic=True)
        graph = ctx.capture == "graph"
        self.opt_s = gan_optimizer(self.S, hp, "g", graph)
        self.opt_d1 = gan_optimizer(self.D1, hp, "d", graph)
        self.opt_d2 = gan_optimizer(self.D2, hp, "d", graph)
        self.optimizer = ctx.make_optimizer(ctx.net.parameters())
        self.scheduler = ctx.make_scheduler(self.optimizer)
        self.phase1_steps = self.untrained_steps(hp, ctx.total_steps)
        k = ctx.data.num_classes
        minority = list(ctx.data.minority_classes) or list(range(k))
        self.minority = torch.tensor(minority, device=ctx.device)
        self.shortcut = bool(hp["gp_shortcut"])
        # A recorded step needs the penalty's probes at a fixed shape (all classes, not those present):
        # the same value up to rounding, so only captured runs use it and eager runs keep their numbers.
        self.fixed_shape = ctx.capture != "off"

    def _s(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = one_hot(y, self.ctx.data.num_classes)
        with self.ctx.autocast():
            return self.S(z, onehot).float()

    def _noise(self, n: int) -> torch.Tensor:
        return torch.rand(n, self.S.noise_dim, device=self.ctx.device, generator=self.ctx.generator) * 2 - 1

    @classmethod
    def untrained_steps(cls, hp: dict, total_steps: int) -> int:
        return round(hp["generator_fraction"] * total_steps)  # phase 1: F_t and C_t untouched

    def phases(self) -> dict[str, int]:
        return {"generator": 0, "matching": self.phase1_steps}

    # -- the step, in the parts dfg.capture records: one body per phase --------------------------------------
    def capture_key(self, step: int) -> str:
        return "generator" if step < self.phase1_steps else "matching"

    def step_inputs(self, step: int) -> tuple[torch.Tensor, ...]:
        """Phase 1: `critic_iters` batches (x_1, y_1, x_2, y_2, ...); phase 2: one batch (x, y)."""
        if step < self.phase1_steps:
            return tuple(t for _ in range(self.ctx.hp["critic_iters"]) for t in self.ctx.data.train.next())
        if self.S.training:  # S is frozen from phase 2 on (also after a resume)
            self.S.eval()
        return self.ctx.data.train.next()

    def step_body(self, step: int, inputs: tuple[torch.Tensor, ...]) -> Logs:
        if step < self.phase1_steps:
            return self._generator_step(list(zip(inputs[0::2], inputs[1::2], strict=True)))
        return self._matching_step(*inputs)

    def step_after(self, step: int) -> None:
        if step >= self.phase1_steps and self.scheduler is not None:
            self.scheduler.step()

    # -- phase 1: conditional WGAN-GP on source-extractor features of target images -----------------------
    def _generator_step(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Logs:
        ctx, hp = self.ctx, self.ctx.hp
        for x, y in batches:
            with torch.no_grad():
                with ctx.autocast():
                    real = ctx.source_net.F(x).float()
                fake = self._s(self._noise(y.shape[0]), y)
            d_loss, gp = critic_loss(self.D1, real, fake, hp["gp_weight"], ctx.generator, self.shortcut, y, y,
                                     self.fixed_shape)
            self.opt_d1.zero_grad(set_to_none=True)
            d_loss.backward(inputs=list(self.D1.parameters()))
            self.opt_d1.step()
        fake = self._s(self._noise(y.shape[0]), y)
        g_loss = -critic_mean(self.D1, fake, self.shortcut, y)
        self.opt_s.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(self.S.parameters()))
        self.opt_s.step()
        return {"loss_d": d_loss.detach(), "gp": gp.detach(), "loss_g": g_loss.detach()}

    # -- phase 2: F_t matched to S, C_t on real + generated minority features ---------------------------------
    def _matching_step(self, x: torch.Tensor, y: torch.Tensor) -> Logs:
        ctx, hp, net = self.ctx, self.ctx.hp, self.ctx.net
        bsz = y.shape[0]
        with ctx.autocast():
            feats = net.F(x)
        feats32 = feats.float()
        with torch.no_grad():
            s_real = self._s(self._noise(bsz), y)
        d_loss, gp = critic_loss(self.D2, s_real, feats32.detach(), hp["gp_weight"], ctx.generator, self.shortcut,
                                 y, y, self.fixed_shape)
        self.opt_d2.zero_grad(set_to_none=True)
        d_loss.backward(inputs=list(self.D2.parameters()))
        self.opt_d2.step()

        n_gen = max(1, round(hp["generated_ratio"] * bsz))
        y_gen = self.minority[torch.randint(0, self.minority.numel(), (n_gen,), device=ctx.device,
                                            generator=ctx.generator)]
        with torch.no_grad():
            gen = self._s(self._noise(n_gen), y_gen)
        with ctx.autocast():
            logits = net.C(torch.cat([feats, gen.to(feats.dtype)]))
        ce = nnf.cross_entropy(logits.float(), torch.cat([y, y_gen]))
        adv = -critic_mean(self.D2, feats32, self.shortcut, y)
        loss = ce + hp["adv_weight"] * adv
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=list(net.parameters()))
        self.optimizer.step()
        return {"loss_d2": d_loss.detach(), "gp2": gp.detach(), "loss_ce": ce.detach(), "loss_adv": adv.detach(),
                "loss": loss.detach()}

    # -- resume / figures -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # optimizer, scheduler
        state.update({"S": self.S.state_dict(), "D1": self.D1.state_dict(), "D2": self.D2.state_dict(),
                      "opt_s": self.opt_s.state_dict(), "opt_d1": self.opt_d1.state_dict(),
                      "opt_d2": self.opt_d2.state_dict()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("S", "D1", "D2"):
            getattr(self, name).load_state_dict(state[name])
        self.opt_s.load_state_dict(state["opt_s"])
        self.opt_d1.load_state_dict(state["opt_d1"])
        self.opt_d2.load_state_dict(state["opt_d2"])
        super().load_state_dict(state)

    def artefacts(self) -> dict[str, Any]:
        def generate(n: int, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            s = copy.deepcopy(self.S).eval()
            z, y = sample_noise(n, s.noise_dim, classes, seeded(self.ctx, "artefacts-noise")[1])
            with torch.no_grad():
                return s(z, one_hot(y, self.ctx.data.num_classes)).float(), y

        return feature_artefacts(self.ctx, self.ctx.hp, generate)
