"""The portable CPU mode (dfg.portable): the `dfg` command restarts itself with the pinned environment
before torch loads, whatever the caller had set, so a run gives the same bits under another kernel
dispatch or instruction-set ceiling; the fast mode does not (the control that shows the test can fail)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from dfg import DfgError, portable
from loop_fixtures import ROOT, digits_task, make_params
from workflow_fixtures import BIN, env

#: Two callers that set the libraries' choices differently (what two different CPUs would choose).
CALLER_A = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
CALLER_B = {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE",
            "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "2"}


def test_settings_pin_every_library_and_need_a_fixed_thread_count():
    s = portable.settings(1)
    assert s["ATEN_CPU_CAPABILITY"] == "default" and s["MKL_CBWR"] == "COMPATIBLE,STRICT"
    assert s["DNNL_MAX_CPU_ISA"] == "SSE41" and s["OPENBLAS_CORETYPE"] == "Nehalem"
    assert s["OMP_NUM_THREADS"] == s["MKL_NUM_THREADS"] == s["OPENBLAS_NUM_THREADS"] == "1"
    assert "-FMA" in s["GLIBC_TUNABLES"] and "-AVX2" in s["GLIBC_TUNABLES"]
    assert "X86_V3" in s["NPY_DISABLE_CPU_FEATURES"] or "AVX2" in s["NPY_DISABLE_CPU_FEATURES"]
    assert portable.in_force(s, 1) and not portable.in_force(s, 2)
    assert not portable.in_force({**s, "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, 1)  # a caller's cap is dropped
    with pytest.raises(DfgError, match="cpu_threads"):
        portable.settings(0)


def test_ensure_replaces_the_process_with_the_pinned_environment(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.write_text(yaml.safe_dump({**raw, "portable_cpu": True}))
    (tmp_path / "workflow").symlink_to(ROOT / "workflow")
    calls = []
    monkeypatch.setattr(os, "execve", lambda exe, argv, environ: calls.append((exe, argv, environ)))
    for k, v in CALLER_A.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    monkeypatch.delenv(portable.REEXEC_GUARD, raising=False)
    argv = ["--params", str(params), "train", "fmnist-synth", "original", "--seed", "0"]
    portable.ensure(argv)
    (_, new_argv, environ), = calls
    assert new_argv[1:] == ["-m", "dfg", *argv]
    assert portable.in_force(environ, 1) and environ["ATEN_CPU_CAPABILITY"] == "default"
    assert "MKL_ENABLE_INSTRUCTIONS" not in environ and environ[portable.REEXEC_GUARD] == "1"
    # already started that way: nothing to do; started that way but changed since: an error, not a loop
    for k, v in environ.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")
    portable.ensure(argv)
    assert len(calls) == 1
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    with pytest.raises(DfgError, match="changed after start-up"):
        portable.ensure(argv)
    # fast mode: never restarts
    params.write_text(yaml.safe_dump({**raw, "portable_cpu": False}))
    portable.ensure(argv)
    assert len(calls) == 1


def _train(tmp_path: Path, task: dict, name: str, portable_cpu: bool, caller: dict[str, str]) -> tuple[str, dict]:
    """`dfg train` as a command (its own process), ORIGINAL 40 steps on the digits task."""
    root = tmp_path / f"project-{portable_cpu}"
    if not root.exists():
        root.mkdir()
        (root / "workflow").symlink_to(ROOT / "workflow")
        p = make_params(steps=40)
        p.update(suite="demo", portable_cpu=portable_cpu)
        # the command checks dataset names against the registry: the digits task's data are sklearn's digits
        p["tasks"]["digits-test"]["dataset"] = p["sources"]["lenet5-digits"]["dataset"] = "sklearn-digits"
        (root / "params.yaml").write_text(yaml.safe_dump(p))
    out = tmp_path / name
    e = {k: v for k, v in env().items() if k not in portable.settings(1) and k != portable.REEXEC_GUARD}
    r = subprocess.run([str(BIN / "dfg"), "--params", str(root / "params.yaml"), "train", "digits-test", "original",
                        "--seed", "0", "--split", str(task["split"]), "--prepared", str(task["prepared"]),
                        "--out-model", str(out / "m.pt"), "--out-dir", str(out / "res"), "--device", "cpu"],
                       env=e | caller, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    net = torch.load(out / "m.pt", weights_only=True)["net"]
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(net.items()))).hexdigest()
    return digest, json.loads((out / "res" / "metrics.json").read_text())


@pytest.mark.slow
def test_portable_run_is_identical_under_another_dispatch_and_isa_ceiling(tmp_path):
    task = digits_task(tmp_path / "data")
    for path in (task["split"], task["prepared"] / "meta.json"):
        doc = json.loads(path.read_text())
        path.write_text(json.dumps({**doc, "dataset": "sklearn-digits"}))
    wa, ma = _train(tmp_path, task, "pa", True, CALLER_A)
    wb, mb = _train(tmp_path, task, "pb", True, CALLER_B)
    assert wa == wb  # the final weights, bit for bit
    for key in ("accuracy", "balanced_accuracy", "ece", "confusion_matrix", "per_class_recall"):
        assert ma[key] == mb[key], key
    for m in (ma, mb):
        prov = m["provenance"]
        assert prov["portable_cpu"] is True and prov["torch_cpu_capability"] == "DEFAULT"
        assert prov["onednn_enabled"] is False and prov["torch_threads"] == 1
        assert prov["numeric_env"]["MKL_CBWR"] == "COMPATIBLE,STRICT" and prov["numeric_env"]["MKL_ENABLE_INSTRUCTIONS"] is None
    # the control: in fast mode the same two callers give different weights (on a CPU with AVX2)
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        fa, fma = _train(tmp_path, task, "fa", False, CALLER_A)
        fb, _ = _train(tmp_path, task, "fb", False, CALLER_B)
        assert fa != fb
        assert fma["provenance"]["portable_cpu"] is False and fma["provenance"]["torch_cpu_capability"] != "DEFAULT"


def test_portable_mode_refuses_a_cpu_without_nnpack(monkeypatch):
    """NNPACK (AVX2 + FMA) computes the mode's convolution forwards; without it the numbers would differ."""
    import torch

    from dfg import DfgError
    from dfg.portable import apply

    monkeypatch.setattr(torch.backends.mkldnn, "enabled", torch.backends.mkldnn.enabled)  # restored afterwards
    monkeypatch.setattr(torch, "_nnpack_available", lambda: False)
    with pytest.raises(DfgError, match="lacks AVX2 or FMA.*set portable_cpu: false"):
        apply()
