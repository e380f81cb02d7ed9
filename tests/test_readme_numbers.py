"""The README's and the reproduction report's (docs/study.md) result tables are copied by hand from the
committed suites' table.csv: each cell must still say what the table says (mean ± std in %, two
decimals), so that a re-run suite or an edited page cannot drift apart silently. Every other number the
report quotes in its prose must appear in one of the generated tables it reads."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from dfg.report.runs import SELECTED, load_runs, method_labels

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r"\*{0,2}(\d+\.\d\d) ± (\d+\.\d\d)")
REPORT = ROOT / "docs" / "study.md"
#: What the report's prose numbers may come from: tables generated from the committed runs.
GENERATED = [ROOT / "results" / "fmnist-full" / "table.md", ROOT / "results" / "fmnist-full" / "table_extra.md",
             ROOT / "results" / "study" / "study.md"]
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
#: (page, suite, heading, table header start, metrics of its first columns)
TABLES = [
    ("README.md", "fmnist-full", "### The F-MNIST column at full length", "| method | final step", ["accuracy", SELECTED]),
    ("README.md", "demo", "### Ours", "| method | top-1 accuracy", ["accuracy", "minority_accuracy"]),
    ("docs/study.md", "fmnist-full", "## The F-MNIST column at full length", "| method | final step",
     ["accuracy", SELECTED]),
]


def page_table(text: str, heading: str, header_start: str) -> dict[str, list[str]]:
    """The rows (label -> cells) of the first table under `heading` whose header begins `header_start`,
    skipping separator and italic group rows; ' (addition)' is dropped from labels."""
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
    """label -> [(mean, std) as the pages print them, per metric] from results/<suite>/table.csv."""
    table = pd.read_csv(ROOT / "results" / suite / "table.csv").set_index(["method", "metric"])
    labels = method_labels(load_runs([ROOT / "results" / suite / "runs"]))
    return {label: [(f"{100 * table.loc[(m, k), 'mean']:.2f}", f"{100 * table.loc[(m, k), 'std']:.2f}")
                    for k in metrics]
            for m, label in labels.items()}


def table_mismatches(text: str, suite: str, heading: str, header: str, metrics: list[str]) -> list[str]:
    """Labels whose printed cells differ from table.csv, and rows missing or extra."""
    rows = page_table(text, heading, header)
    expected = suite_cells(suite, metrics)
    bad = sorted(set(rows) ^ set(expected))
    for label, cells in rows.items():
        printed = [m.groups() if (m := CELL.match(cell)) else None for cell in cells[:len(metrics)]]
        if label in expected and printed != expected[label]:
            bad.append(label)
    return bad


def prose_numbers(text: str) -> list[str]:
    """The decimal numbers of a Markdown page outside code blocks, inline code and tables (tables are
    checked cell by cell), signs dropped."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`]*`", "", text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    return DECIMAL.findall(text)


def generated_numbers() -> set[str]:
    return {n for path in GENERATED if path.is_file() for n in DECIMAL.findall(path.read_text())}


@pytest.mark.parametrize(("page", "suite", "heading", "header", "metrics"), TABLES)
def test_page_tables_match_the_committed_results(page: str, suite: str, heading: str, header: str,
                                                 metrics: list[str]) -> None:
    assert table_mismatches((ROOT / page).read_text(), suite, heading, header, metrics) == []


def test_every_number_of_the_report_comes_from_a_generated_table() -> None:
    quoted = prose_numbers(REPORT.read_text())
    assert len(quoted) > 20  # the report quotes numbers: this test checks something
    pool = generated_numbers()
    assert [n for n in quoted if n not in pool] == []


def test_a_one_digit_edit_of_the_report_is_caught() -> None:
    text = REPORT.read_text()
    _, suite, heading, header, metrics = TABLES[2]
    # a table cell: DFG's final step
    edited = text.replace("| DFG | 78.03 ± 2.63 |", "| DFG | 78.04 ± 2.63 |")
    assert edited != text
    assert table_mismatches(edited, suite, heading, header, metrics) == ["DFG"]
    # a number in the prose: the t-test p of DFG minus DELTA
    edited = text.replace("(t-test p 0.905)", "(t-test p 0.906)")
    assert edited != text
    assert [n for n in prose_numbers(edited) if n not in generated_numbers()] == ["0.906"]
