"""The long-tail baselines of method.md §5 on the shared loop: switches at the configured step, the
class-balanced sampler, cRT's frozen body, SMOTE's segments, post-hoc adjustment, and learning on an
easy task (sklearn digits upscaled, LeNet-5, CPU)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from dfg.batches import DeviceImages, EvalImages, TaskData, TrainBatches
from dfg.loop import fit, make_context, predict
from dfg.methods import METHODS
from dfg.methods.losses import CosineLinear, class_balanced_weights, ldam_loss, log_prior
from dfg.methods.smote_feat import smote_oversample
from dfg.models import build_backbone
from dfg.train import run_training
from dfg.utils.io import save_torch
from loop_fixtures import digits_task, make_params

MODERN = ["cb_focal", "ldam_drw", "balanced_softmax", "logit_adjust_posthoc", "crt", "drs", "remix", "smote_feat"]
MINORITY = (0, 1)
N_MINORITY = 15
STEPS = 40  # training steps of the learning runs (crt and smote_feat: step_fraction 0.5 of it)


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict:
    """The digits task with an UNTRAINED LeNet-5 as its source (so every method has to learn), and the
    plain finetune run of seed 0 that crt, smote_feat and logit_adjust_posthoc start from."""
    tmp = tmp_path_factory.mktemp("modern")
    t = digits_task(tmp, minority=MINORITY, n_minority=N_MINORITY)
    torch.manual_seed(0)
    t["source"] = tmp / "source.pt"
    save_torch(t["source"], {"kind": "source", "backbone": "lenet5", "num_classes": 10,
                             "net": build_backbone("lenet5", 10).state_dict()})
    t["finetune"] = tmp / "finetune.pt"
    t["finetune_metrics"] = train(t, tmp / "ft", "finetune", out_model=t["finetune"])
    return t


def train(task: dict, out: Path, method: str, steps: int = STEPS, out_model: Path | None = None) -> dict:
    """One run through `dfg train`'s code path; evaluated once, at the end (eval_every = steps)."""
    return run_training(make_params(steps=steps, eval_every=steps), "digits-test", method, 0, split_file=task["split"],
                        prepared_dir=task["prepared"], source_file=task["source"],
                        init_run=task.get("finetune"), out_model=out_model or out / "m.pt", out_dir=out / "res",
                        device="cpu")


def make_ctx(task: dict, method: str, steps: int = 10, net: torch.nn.Module | None = None, **hp):
    """A RunContext on the digits task without files: the pieces dfg.train assembles, built directly."""
    params = make_params(steps=steps)
    params["methods"][method].update(hp)
    dev = torch.device("cpu")
    x, y = task["x"], task["y"]
    split = __import__("json").loads(Path(task["split"]).read_text())
    train_images, test_images = DeviceImages(x[:1300], y[:1300], dev), DeviceImages(x[1300:], y[1300:], dev)
    batches = TrainBatches(train_images, np.asarray(split["indices"]), 10, 32, "none", 32, seed=0, device=dev)
    data = TaskData(train=batches, test=EvalImages(test_images, np.arange(len(test_images)), dev), num_classes=10,
                    class_counts=torch.bincount(batches.labels, minlength=10), minority_classes=list(MINORITY),
                    classes=[str(i) for i in range(10)], dataset="digits-test", split=split)
    cls = METHODS.get(method)
    if net is None:
        torch.manual_seed(1)
        net = build_backbone("lenet5", 10)
    net = cls.adapt_net(net, params["methods"][method])
    ctx = make_context(task="digits-test", method=method, seed=0, params=params, hp=params["methods"][method],
                       device=dev, net=net, source_net=None, data=data, total_steps=steps,
                       optimizer=params["train"]["optimizer"]["lenet5"])
    return cls(ctx), ctx


def run_fit(method, ctx):
    return fit(method, ctx, eval_every=1000, checkpoint_every=1000, eval_batch_size=256)


