"""Fixtures shared by several test modules."""

import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread is faster and immune to other jobs competing for the cores.
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def project(tmp_path):
    """A copy of params.yaml, the schema and the suites in a temp dir, to edit freely (modules that need a
    whole project copy define their own `project`)."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "workflow" / "schemas", tmp_path / "workflow" / "schemas")
    shutil.copytree(ROOT / "workflow" / "suites", tmp_path / "workflow" / "suites", dirs_exist_ok=True)
    return tmp_path
