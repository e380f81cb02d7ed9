"""Captured training steps (dfg.capture, `train.capture`): on the CPU the captured code path (the split
step on static input buffers, what a CUDA graph records) runs without a graph; it must give the eager
step's losses and weights, and a short run the same accuracy. The graph itself is checked on a GPU
(scripts/gpu-check.sh)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from dfg import DfgError, capture
from dfg.config import load_params
from dfg.loop import fit
from dfg.models import build_backbone
from dfg.workflow.plan import Plan
from loop_fixtures import digits_task_with_source, random_lenet_context
from test_loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = 16


def run(name: str, mode: str, steps: int, cls=None, **hp_over) -> tuple[list[dict], dict, dict]:
    """(per-step logs, final weights, capture summary) of `steps` steps of `name` through fit on a tiny
    random-image LeNet-5 task (10 classes, 8 of them minority), with the resolved capture `mode`."""
    cls, ctx = random_lenet_context(name, batch=BATCH, total_steps=steps, capture=mode, cls=cls, **hp_over)
    net = ctx.net
    logs: list[dict] = []
    result = fit(cls(ctx), ctx, eval_every=steps, checkpoint_every=10 ** 6, eval_batch_size=64,
                 callback=lambda _d, step_logs: logs.append({k: float(v) for k, v in step_logs.items()}))
    return logs, {k: v.clone() for k, v in net.state_dict().items()}, result.extra["capture"]


def test_modes_resolve_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [capture.resolve_mode(s, cpu) for s in ("auto", "on", "off")] == ["off", "static", "off"]
    assert [capture.resolve_mode(s, cuda) for s in ("auto", "on", "off")] == ["graph", "graph", "off"]
    with pytest.raises(DfgError, match="train.capture must be one of auto, on, off, got 'yes'"):
        capture.resolve_mode("yes", cpu)


# (method, steps, hyper-parameter overrides, recordings expected). DFG: two bodies (with the classifier
# update every 5th step, without), an attention refresh every 4 steps (in place: the recorded step reads
# the new A); LDAM-DRW: its re-weighting switches at step 15 of 20 (a second recording).
CASES = [
    ("original", 8, {}, 1),
    ("delta", 8, {}, 1),
    ("balanced_softmax", 8, {}, 1),
    ("cb_focal", 6, {}, 1),
    ("drs", 20, {}, 1),
    ("crt", 12, {}, 1),
    ("smote_feat", 12, {}, 1),
    ("ldam_drw", 20, {}, 2),
    ("remix", 8, {}, 1),
    ("dfg", 16, {"refresh_every": 4, "refresh_max_loss": 1e9}, 2),
]


def test_recorded_evaluation_forward_gives_the_eager_logits(monkeypatch):
    """CapturedForward: logits equal to the net's own, for every batch, after training changed the
    weights in place (a recording reads the weights' memory)."""
    torch.manual_seed(0)
    net = build_backbone("lenet5", 10).eval()
    forward = capture.CapturedForward(net, lambda: torch.autocast("cpu", enabled=False), "static", warmup=1)
    xs = [torch.randn(8, 1, 32, 32) for _ in range(3)] + [torch.randn(5, 1, 32, 32)]
    for x in xs:
        assert torch.equal(forward(x), net(x))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5)
    assert all(torch.equal(forward(x), net(x)) for x in xs)
    assert sorted(k[0] for k in forward.entries) == [(5, 1, 32, 32), (8, 1, 32, 32)]


@pytest.mark.parametrize(("name", "steps", "hp", "recorded"), CASES, ids=[c[0] for c in CASES])
def test_captured_path_gives_the_eager_steps(monkeypatch, name, steps, hp, recorded):
    """Every step's losses and the final weights equal the eager run's (exactly: on the CPU the recorded
    path runs the same operations on copies of the same inputs), and most steps ran recorded."""
    monkeypatch.setattr(capture, "WARMUP_STEPS", 1)
    eager_logs, eager_w, off = run(name, "off", steps, **hp)
    logs, w, summary = run(name, "static", steps, **hp)
    assert off == {"mode": "off"}
    assert logs == eager_logs
    assert all(torch.equal(eager_w[k], w[k]) for k in w)
    assert summary["mode"] == "static" and summary["graphs"] == recorded
    # one warm-up step per body, then replays (cRT and SMOTE run a fraction of the steps)
    assert summary["eager"] == recorded and summary["replayed"] == len(logs) - recorded > 0


def test_difa_captured_matches_eager_within_float_tolerance(monkeypatch):
    """DIFA + CMWGAN, both phases recorded. Its class-conditional penalty takes one probe per class of the
    critic when captured (per class present when eager: a data-dependent shape), so the two agree to float
    rounding, not necessarily bit for bit."""
    monkeypatch.setattr(capture, "WARMUP_STEPS", 1)
    eager_logs, eager_w, _ = run("difa_cmwgan", "off", 12)
    logs, w, summary = run("difa_cmwgan", "static", 12)
    assert summary["graphs"] == 2 and summary["replayed"] == 10  # generator phase 6 steps, matching phase 6
    assert [sorted(r) for r in logs] == [sorted(r) for r in eager_logs]
    for got, want in zip(logs, eager_logs, strict=True):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert all(torch.allclose(eager_w[k].float(), w[k].float(), rtol=1e-5, atol=1e-6) for k in w)


