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

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # pytest -n: the workers share the cores instead of each taking all
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


def shared_root() -> Path | None:
    candidates = [os.environ.get("REFSR_SHARED"), str(ROOT.parent / "shared")]
    for candidate in candidates:
        if candidate and Path(candidate, "README.md").is_file():
            return Path(candidate)
    return None


SHARED_SKIP_REASON = "../shared not found; set REFSR_SHARED to run data-backed tests"


def in_ci() -> bool:
    """CI=true (.ci/run): a missing shared folder, system tool or fixture-matching Pillow fails instead of skipping."""
    return os.environ.get("CI") == "true"


def require_shared() -> Path:
    """``shared_root()``, or skip (fail under CI=true) with the one reason the run's summary counts."""
    root = shared_root()
    if root is None:
        if in_ci():
            pytest.fail("../shared (or REFSR_SHARED) is missing, and CI=true requires it")
        pytest.skip(SHARED_SKIP_REASON)
    return root


def skip_unless_ci(reason: str) -> None:
    """A skip for an environment mismatch (tool missing, other Pillow) that would hide a real failure in CI."""
    if in_ci():
        pytest.fail(f"{reason}; CI=true requires it (.ci/run and .ci/constraints.txt set it up)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path of the shared reference folder (data, golden values, fixtures, weights)."""
    return require_shared()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line for the data-backed tests skipped without ../shared (count and reason), whatever -r says."""
    skipped = terminalreporter.stats.get("skipped", [])
    count = sum(1 for report in skipped if SHARED_SKIP_REASON in str(report.longrepr))
    if count:
        terminalreporter.write_line(f"{count} data-backed tests skipped: {SHARED_SKIP_REASON}")


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


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Base URL of a local HTTP server serving ``local_http.ROUTES`` (the fetch tests)."""
    from local_http import serve

    httpd, url = serve()
    yield url
    httpd.shutdown()
    httpd.server_close()
