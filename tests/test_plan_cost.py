"""`dfg plan`: job counts from the suite's plan, GPU time from measured rates (hand-computed here), model
sizes from parameter counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfg import DfgError
from dfg.config import load_params
from dfg.workflow import cost

ROOT = Path(__file__).resolve().parents[1]


def test_rates_file_has_every_method_on_lenet5():
    rates, source = cost.load_rates()
    assert "NVIDIA H200" in source
    assert rates[("lenet5", "dfg", "")] == 30.66 and rates[("lenet5", "difa_cmwgan", "generator")] == 16.43


def test_an_unmeasured_rate_takes_the_method_ratio_to_original_elsewhere():
    rates = {("a", "original", ""): 100.0, ("a", "dfg", ""): 10.0, ("b", "original", ""): 200.0,
             ("b", "dfg", ""): 30.0, ("c", "original", ""): 50.0}
    assert cost.rate(rates, "a", "dfg") == (10.0, False)
    r, estimated = cost.rate(rates, "c", "dfg")
    assert estimated and r == pytest.approx(50.0 * (0.1 + 0.15) / 2)
    with pytest.raises(DfgError, match="no GPU step rate for remix on c"):
        cost.rate(rates, "c", "remix")


def test_fmnist_full_gpu_hours_by_hand():
    params = load_params(ROOT / "params.yaml", "fmnist-full")
    from dfg.workflow.plan import Plan

    costs = {c.method: c for c in cost.run_costs(Plan(params, str(ROOT / "params.yaml")), cost.load_rates()[0])}
    # DFG: 5 runs x 40 000 steps / 30.66 steps/s
    assert costs["dfg"].runs == 5 and costs["dfg"].seconds == pytest.approx(40000 / 30.66)
    # DIFA: half the steps in each phase at its phase's rate
    assert costs["difa_cmwgan"].seconds == pytest.approx(20000 / 16.43 + 20000 / 74.89)
    # cRT trains half the steps; post-hoc logit adjustment none
    assert costs["crt"].steps == 20000 and costs["logit_adjust_posthoc"].seconds == 0
    text = cost.report(params, str(ROOT / "params.yaml"))
    total = sum(c.runs * c.seconds for c in costs.values()) / 3600
    assert f"total: {total:.1f} GPU-h" in text
    # fetch F-MNIST, prepare it and MNIST-5k, 5 splits, 1 source, 65 runs, aggregate, figures, all
    assert "jobs: 77 (fetch 1, prepare 2, split 5, pretrain 1, train 65, aggregate 1, figures 1, all 1)" in text


def test_paper_suite_job_count_and_model_disk():
    params = load_params(ROOT / "params.yaml", "paper")
    text = cost.report(params, str(ROOT / "params.yaml"))
    assert text.splitlines()[1].startswith("jobs: 432 (")
    # LeNet-5 at 10 classes, counted on the meta device = the real network's bytes
    from dfg.models import build_backbone

    net = build_backbone("lenet5", 10)
    assert cost.parameter_bytes("lenet5", 10) == 4 * sum(t.numel() for t in [*net.parameters(), *net.buffers()])


def test_readme_gpu_box_numbers_are_what_dfg_plan_prints():
    """The README quotes `dfg plan --suite paper`; a change to the suite, the rates or the plan must show."""
    import re

    text = cost.report(load_params(ROOT / "params.yaml", "paper"), str(ROOT / "params.yaml"))
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## On a GPU box"):readme.index("## Add a method")]
    jobs = re.search(r"^jobs: (\d+) \((.*?)\)", text, re.MULTILINE)
    assert f"**{jobs.group(1)} jobs** ({jobs.group(2).replace(', all 1', ', all 1')})" in " ".join(section.split())
    total = re.search(r"total: ([\d.]+) GPU-h", text).group(1)
    assert f"**{total} GPU-hours**" in section
    for part in re.search(r"^disk: (.*?); total", text, re.MULTILINE).group(1).split(", "):
        name, size = part.rsplit(" ", 2)[0], " ".join(part.rsplit(" ", 2)[1:])
        assert size.replace(" GB", "") in section, (name, size)


def test_rates_from_a_bench_csv_of_both_capture_modes(tmp_path):
    """`dfg plan --rates FILE`: a `dfg bench --capture off,on --out FILE` CSV holds a row per mode; the
    plan counts the rows of the mode asked for (graph by default), and names the file and device."""
    head = "device,backbone,method,phase,capture,steps_per_s\n"
    rows = "".join(f"cuda,lenet5,{m},{ph},{mode},{r}\n" for m, ph, r_off, r_on in [
        ("original", "", 400.0, 4000.0), ("dfg", "", 30.0, 600.0)] for mode, r in (("off", r_off), ("graph", r_on)))
    f = tmp_path / "bench.csv"
    f.write_text(head + rows)
    rates, source = cost.load_rates(f)
    assert rates == {("lenet5", "original", ""): 4000.0, ("lenet5", "dfg", ""): 600.0}
    assert "bench.csv on cuda, capture graph" in source
    assert cost.load_rates(f, "off")[0][("lenet5", "dfg", "")] == 30.0
    params = load_params(ROOT / "params.yaml", "fmnist-full")
    params["run"]["methods"] = ["original", "dfg"]
    text = cost.report(params, str(ROOT / "params.yaml"), rates_file=f)
    # 5 x 40 000 / 4000 + 5 x 40 000 / 600 seconds
    assert f"total: {(5 * 40000 / 4000 + 5 * 40000 / 600) / 3600:.1f} GPU-h" in text
    with pytest.raises(DfgError, match="no rows with capture static"):
        cost.load_rates(f, "static")
    with pytest.raises(DfgError, match="cannot read the rates file"):
        cost.load_rates(tmp_path / "absent.csv")