# -- learning on the easy task ------------------------------------------------------------------------
@pytest.mark.parametrize("method", MODERN)
def test_method_beats_chance_on_digits(task, tmp_path, method):
    m = train(task, tmp_path, method)
    assert m["accuracy"] > 0.6, m["accuracy"]  # chance is 0.1
    assert m["balanced_accuracy"] > 0.6
    assert m["addition"] is True and m["method"] == method
    expected_steps = {"logit_adjust_posthoc": 0, "crt": STEPS // 2, "smote_feat": STEPS // 2}.get(method, STEPS)
    assert m["steps"] == expected_steps


def test_posthoc_raises_minority_accuracy_over_finetune(task, tmp_path):
    """Minority recall of classes with 15 images: post-hoc adjustment raises it over plain finetuning."""
    base = task["finetune_metrics"]
    post = train(task, tmp_path, "logit_adjust_posthoc")
    assert post["minority_accuracy"] > base["minority_accuracy"]


# -- deferred switches ---------------------------------------------------------------------------------
def test_drw_switches_at_the_configured_step(task):
    method, ctx = make_ctx(task, "ldam_drw", steps=100, drw_fraction=0.2)
    ctx.extras["method_steps"] = 100
    method.setup()
    assert method.drw_step == 80
    assert method.class_weights_at(79) is None
    assert torch.equal(method.class_weights_at(80), class_balanced_weights(ctx.data.class_counts, 0.9999))
    logits, y = torch.tensor([[3.0, -1.0] + [0.0] * 8, [0.5, 0.0, 2.0] + [0.0] * 7]), torch.tensor([0, 2])
    plain = ldam_loss(logits, y, method.margins, 30.0)
    weighted = ldam_loss(logits, y, method.margins, 30.0, method.drw_weights)
    assert float(method.loss(logits, y, 79)) == pytest.approx(float(plain))
    assert float(method.loss(logits, y, 80)) == pytest.approx(float(weighted))
    assert float(plain) != pytest.approx(float(weighted))


def test_drs_switches_sampling_exactly_at_the_configured_step(task):
    method, ctx = make_ctx(task, "drs", steps=10, fraction=0.2)
    calls: list[int] = []
    original = ctx.data.train.set_class_weights

    def record(w):
        calls.append(ctx.data.train.batches_drawn)  # batches drawn before the switch = the switch step
        original(w)

    ctx.data.train.set_class_weights = record
    run_fit(method, ctx)
    assert calls == [8]
    assert torch.equal(ctx.data.train.stream.class_weights, torch.ones(10, dtype=torch.float64))
    assert ctx.data.train.stream.uniform_batches == 8 and ctx.data.train.stream.weighted_batches == 2


# -- class-balanced sampling through the real batch source ---------------------------------------------
def test_class_balanced_sampler_passes_chi_square(task):
    _, ctx = make_ctx(task, "drs")
    src = ctx.data.train
    counts = ctx.data.class_counts
    assert counts[0] == N_MINORITY and counts[2] > 100

    def histogram() -> np.ndarray:
        ys = [src.next()[1] for _ in range(10_000 // src.batch_size + 1)]
        return np.bincount(torch.cat(ys)[:10_000].numpy(), minlength=10)

    natural = histogram()  # uniform over samples: far from uniform over classes
    assert chisquare(natural).pvalue < 1e-12
    src.set_class_weights(torch.ones(10))
    balanced = histogram()
    assert balanced.sum() == 10_000
    assert chisquare(balanced).pvalue > 1e-3
    # non-uniform weights: class c drawn with probability ∝ w_c
    w = torch.arange(1, 11, dtype=torch.float64)
    src.set_class_weights(w)
    skewed = histogram()
    assert chisquare(skewed, f_exp=(w / w.sum() * 10_000).numpy()).pvalue > 1e-3


# -- cRT -------------------------------------------------------------------------------------------
def test_crt_leaves_every_frozen_parameter_bit_identical(task):
    torch.manual_seed(3)
    net = build_backbone("lenet5", 10)
    before = copy.deepcopy(net.state_dict())
    method, ctx = make_ctx(task, "crt", steps=8, net=net)
    run_fit(method, ctx)
    after = ctx.net.state_dict()
    head = {"C.fc3.weight", "C.fc3.bias"}
    for key, value in before.items():
        if key in head:
            assert not torch.equal(value, after[key]), key
        else:
            assert torch.equal(value, after[key]), key
    assert method.steps() == 4  # step_fraction 0.5 of 8
    assert torch.equal(ctx.data.train.stream.class_weights, torch.ones(10, dtype=torch.float64))
    assert {n for n, p in ctx.net.named_parameters() if p.requires_grad} == head


# -- SMOTE ---------------------------------------------------------------------------------------------
def assert_on_same_class_segments(fake, fake_y, real, real_y, tol=1e-4):
    """Every synthetic row = x_i + λ(x_j − x_i) for two real rows of its class and λ in [0, 1]."""
    fake, real = torch.as_tensor(fake, dtype=torch.float64), torch.as_tensor(real, dtype=torch.float64)
    fake_y, real_y = torch.as_tensor(fake_y), torch.as_tensor(real_y)
    for c in fake_y.unique():
        xs, s = real[real_y == c], fake[fake_y == c]  # [n, D], [m, D]
        # distances of every s to every segment x_i -> x_j from Gram matrices (no [m, n, D] tensor):
        # rel = s - x_i, d = x_j - x_i, λ = clamp(<rel, d> / ‖d‖², 0, 1), residual ‖rel − λd‖
        g_sx, g_xx = s @ xs.T, xs @ xs.T  # [m, n], [n, n]
        sq = g_xx.diagonal()
        rd = g_sx[:, None, :] - g_sx[:, :, None] - g_xx[None] + sq[None, :, None]  # [m, i, j]
        dd = (sq[None, :] - 2 * g_xx + sq[:, None]).clamp_min(1e-30)  # [i, j]
        r2 = (s * s).sum(-1)[:, None] - 2 * g_sx + sq[None]  # [m, i]
        lam = (rd / dd).clamp(0, 1)
        resid = (r2[:, :, None] - 2 * lam * rd + lam**2 * dd).clamp_min(0).sqrt()
        best = resid.flatten(1).min(dim=1).values
        scale = xs.norm(dim=1).max()
        assert bool((best <= tol * scale).all()), f"class {int(c)}: max residual {float(best.max())}"


def test_smote_points_lie_on_same_class_segments():
    rng = np.random.default_rng(0)
    counts = {0: 40, 1: 8, 2: 11}
    x = np.concatenate([rng.normal(3 * c, 1.0, size=(n, 6)) for c, n in counts.items()]).astype(np.float32)
    y = np.concatenate([np.full(n, c) for c, n in counts.items()])
    fake, fake_y = smote_oversample(x, y, k_neighbors=5, seed=0)
    assert np.bincount(fake_y, minlength=3).tolist() == [0, 32, 29]  # up to the majority count 40
    assert_on_same_class_segments(fake, fake_y, x, y)
    # a point off every segment is detected (the check can fail)
    with pytest.raises(AssertionError):
        assert_on_same_class_segments(fake[:1] + 0.5, fake_y[:1], x, y)


def test_smote_feat_pool_and_frozen_f(task):
    torch.manual_seed(4)
    net = build_backbone("lenet5", 10)
    f_before = copy.deepcopy(net.F.state_dict())
    method, ctx = make_ctx(task, "smote_feat", steps=6, net=net)
    run_fit(method, ctx)
    n_max = int(ctx.data.class_counts.max())
    assert len(method.pool) == 10 * n_max  # every class at the majority count
    assert np.bincount(method.pool_labels.numpy(), minlength=10).tolist() == [n_max] * 10
    real, real_y = method.pool[:method.n_real], method.pool_labels[:method.n_real]
    assert_on_same_class_segments(method.pool[method.n_real:], method.pool_labels[method.n_real:], real, real_y)
    for key, value in f_before.items():
        assert torch.equal(value, ctx.net.F.state_dict()[key]), key
    art = method.artefacts()
    assert set(art["features"]["generated_labels"].tolist()) <= set(MINORITY)
    assert art["features"]["real"].shape[1] == 6 * 14 * 14


# -- post-hoc adjustment ---------------------------------------------------------------------------
def test_posthoc_changes_predictions_only_through_the_log_prior(task):
    torch.manual_seed(5)
    net = build_backbone("lenet5", 10)
    before = copy.deepcopy(net.state_dict())
    method, ctx = make_ctx(task, "logit_adjust_posthoc", steps=50, tau=1.0)
    ctx.net.load_state_dict(before)
    result = run_fit(method, ctx)
    assert result.steps == 0 and method.steps() == 0
    for key, value in before.items():
        assert torch.equal(value, ctx.net.state_dict()[key]), key
    bias = method.logit_bias()
    assert torch.allclose(bias, -log_prior(ctx.data.class_counts))
    x = torch.cat([xb for xb, _ in ctx.data.test.iterate(256)])
    with torch.no_grad():
        raw = ctx.net.eval()(x)
    probs, _ = predict(ctx.net, ctx.data.test.iterate(256), logit_bias=bias)
    assert np.allclose(probs, torch.softmax(raw - log_prior(ctx.data.class_counts), 1).numpy(), atol=1e-6)
    plain, _ = predict(ctx.net, ctx.data.test.iterate(256))
    assert np.array_equal(plain.argmax(1), raw.argmax(1).numpy())


# -- LDAM's head ---------------------------------------------------------------------------------------
def test_ldam_head_is_cosine_and_takes_source_weights():
    src = build_backbone("lenet5", 10)
    net = METHODS.get("ldam_drw").adapt_net(build_backbone("lenet5", 10), {"scale": 30.0})
    assert isinstance(net.last_fc, CosineLinear) and net.last_fc.scale == 30.0
    from dfg.models import load_source_weights

    skipped = load_source_weights(net, src.state_dict())
    assert skipped == [] and torch.equal(net.last_fc.weight, src.last_fc.weight)
    with torch.no_grad():
        logits = net(torch.randn(4, 1, 32, 32))
    assert float(logits.abs().max()) <= 30.0 + 1e-4


def test_remix_mixing_depends_on_seed_and_step_only(task):
    m1, _ = make_ctx(task, "remix")
    m2, _ = make_ctx(task, "remix")
    lam_a, perm_a = m1.mixing(7, 32)
    lam_b, perm_b = m2.mixing(7, 32)
    assert lam_a == lam_b and torch.equal(perm_a, perm_b)
    assert m1.mixing(8, 32)[0] != lam_a
    assert sorted(perm_a.tolist()) == list(range(32))


# -- resume --------------------------------------------------------------------------------------------
class Killed(Exception):
    pass


@pytest.mark.parametrize("method", ["drs", "remix", "crt", "smote_feat"])
def test_resumed_run_matches_uninterrupted(task, tmp_path, method):
    """Killed after the step-6 checkpoint and resumed: the same final weights, bit for bit (DRS crosses its
    switch at step 8 after the resume; Remix's and SMOTE's draws are functions of (seed, step))."""
    steps = 20 if method in ("crt", "smote_feat") else 10  # 10 steps for every method

    def run(resume: Path | None, kill_at: int | None = None) -> dict:
        method_obj, ctx = make_ctx(task, method, steps=steps)

        def kill(done: int, logs: dict) -> None:
            if done == kill_at:
                raise Killed

        try:
            fit(method_obj, ctx, eval_every=1000, checkpoint_every=6, eval_batch_size=256, resume_path=resume,
                run_fields={"task": "digits-test", "method": method, "seed": 0}, callback=kill)
        except Killed:
            return {}
        return ctx.net.state_dict()

    plain = run(None)
    resume = tmp_path / "r.pt"
    assert run(resume, kill_at=9) == {} and resume.exists()
    resumed = run(resume)
    assert plain.keys() == resumed.keys()
    for key, value in plain.items():
        assert torch.equal(value, resumed[key]), key