def test_a_method_with_its_own_train_step_runs_it_eagerly(monkeypatch):
    """A method that overrides train_step is never split: its own step runs, nothing is recorded."""
    from dfg.methods.original import Original

    calls = []

    class OwnStep(Original):
        def train_step(self, step: int):
            calls.append(step)
            return super().train_step(step)

    monkeypatch.setattr(capture, "WARMUP_STEPS", 1)
    eager_logs, _, _ = run("original", "off", 4)
    logs, _, summary = run("original", "static", 4, cls=OwnStep)
    assert logs == eager_logs and calls == [0, 1, 2, 3]
    assert summary == {"mode": "static", "graphs": 0, "replayed": 0, "eager": 4, "eval_graphs": 0}


def test_inputs_of_another_shape_are_refused():
    entry = capture._Entry(0, (torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64)), {})
    entry.feed((torch.ones(4, 3), torch.ones(4, dtype=torch.int64)))
    assert entry.inputs[0].sum() == 12
    with pytest.raises(DfgError, match="capture_key must tell such steps apart"):
        entry.feed((torch.ones(5, 3), torch.ones(5, dtype=torch.int64)))


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict:
    return digits_task_with_source(tmp_path_factory.mktemp("digits"))


def test_short_run_with_capture_on_reaches_the_same_accuracy(task, tmp_path, monkeypatch):
    """`dfg train` with train.capture: on, on the CPU: the same accuracy (> 0.6, chance 0.1) and curves as
    the eager run, the evaluation forward recorded too (497 test images: a batch of 256 and one of 241);
    metrics.json says how the steps ran; params keep no capture key (job identity)."""
    monkeypatch.setattr(capture, "WARMUP_STEPS", 1)
    eager = train(task, tmp_path / "eager", "finetune", steps=40)
    captured = train(task, tmp_path / "on", "finetune", steps=40, capture="on")
    assert captured["accuracy"] == eager["accuracy"] > 0.6
    assert (tmp_path / "on" / "res" / "curves.csv").read_text() == (tmp_path / "eager" / "res" / "curves.csv").read_text()
    written = json.loads((tmp_path / "on" / "res" / "metrics.json").read_text())
    assert written["capture"] == {"mode": "static", "graphs": 1, "replayed": 39, "eager": 1, "eval_graphs": 2}
    assert "capture" not in json.loads((tmp_path / "eager" / "res" / "metrics.json").read_text())
    assert "capture" not in written["params"]["train"] and written["params"] == eager["params"]


def test_capture_is_not_part_of_a_jobs_parameter_identity():
    """Switching train.capture reruns nothing: a train job's Snakemake values are the same for all three."""
    values = set()
    for setting in ("auto", "on", "off"):
        params = load_params(semantic=False)
        params["train"]["capture"] = setting
        values.add(Plan(params).values("train", "fmnist-synth", "dfg"))
    assert len(values) == 1 and '"train"' in next(iter(values)) and "capture" not in next(iter(values))


def test_channels_last_trains_to_the_same_accuracy_band(task, tmp_path):
    """train.channels_last (NHWC weights, for large conv nets on GPUs): the same mathematics in other
    summation orders, so a short run lands within a point of the NCHW run; its checkpoint loads into an
    NCHW network as usual, and the setting stays out of the job's parameters."""
    from dfg.utils.io import load_torch

    nchw = train(task, tmp_path / "nchw", "finetune", steps=40)
    nhwc = train(task, tmp_path / "nhwc", "finetune", steps=40, channels_last=True)
    assert abs(nhwc["accuracy"] - nchw["accuracy"]) < 0.01 and nhwc["accuracy"] > 0.6
    net = build_backbone("lenet5", 10)
    net.load_state_dict(load_torch(tmp_path / "nhwc" / "m.pt")["net"])
    assert "channels_last" not in nhwc["params"]["train"]


def test_a_resumed_adam_is_made_capturable_again():
    """A resume checkpoint's Adam state says capturable=False (state_dict carries the flag); a captured
    run turns it back on and keeps the step counts as float32 tensors, as capturable Adam needs."""
    w = torch.nn.Parameter(torch.ones(3))
    saved = torch.optim.Adam([w], lr=0.1)
    w.grad = torch.ones(3)
    saved.step()
    resumed = torch.optim.Adam([w], lr=0.1, capturable=False)
    resumed.load_state_dict(saved.state_dict())
    capture.make_capturable(resumed)
    assert resumed.param_groups[0]["capturable"] is True
    step = resumed.state[w]["step"]
    assert step.dtype == torch.float32 and float(step) == 1.0
    sgd = torch.optim.SGD([w], lr=0.1)
    capture.make_capturable(sgd)  # nothing to do for SGD
    assert "capturable" not in sgd.param_groups[0]


def test_bench_times_capture_off_and_on_side_by_side_for_dfg_plan(tmp_path):
    """`dfg bench --capture off,on --out F`: one row per setting (the recording made in the warm-up, not
    timed), in the columns that `dfg plan --rates F --capture MODE` reads."""
    import argparse

    from dfg.bench import main
    from dfg.workflow import cost
    from loop_fixtures import make_params

    args = argparse.Namespace(backbones="lenet5", methods="original", steps=2, device="cpu", capture="off,on",
                              channels_last=None, out=tmp_path / "bench.csv")
    assert main(args, make_params()) == 0
    with open(tmp_path / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["capture"], r["graphs"], r["channels_last"]) for r in rows] == [("off", "0", "False"),
                                                                              ("static", "1", "False")]
    rates, _ = cost.load_rates(tmp_path / "bench.csv", "static")
    assert rates == {("lenet5", "original", ""): float(rows[1]["steps_per_s"])}
