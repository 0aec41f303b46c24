"""Locating ``../shared``: tests that need it skip on a user's clone but FAIL when CI=true and it is missing."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def shared_root() -> Path | None:
    candidates = [os.environ.get("REFSR_SHARED"), str(ROOT.parent / "shared")]
    for candidate in candidates:
        if candidate and Path(candidate, "README.md").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path of the shared reference folder (data, golden values, fixtures, weights)."""
    root = shared_root()
    if root is None:
        if os.environ.get("CI") == "true":
            pytest.fail("../shared (or REFSR_SHARED) is missing, and CI=true requires it")
        pytest.skip("../shared not found; set REFSR_SHARED to run data-backed tests")
    return root


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(False)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """One torch intra-op thread for suites of many small convolutions: on a busy 2-core box two OpenMP
    threads spin-wait and were 2-50x slower; results differ by <= 1.2e-7 (fixture READMEs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
