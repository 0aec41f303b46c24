"""What ``refsr-bench verify`` prints and writes: the verdict table, ``verification.json`` (read by the report:
``reports.collect``) and a one-page ``verification.md``."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.engines.verify import Verification
from bench.results import rundir
from bench.results.bundle import Bundle, verification_dir

default_out_dir = verification_dir  # NAME.verification/ beside NAME.refsr.tar, where reports look

VERIFICATION_JSON = "verification.json"
VERIFICATION_MD = "verification.md"
ESCAPED_BAR = "\\|"  # a "|" inside a Markdown table cell


def _largest(verification: Verification) -> dict[str, dict[str, float]]:
    return {c.name: c.largest for c in verification.checks if c.largest}


def verdict_lines(verification: Verification) -> list[str]:
    """The verdict table, then one line per failure (``FAIL <check>: <what>``), then the verdict."""
    lines = [f"{'check':15s} {'result':7s} details"]
    for check in verification.checks:
        detail = check.summary or (check.failures[0] if check.failures else "")
        if check.largest:
            detail += "; largest |Δ| " + ", ".join(f"{m} {v:.3g}" for m, v in sorted(check.largest.items()))
        lines.append(f"{check.name:15s} {check.status:7s} {detail}")
    for check in verification.checks:
        lines += [f"FAIL {check.name}: {failure}" for failure in check.failures]
    lines.append("verdict: " + ("PASS (every check passed)" if verification.passed else "FAIL"))
    return lines


def verification_json(verification: Verification, bundle: Bundle) -> dict[str, Any]:
    claim = bundle.manifest.get("claim")
    claim = claim if isinstance(claim, dict) else {}
    return {
        "bundle": bundle.path.name,
        "bundle_sha256": bundle.sha256,
        "run_id": bundle.run_json.get("run_id"),
        "dataset": claim.get("dataset"),
        "preset": claim.get("preset"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "machine": verification.machine,
        "numeric_environment": verification.environments,
        "passed": verification.passed,
        "checks": [asdict(c) for c in verification.checks],
    }


def _markdown(data: dict[str, Any], lines: list[str]) -> str:
    machine = data["machine"]
    environments = data["numeric_environment"]
    text = [
        f"# Verification of {data['bundle']}",
        "",
        f"- verdict: **{'PASS' if data['passed'] else 'FAIL'}** ({data['date']})",
        f"- claim: {data['dataset']} under preset {data['preset']}, run_id {data['run_id']}",
        f"- bundle sha256: `{data['bundle_sha256']}`",
        f"- machine: {machine['device']}; {machine['model']}; torch {machine['torch']}; "
        f"suite {machine['suite_version']} (git {machine['git_sha'][:12]})",
        f"- numeric environment of the bundle: `{json.dumps(environments.get('bundle'), sort_keys=True)}`",
        f"- numeric environment here: `{json.dumps(environments.get('here'), sort_keys=True)}`",
        "",
        "| check | result | details |",
        "|---|---|---|",
    ]
    for check in data["checks"]:
        largest = ", ".join(f"{m} {v:.3g}" for m, v in sorted(check["largest"].items()))
        detail = check["summary"] + (f"; largest |Δ| {largest}" if largest else "")
        text.append(f"| {check['name']} | {check['status']} | {detail.replace('|', ESCAPED_BAR)} |")
    failures = [line for line in lines if line.startswith("FAIL ")]
    if failures:
        text += ["", "## Failures", "", *[f"- {line[5:]}" for line in failures]]
    return "\n".join(text) + "\n"


def write_verification(verification: Verification, bundle: Bundle, out_dir: Path) -> tuple[Path, Path]:
    """Write ``verification.json`` and ``verification.md`` into ``out_dir``; returns their paths."""
    rundir.check_out_dir(out_dir)
    rundir.make_out_dir(out_dir)
    data = verification_json(verification, bundle)
    json_path, md_path = out_dir / VERIFICATION_JSON, out_dir / VERIFICATION_MD
    rundir.write_atomic(json_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    rundir.write_atomic(md_path, _markdown(data, verdict_lines(verification)))
    return json_path, md_path
