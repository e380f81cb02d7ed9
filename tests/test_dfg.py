"""DFG's step, piece by piece, on a tiny random-data LeNet-5 context: each update touches exactly the
networks it should; attention refresh; exact resume (the queue rebuilt from the data stream); artefacts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from loop_fixtures import random_lenet_context

BATCH = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def make_method(name: str = "dfg", seed: int = 0, **hp_over):
    cls, ctx = random_lenet_context(name, seed, batch=BATCH, **hp_over)
    method = cls(ctx)
    method.setup()
    return method


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: torch.nn.Module, params_only: bool = True) -> bool:
    names = {n for n, _ in module.named_parameters()} if params_only else set(before)
    now = module.state_dict()
    return any(not torch.equal(before[n], now[n]) for n in names)


@pytest.fixture()
def m():
    method = make_method()
    method._fill_queue()
    return method


def nets(m):
    return {"F": m.ctx.net.F, "C": m.ctx.net.C, "G": m.G, "D": m.D}


def test_critic_update_leaves_f_c_and_g_unchanged(m):
    before = {k: snapshot(v) for k, v in nets(m).items()}
    _, reals = m.queue_features()
    m.critic_updates(reals)
    assert changed(before["D"], m.D)
    for k in ("F", "C"):
        assert not changed(before[k], nets(m)[k], params_only=False)
    assert not changed(before["G"], m.G)  # G's weights; its BN statistics move (train mode, as the authors')
    assert changed(before["G"], m.G, params_only=False)


def test_label_preserving_update_changes_only_g(m):
    before = {k: snapshot(v) for k, v in nets(m).items()}
    _, y0 = m.queue[0]
    f0, _ = m.queue_features()
    m.generator_label_preserving(f0.detach(), y0)
    assert changed(before["G"], m.G)
    for k in ("F", "C", "D"):
        assert not changed(before[k], nets(m)[k], params_only=False)


def test_adversarial_update_changes_only_g_and_the_regularised_update_only_f_and_c(m):
    before = {k: snapshot(v) for k, v in nets(m).items()}
    m.generator_adversarial()
    assert changed(before["G"], m.G)
    assert not any(changed(before[k], nets(m)[k]) for k in ("F", "C", "D"))
    before = {k: snapshot(v) for k, v in nets(m).items()}
    x0, y0 = m.queue[0]
    f0, _ = m.queue_features()
    logs, src_hooks = m.extractor_classifier_update(x0, y0, f0)
    logs = {k: float(v) for k, v in logs.items()}  # detached 0-dim tensors
    assert changed(before["F"], m.ctx.net.F) and changed(before["C"], m.ctx.net.C)
    assert not changed(before["G"], m.G, params_only=False) and not changed(before["D"], m.D)
    assert logs["loss_e"] == pytest.approx(logs["loss_ce"] + 0.01 * logs["omega_e"], rel=1e-6)
    before = {k: snapshot(v) for k, v in nets(m).items()}
    m.classifier_update(x0, y0, src_hooks)
    assert changed(before["C"], m.ctx.net.C)
    assert not any(changed(before[k], nets(m)[k]) for k in ("F", "G", "D"))


def test_row_wise_shortcuts_give_the_authors_losses(m):
    """Step 3's generated-half forward and step 5's single merged forward against the plain formulas."""
    net, bsz = m.ctx.net, BATCH
    x0, y0 = m.queue[0]
    real = net.F(x0).detach()
    state = m.ctx.generator.get_state()
    m.generator_label_preserving(real, y0)  # consumes noise; recompute its loss by hand from the same draw
    m.ctx.generator.set_state(state)
    g_before = copy.deepcopy(m.G)
    with torch.no_grad():
        fake, yf = m.generate(bsz)
    m.G.load_state_dict(g_before.state_dict())
    full = torch.nn.functional.cross_entropy(net.C(torch.cat([fake, real])), torch.cat([yf, y0]))
    fake_half = torch.nn.functional.cross_entropy(net.C(fake), yf, reduction="sum") / (2 * bsz)
    real_half = torch.nn.functional.cross_entropy(net.C(real), y0, reduction="sum") / (2 * bsz)
    assert full.item() == pytest.approx((fake_half + real_half).item(), rel=1e-5)


def test_every_step_runs_and_the_attention_refreshes_with_the_refresh_threshold():
    m = make_method(refresh_every=3, refresh_max_loss=1e9, classifier_every=2)
    logs = [m.train_step(s) for s in range(7)]
    assert "loss_c" not in logs[0] and "loss_c" in logs[2] and "loss_c" not in logs[3]
    assert m.attention_steps == [0, 3, 6]
    att = m.attention
    kept = att[att > 0]
    assert bool((kept * att.shape[1] >= 0.95).all())
    for s in range(7):
        assert all(np.isfinite(float(v)) for v in logs[s].values())
    art = m.artefacts()
    feats = art["features"]
    assert feats["real"].shape[1] == 6 * 14 * 14 and feats["generated"].shape[1] == 6 * 14 * 14
    assert feats["real"].shape[0] <= 200 and set(feats["real_labels"].tolist()) <= set(range(2, 10))
    assert set(feats["generated_labels"].tolist()) <= set(range(2, 10))
    assert art["attention"]["matrices"].shape == (3, 10, 6) and art["attention"]["steps"].tolist() == [0, 3, 6]


def test_no_refresh_when_the_extractor_loss_is_high():
    m = make_method(refresh_every=2, refresh_max_loss=0.0)
    for s in range(5):
        m.train_step(s)
    assert m.attention_steps == [0]


def _run_state(m) -> dict:
    ctx = m.ctx
    return {"net": copy.deepcopy(ctx.net.state_dict()), "method": copy.deepcopy(m.state_dict()),
            "data": copy.deepcopy(ctx.data.train.state_dict()), "gen": ctx.generator.get_state(),
            "torch": torch.get_rng_state()}


def test_resume_continues_exactly():
    a = make_method(refresh_every=4, refresh_max_loss=1e9)
    for s in range(5):
        a.train_step(s)
    saved = _run_state(a)
    for s in range(5, 9):
        a.train_step(s)
    b = make_method(refresh_every=4, refresh_max_loss=1e9)
    b.ctx.net.load_state_dict(saved["net"])
    b.load_state_dict(saved["method"])  # the loop's order: net, method, data stream, RNG
    b.ctx.data.train.load_state_dict(saved["data"])
    b.ctx.generator.set_state(saved["gen"])
    torch.set_rng_state(saved["torch"])
    for s in range(5, 9):
        b.train_step(s)
    for x, y in zip(a.ctx.net.state_dict().values(), b.ctx.net.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    for x, y in zip(a.G.state_dict().values(), b.G.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.attention, b.attention) and a.attention_steps == b.attention_steps == [0, 4, 8]


@pytest.mark.parametrize("keep", [False, True])
def test_head_warm_up_trains_only_the_last_layer_and_is_kept_only_when_asked(keep):
    epochs = {"lenet5": 1, "vgg16": 0, "resnet50": 10}
    m = make_method("delta", fc_warmup_epochs=epochs, fc_warmup_keep=keep)
    net, src, warmed = m.ctx.net, m.ctx.source_net, m.analysis.analysis_net
    assert warmed is not src
    for name, p in warmed.named_parameters():
        assert torch.equal(p, src.get_parameter(name)) != name.startswith("C.fc3")  # only the head moved
    assert torch.equal(net.C.fc3.weight, warmed.C.fc3.weight) == keep
    assert torch.equal(net.C.fc2.weight, src.C.fc2.weight)
