"""`dfg figures` on fabricated run folders (see test_report_aggregate.fabricate_runs): every figure is
written in every configured format at the configured dpi, figures without inputs are skipped with a log
line, and the t-SNE perplexity is clipped for small samples."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib import image as mpimg

from dfg import DfgError
from dfg.report import aggregate, figures
from dfg.report.figures_features import feature_statistics, tsne_perplexity
from test_report_aggregate import PARAMS, fabricate_runs

TASKS = ("fmnist-synth", "svhn")
PER_TASK = ("per_class_recall", "learning_curves", "tsne", "attention", "attention_training")
ALL = ["accuracy", *(f"{name}_{t}" for name in PER_TASK for t in TASKS)]
MIN_PNG_BYTES = 5_000   # a blank 60-dpi canvas compresses to ~2 kB; a drawn figure is well above
MIN_PDF_BYTES = 3_000


def _run(runs_dir: Path, out: Path, params: dict = PARAMS, table: Path | None = None) -> int:
    return figures.main(argparse.Namespace(runs_dir=runs_dir, out_dir=out, table=table), params)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """All figures of the full fabricated suite, drawn once (about 3 s on a shared 2-core CPU)."""
    root = tmp_path_factory.mktemp("suite")
    runs_dir = fabricate_runs(root)
    aggregate.main(argparse.Namespace(out_dir=root, metrics=[str(runs_dir)]), PARAMS)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert _run(runs_dir, root / "figures", table=root / "table.csv") == 0
    return root / "figures", buf.getvalue()


def _capturing_context(runs_dir: Path, tmp_path: Path, monkeypatch) -> tuple[figures.Context, list]:
    """A figure context over `runs_dir` whose save() keeps (name, figure) in the returned list instead of
    writing files, so a test can inspect what was drawn."""
    ctx = figures.build_context(runs_dir, tmp_path / "fig", {**PARAMS, "figures": {**PARAMS["figures"],
                                                                                "formats": ["png"]}})
    drawn: list = []
    monkeypatch.setattr(ctx, "save", lambda fig, name: drawn.append((name, fig)) or [])
    return ctx, drawn


def test_every_figure_in_every_format(drawn: tuple[Path, str]) -> None:
    out, stdout = drawn
    expected = {f"{name}.{fmt}" for name in ALL for fmt in PARAMS["figures"]["formats"]}
    expected.add("generated_features.csv")
    assert {p.name for p in out.iterdir()} == expected                     # nothing else, no temp files
    table = pd.read_csv(out / "generated_features.csv")                    # every seed with artefacts
    assert sorted(set(table.method)) == ["dfg", "difa_cmwgan"] and sorted(set(table.task)) == list(TASKS)
    assert len(table) == len(TASKS) * 2 * len(PARAMS["run"]["seeds"])
    for name in ALL:
        assert (out / f"{name}.png").stat().st_size > MIN_PNG_BYTES, name
        assert (out / f"{name}.pdf").stat().st_size > MIN_PDF_BYTES, name
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    listed = [line.strip()[2:] for line in stdout.splitlines() if line.strip().startswith("- ")]
    assert stdout.startswith("figures:") and sorted(Path(p).name for p in listed) == sorted(expected)


def test_dpi_param_sets_pixel_size(drawn: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = drawn
    small = mpimg.imread(out / "learning_curves_svhn.png").shape
    runs_dir = fabricate_runs(tmp_path, with_artefacts=False)
    params = {**PARAMS, "figures": {**PARAMS["figures"], "dpi": 120, "formats": ["png"]}}
    _run(runs_dir, tmp_path / "fig", params)
    big = mpimg.imread(tmp_path / "fig" / "learning_curves_svhn.png").shape
    assert big[0] == pytest.approx(2 * small[0], rel=0.05) and big[1] == pytest.approx(2 * small[1], rel=0.05)


def test_missing_inputs_are_skipped_not_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runs_dir = fabricate_runs(tmp_path)
    for task in TASKS:                                                     # no dfg runs at all
        shutil.rmtree(runs_dir / task / "dfg")
    (runs_dir / "svhn" / "difa_cmwgan" / "seed0" / "artefacts.pt").unlink()   # falls back to seed 1
    params = {**PARAMS, "figures": {**PARAMS["figures"], "formats": ["png"]}}
    with caplog.at_level(logging.INFO, logger="dfg.report"):
        assert _run(runs_dir, tmp_path / "fig", params) == 0
    names = {p.stem for p in (tmp_path / "fig").iterdir()}
    assert names == {"accuracy", "generated_features", *(f"{n}_{t}" for n in ("per_class_recall", "learning_curves", "tsne")
                                   for t in TASKS)}
    assert "attention of svhn: skipped, no dfg artefacts.pt" in caplog.text


def test_no_runs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DfgError, match="does not exist"):
        _run(tmp_path / "nowhere", tmp_path / "fig")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DfgError, match="no metrics.json"):
        _run(tmp_path / "empty", tmp_path / "fig")


def test_tsne_perplexity_clipped_to_sample() -> None:
    assert tsne_perplexity(30, 400) == 30
    assert tsne_perplexity(30, 16) == 5                                    # (16 - 1) / 3
    assert tsne_perplexity(30, 2) == 1                                     # never below 1


def test_many_methods_switch_per_class_recall_to_heat_map(tmp_path: Path, monkeypatch) -> None:
    """Beyond MAX_LINES methods the per-class recall is a methods x classes heat map (one image artist)."""
    from dfg.report import figures_results

    runs_dir = fabricate_runs(tmp_path, with_artefacts=False)
    ctx, drawn = _capturing_context(runs_dir, tmp_path, monkeypatch)
    monkeypatch.setattr(figures_results, "MAX_LINES", 3)
    figures_results.per_class_recall(ctx)
    name, fig = drawn[0]
    assert name == "per_class_recall_fmnist-synth"
    heat = fig.axes[1].images[0].get_array()
    assert heat.shape == (6, 10)                                           # 6 methods x 10 classes
    # DFG's row: each seed's recall is acc - 0.1 on its 8 minority and acc + 0.1 on its 2 majority classes
    assert heat[4].mean() == pytest.approx(100 * ((0.82 + 0.83 + 0.85) / 3 - 0.1 * 0.8 + 0.1 * 0.2))
    # the runs' dataset is fashion-mnist: its class names are on the axis, in label order
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert ticks == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"]
    assert fig.axes[1].get_xlabel() == "Class"
    # and on the line plot too
    monkeypatch.setattr(figures_results, "MAX_LINES", 8)
    figures_results.per_class_recall(ctx)
    ax = drawn[-1][1].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "Ankle boot"
    # the legend sits wholly below the slanted class names and the axis label (it once overlapped "Class")
    renderer = ax.figure.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    below = [ax.xaxis.label, *ax.get_xticklabels()]
    assert legend.y1 < min(t.get_window_extent(renderer).y0 for t in below)


def test_single_attention_step_draws_heat_map_but_no_evolution(tmp_path: Path, caplog) -> None:
    import torch

    from dfg.report import figures_features

    runs_dir = fabricate_runs(tmp_path)
    path = runs_dir / "svhn" / "dfg" / "seed0" / "artefacts.pt"
    art = torch.load(path, weights_only=True)
    art["attention"] = {"steps": art["attention"]["steps"][:1], "matrices": art["attention"]["matrices"][:1]}
    torch.save(art, path)
    params = {**PARAMS, "figures": {**PARAMS["figures"], "formats": ["png"]}}
    ctx = figures.build_context(runs_dir, tmp_path / "fig", params)
    with caplog.at_level(logging.INFO, logger="dfg.report"):
        names = sorted(p.stem for p in figures_features.attention(ctx))
    assert names == ["attention_fmnist-synth", "attention_svhn", "attention_training_fmnist-synth"]
    assert "attention over training of svhn: skipped, only one recorded step (100)" in caplog.text


def test_redrawing_gives_byte_identical_files(tmp_path: Path) -> None:
    """No timestamps in the PDFs: re-running `dfg figures` on the same runs changes no committed file."""
    runs_dir = fabricate_runs(tmp_path, with_artefacts=False)
    params = {**PARAMS, "figures": {**PARAMS["figures"], "formats": ["png", "pdf", "svg"]}}
    for out in ("a", "b"):
        with contextlib.redirect_stdout(io.StringIO()):
            _run(runs_dir, tmp_path / out, params)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert any(n.endswith(".pdf") for n in names) and any(n.endswith(".svg") for n in names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_many_methods_split_learning_curves_into_two_panels(tmp_path: Path, monkeypatch) -> None:
    """Beyond MAX_LINES methods: the paper's methods in one panel, the additions in another, with ORIGINAL
    repeated dashed there as the reference; one shared accuracy axis."""
    from dfg.report import figures_results

    runs_dir = fabricate_runs(tmp_path, with_artefacts=False)
    ctx, drawn = _capturing_context(runs_dir, tmp_path, monkeypatch)

    def legend_texts(ax):
        return [t.get_text() for t in ax.get_legend().get_texts()]

    figures_results.learning_curves(ctx)                                  # 6 methods <= MAX_LINES: one panel
    assert len(drawn[0][1].axes) == 1 and len(legend_texts(drawn[0][1].axes[0])) == 6
    monkeypatch.setattr(figures_results, "MAX_LINES", 3)
    drawn.clear()
    figures_results.learning_curves(ctx)
    name, fig = drawn[0]
    left, right = fig.axes
    assert name == "learning_curves_fmnist-synth" and left.get_shared_y_axes().joined(left, right)
    assert [t.split(" (n=")[0] for t in legend_texts(left)] == [
        "ORIGINAL", "FINE-TUNING", "DELTA", "DIFA + CMWGAN (reconstruction)", "DFG"]
    assert legend_texts(right) == ["ORIGINAL (n=3) (reference)", "CB-Focal (n=1)"]  # fabricated: 1 cb_focal run
    assert [line.get_linestyle() for line in right.get_lines()] == ["--", "-"]
    assert left.get_ylabel() == "Test accuracy (%)" and right.get_xlabel() == "Training step"


def test_feature_statistics_on_a_hand_computed_case() -> None:
    """Two classes in 2-D. Real class 0 at (0,0),(2,0) (mean (1,0), spread 1); class 1 at (10,0),(10,4)
    (mean (10,2), spread 2). Generated class 0 at (1,3) twice (spread 0, gap 3); class 1 at (9,2),(11,2)
    (spread 1, gap 0); one generated class-0 point is labelled 1 below, to test the nearest-mean share."""
    feats = {"real": torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 4.0]]),
             "real_labels": torch.tensor([0, 0, 1, 1]),
             "generated": torch.tensor([[1.0, 3.0], [1.0, 3.0], [9.0, 2.0], [11.0, 2.0], [-1.0, 0.0]]),
             "generated_labels": torch.tensor([0, 0, 1, 1, 2])}          # class 2 has no real features
    s = feature_statistics(feats)
    assert s["classes"] == 2
    assert s["real_spread"] == pytest.approx(1.5)                 # (1 + 2) / 2
    assert s["generated_spread"] == pytest.approx(0.5)            # (0 + 1) / 2
    assert s["spread_ratio"] == pytest.approx(1 / 3)
    assert s["class_gap"] == pytest.approx(1.5)                   # (3 + 0) / 2
    assert s["gap_over_spread"] == pytest.approx(1.0)
    assert s["nearest_mean_match"] == pytest.approx(1.0)          # (1,3) is nearer (1,0) than (10,2)
    assert s["real_negative"] == 0.0 and s["generated_negative"] == pytest.approx(1 / 10)
    feats["generated_labels"] = torch.tensor([0, 1, 1, 1, 2])     # (1,3) labelled 1: nearest mean is class 0
    assert feature_statistics(feats)["nearest_mean_match"] == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="no class has both"):
        feature_statistics({**feats, "generated_labels": torch.tensor([2, 2, 2, 2, 2])})


def test_run_from_another_run_continues_its_curve(tmp_path: Path, monkeypatch) -> None:
    """cRT starts from the FINE-TUNING run of its seed: its curve is drawn after that run's 300 steps,
    and the legend says so."""
    import json

    from dfg.report import figures_results

    runs_dir = fabricate_runs(tmp_path, with_artefacts=False)
    src, dst = runs_dir / "fmnist-synth" / "cb_focal" / "seed0", runs_dir / "fmnist-synth" / "crt" / "seed0"
    dst.mkdir(parents=True)
    metrics = json.loads((src / "metrics.json").read_text())
    (dst / "metrics.json").write_text(json.dumps({**metrics, "method": "crt", "label": "cRT", "steps": 150}))
    (dst / "curves.csv").write_text("step,test_accuracy\n100,0.60\n150,0.65\n")
    ctx, drawn = _capturing_context(runs_dir, tmp_path, monkeypatch)
    figures_results.learning_curves(ctx)
    ax = drawn[0][1].axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    line = ax.get_lines()[texts.index("cRT (n=1), after FINE-TUNING")]
    assert list(line.get_xdata()) == [400, 450] and list(line.get_ydata()) == pytest.approx([60.0, 65.0])
    finetune = ax.get_lines()[[t.split(" (n=")[0] for t in texts].index("FINE-TUNING")]
    assert list(finetune.get_xdata()) == [0, 100, 200, 300]                  # unshifted


def test_untrained_steps_are_drawn_dotted_and_labelled(tmp_path: Path, monkeypatch) -> None:
    """DIFA trains no classifier in its generator phase (generator_fraction 0.5 of 300 steps = 150): its
    evaluation at step 100 is drawn dotted up to the first trained one (200), the mean line and band
    start at 200, and its legend entry says why. A run without recorded params counts as fully trained."""
    import json

    import numpy as np

    from dfg.report import figures_results
    from dfg.report.runs import load_runs

    runs_dir = fabricate_runs(tmp_path, with_artefacts=False)
    d = runs_dir / "fmnist-synth" / "difa_cmwgan" / "seed0"
    metrics = json.loads((d / "metrics.json").read_text())
    metrics["params"] = {"train": {"steps": 300}, "methods": {"difa_cmwgan": {"generator_fraction": 0.5}}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "curves.csv").write_text("step,test_accuracy\n100,0.07\n200,0.50\n300,0.70\n")
    runs = load_runs([runs_dir])
    by = runs.set_index(["task", "method", "seed"])["untrained_steps"]
    assert by[("fmnist-synth", "difa_cmwgan", 0)] == 150
    assert by[("fmnist-synth", "difa_cmwgan", 1)] == 0 and by[("fmnist-synth", "dfg", 0)] == 0   # no params
    d1 = runs_dir / "fmnist-synth" / "difa_cmwgan" / "seed1"
    (d1 / "metrics.json").write_text(json.dumps({**metrics, "seed": 1, "params": {
        "train": {"steps": 300}, "methods": {"difa_cmwgan": {}}}}))                # hp without the fraction
    assert load_runs([d1]).untrained_steps.tolist() == [0]
    for seed in (1, 2):                                       # one DIFA seed only, so the mean is that run
        shutil.rmtree(runs_dir / "fmnist-synth" / "difa_cmwgan" / f"seed{seed}", ignore_errors=True)
    ctx, drawn = _capturing_context(runs_dir, tmp_path, monkeypatch)
    figures_results.learning_curves(ctx)
    ax = drawn[0][1].axes[0]
    difa = [line for line in ax.get_lines() if line.get_color() == ctx.colours["difa_cmwgan"]]
    dotted, solid = difa
    assert dotted.get_linestyle() == ":" and list(dotted.get_xdata()) == [100, 200]
    assert list(dotted.get_ydata()) == pytest.approx([7.0, 50.0])
    assert solid.get_linestyle() == "-" and list(solid.get_xdata()) == [200, 300]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    label = "DIFA + CMWGAN (reconstruction) (n=1)\n(dotted: classifier not trained in its first 150 steps)"
    assert ax.get_legend().get_lines()[texts.index(label)].get_linestyle() == "-"
    assert sum("dotted" in t for t in texts) == 1
    band = [c for c in ax.collections if np.allclose(c.get_facecolor()[0][:3], ctx.colours["difa_cmwgan"][:3])]
    assert len(band) == 1 and band[0].get_paths()[0].vertices[:, 0].min() == 200


def test_up_to_13_methods_get_distinct_strong_colours() -> None:
    """tab10 for the first ten (unchanged figures for smaller suites), then three dark extras; never
    tab20's pale copies while our 13 methods fit."""
    import matplotlib

    from dfg.report.runs import EXTRA_COLOURS, method_colours

    tab10 = [tuple(c) + (1.0,) for c in matplotlib.colormaps["tab10"].colors]
    names = [f"m{i}" for i in range(13)]
    colours = method_colours(names)
    assert [colours[n] for n in names[:10]] == tab10
    assert [colours[n] for n in names[10:]] == [matplotlib.colors.to_rgba(c) for c in EXTRA_COLOURS]
    assert len(set(colours.values())) == 13
    assert list(method_colours(names[:4]).values()) == tab10[:4]
    assert len(set(method_colours([f"m{i}" for i in range(20)]).values())) == 20   # tab20 beyond 13
