"""DVC on the tiny suite, in a temporary git repository, as a committed suite beside the demo: its own
pipeline file results/tiny/dvc.yaml next to the demo's root dvc.yaml (the shared stage stays in the root
file); the documented `dvc commit -f` records a plain Snakemake run so `dvc status` is clean; `dvc repro`
runs stages with the generated commands; `dvc push` to a local remote, outputs deleted, `dvc pull`
restores them byte for byte."""

from __future__ import annotations

import shutil

import pytest
import yaml

from workflow_fixtures import BIN, run, tiny_local_run, tree_hashes

pytestmark = pytest.mark.slow

#: The cached outputs. metrics.json, curves.csv, the tables and the figures are cache: false, kept in git.
CACHED = ["data/prepared", "data/splits", "models"]
SUB = "results/tiny/dvc.yaml"  # a suite other than params.yaml's gets its own pipeline file beside its results
IN_GIT = ["results/tiny/dvc.yaml", "results/tiny/dvc.lock", "results/tiny/figures", "results/tiny/table.csv", "results/tiny/table.md", "results/tiny/table.tex",
          "results/tiny/table_extra.md", "results/tiny/paired_tests.csv"]


def _ok(cmd: list[str], cwd) -> str:
    r = run(cmd, cwd)
    assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def test_dvc_records_reproduces_pushes_and_pulls(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_local_run(), repo, copy_function=shutil.copy2, ignore=shutil.ignore_patterns(".snakemake"))
    dvc = str(BIN / "dvc")
    # the tiny suite is git-ignored in the project; here it plays a committed suite like results/demo
    gi = repo / ".gitignore"
    gi.write_text("".join(line for line in gi.read_text().splitlines(True) if line.strip() != "/results/tiny/"))
    _ok(["git", "init", "-q"], repo)
    _ok([dvc, "init", "-q"], repo)
    assert "wrote results/tiny/dvc.yaml" in _ok([str(BIN / "dfg"), "--suite", "tiny", "dvc-yaml"], repo)
    stages = yaml.safe_load((repo / SUB).read_text())["stages"]
    assert {s["wdir"] for s in stages.values()} == {"../.."} and "aggregate" in stages
    # the rendered digits are prepared by a stage of the demo's root dvc.yaml: a dep here, not a second stage
    assert "prepare_synthdigits" not in stages and "prepare_synthdigits" in yaml.safe_load(
        (repo / "dvc.yaml").read_text())["stages"]
    assert any("data/prepared/synthdigits" in s["deps"] for s in stages.values())
    # the demo's other outputs are absent here, so every DVC command names this suite's stages
    targets = [SUB, "dvc.yaml:prepare_synthdigits"]

    # the documented command after a plain Snakemake run
    _ok([dvc, "commit", "-f", *targets], repo)
    assert "up to date" in _ok([dvc, "status", *targets], repo)

    # a real repro: stages run their generated `dfg` commands and the pipeline is clean afterwards
    out = _ok([dvc, "repro", "--force", "--single-item", f"{SUB}:aggregate", f"{SUB}:figures"], repo)
    assert "Running stage 'results/tiny/dvc.yaml:aggregate'" in out, out
    assert "digits-tiny" in (repo / "results/tiny/table.md").read_text()
    assert "up to date" in _ok([dvc, "status", *targets], repo)

    # As for a committed suite (results/demo): the tables and figures stay visible to git (DVC adds only
    # cached outputs to .gitignore files), the cached run artefacts do not
    for rel in IN_GIT:
        assert run(["git", "check-ignore", "-q", rel], repo).returncode == 1, f"{rel} is git-ignored"
    assert run(["git", "check-ignore", "-q", "results/tiny/runs/digits-tiny/dfg/seed0/artefacts.pt"],
               repo).returncode == 0

    before = tree_hashes(repo, CACHED + ["results/tiny/runs"])
    assert any(k.endswith("artefacts.pt") for k in before) and any(k.startswith("models/source") for k in before)
    remote = tmp_path / "remote"
    remote.mkdir()
    _ok([dvc, "remote", "add", "-d", "local", str(remote)], repo)
    _ok([dvc, "push", "-q", *targets], repo)

    for rel in CACHED:
        p = repo / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in (repo / "results/tiny/runs").rglob("artefacts.pt"):
        p.unlink()
    shutil.rmtree(repo / ".dvc/cache")
    _ok([dvc, "pull", "-q", *targets], repo)
    assert tree_hashes(repo, CACHED + ["results/tiny/runs"]) == before
    assert "up to date" in _ok([dvc, "status", *targets], repo)
