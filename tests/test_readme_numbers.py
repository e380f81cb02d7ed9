"""The README's result tables are copied by hand from the committed suites' table.csv: each cell must
still say what the table says (mean ± std in %, two decimals), so that a re-run suite or an edited
README cannot drift apart silently."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from dfg.report.runs import SELECTED, load_runs, method_labels

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r"\*{0,2}(\d+\.\d\d) ± (\d+\.\d\d)")


def readme_table(heading: str, header_start: str) -> dict[str, list[str]]:
    """The rows (label -> cells) of the first table under `heading` whose header begins `header_start`,
    skipping separator and italic group rows; ' (addition)' is dropped from labels."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not cells[0].startswith("*"):
            rows[cells[0].removesuffix(" (addition)")] = cells[1:]
    return rows


def suite_cells(suite: str, metrics: list[str]) -> dict[str, list[tuple[str, str]]]:
    """label -> [(mean, std) as the README prints them, per metric] from results/<suite>/table.csv."""
    table = pd.read_csv(ROOT / "results" / suite / "table.csv").set_index(["method", "metric"])
    labels = method_labels(load_runs([ROOT / "results" / suite / "runs"]))
    return {label: [(f"{100 * table.loc[(m, k), 'mean']:.2f}", f"{100 * table.loc[(m, k), 'std']:.2f}")
                    for k in metrics]
            for m, label in labels.items()}


@pytest.mark.parametrize(("suite", "heading", "header", "metrics"), [
    ("fmnist-full", "### The F-MNIST column at full length", "| method | final step",
     ["accuracy", SELECTED]),
    ("demo", "### Ours", "| method | top-1 accuracy", ["accuracy", "minority_accuracy"]),
])
def test_readme_tables_match_the_committed_results(suite: str, heading: str, header: str,
                                                   metrics: list[str]) -> None:
    rows = readme_table(heading, header)
    expected = suite_cells(suite, metrics)
    assert set(rows) == set(expected)                                     # every method, no stray row
    for label, cells in rows.items():
        printed = [CELL.match(cell).groups() for cell in cells[:len(metrics)]]
        assert printed == expected[label], label
