"""``refsr-bench verify BUNDLE``: check a result bundle (``bench.results.bundle``) on this machine.

Checks, each passing or failing on its own and naming what failed:

- **integrity**: every member's sha256 against ``bundle.json``; ``records.csv`` against ``records.sha256``;
  ``run_id`` recomputed from run.json's identity (``rundir.run_id_of``) and carried by every record; the means
  in ``bundle.json`` recomputed from the records.
- **inputs**: the local dataset's files hashed and compared with ``inputs.csv`` (each missing, extra or
  different file named).
- **weights**: the local weight files' sha256 against the identity's.
- **rescoring**: each saved image (bundles made ``--with-images``) scored again with the preset's metrics,
  compared exactly with its records (presets that round only: their PNG is the exact scored array).
- **recomputation**: a seeded sample of groups (``--sample K``, ``--all``) run again through the run engine
  (``plan`` + ``evaluate_groups`` into a temporary folder) and compared with the records: **exact** (the
  6-decimal values equal) when the numeric environment matches the bundle's, else **within tolerance**
  (``TOLERANCES``) -- reported as such.

Numeric environment: torch version, intra-op threads, device model and the deterministic flags, as the run
identity records them (``bench.results.rundir.numeric_environment``).

Tolerances across numeric environments (``TOLERANCES``) are 10x the largest difference measured between
environments: CARN-M (official weights), preset sisr_std, Set5 + Set14 (19 images), run under 1 and under 2
torch threads on this suite's 2-core CPU machine (torch 2.x): 16 of 19 PSNR-Y values and 2 of 19 SSIM-Y values
differ, the largest |Δ| being 1.7e-5 dB PSNR-Y (Set5) and 1e-6 SSIM-Y (one step of the 6-decimal records).
A difference in device model, torch version or deterministic flags was not measured here (no GPU was
available): recomputation then fails with "no tolerance was measured", reporting the largest |Δ| unjudged.
"""

from __future__ import annotations

import csv
import io
import math
import random
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.engines.run.evaluate import evaluate_groups
from bench.engines.run.plan import Group, Plan, RunConfig, plan
from bench.results import provenance, rundir
from bench.results.bundle import (
    ALL_CHECKS,
    CHECKSUM_FILE,
    FORMAT,
    IMAGES,
    MANIFEST,
    Bundle,
    bundle_means,
    sha256_bytes,
)
from bench.results.records import RANDOM_WEIGHTS_TAG, Record, RecordAppender, format_value, read_journal
from protocols.errors import UserError
from protocols.pipeline import make_sample
from protocols.scoring import score_levels

CHECKS = ALL_CHECKS
DEFAULT_SAMPLE = 3
MEASURED_MAX_DIFFERENCE = {"psnr": 1.7e-5, "ssim": 1e-6}  # see the module docstring (1 vs 2 CPU threads)
TOLERANCE_FACTOR = 10.0
# per metric family (psnr_*: dB; ssim_*: SSIM units): 1.7e-4 dB and 1e-5
TOLERANCES = {family: TOLERANCE_FACTOR * value for family, value in MEASURED_MAX_DIFFERENCE.items()}


@dataclass
class Check:
    """One check's outcome: ``status`` pass, fail or n/a (not applicable to this bundle)."""

    name: str
    status: str = "pass"
    summary: str = ""
    failures: list[str] = field(default_factory=list)
    largest: dict[str, float] = field(default_factory=dict)  # metric -> largest |Δ| seen
    mode: str = ""  # recomputation: "exact" or "within tolerance"

    def fail(self, message: str) -> None:
        self.status = "fail"
        self.failures.append(message)


@dataclass(frozen=True)
class VerifyOptions:
    data_root: str | None = None
    weights: tuple[str, ...] | None = None
    sample: int | None = DEFAULT_SAMPLE  # None: every group
    seed: int = 0
    device: str = "cpu"
    checks: tuple[str, ...] = CHECKS


@dataclass
class Verification:
    checks: list[Check]
    machine: dict[str, Any]
    environments: dict[str, Any]  # "bundle" and "here" numeric environments

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)


def tolerance_for(metric: str) -> float | None:
    family = metric.split("_", 1)[0]
    return TOLERANCES.get(family)


# --- numeric environment --------------------------------------------------------------------------


def numeric_environment(run_json: dict[str, Any]) -> dict[str, Any]:
    """What the values' last bits depend on, as the run identity records it (``bench.results.rundir``'s
    ``numeric``: torch version, intra-op threads, device model, deterministic flags)."""
    numeric: dict[str, Any] = run_json["identity"]["numeric"]  # checked by structure_problems
    return numeric


def local_numeric_environment(device: str, determinism: dict[str, Any]) -> dict[str, Any]:
    """This process's numeric environment, in the identity's form (call it after the run's threads are set)."""
    return rundir.numeric_environment(device, determinism)


def environment_differences(bundle_env: dict[str, Any], here: dict[str, Any]) -> list[str]:
    return [f"{key} {bundle_env.get(key)!r} -> {here.get(key)!r}" for key in sorted(set(bundle_env) | set(here))
            if bundle_env.get(key) != here.get(key)]


# --- integrity ------------------------------------------------------------------------------------


def check_integrity(bundle: Bundle, temp_dir: Path) -> tuple[Check, list[Record]]:
    """The integrity check, and the records when they could be read."""
    check = Check("integrity")
    manifest = bundle.manifest
    if manifest.get("format") != FORMAT:
        check.fail(f"{MANIFEST}: missing or not a {FORMAT} manifest")
        return check, []
    listed: dict[str, str] = manifest.get("members") or {}
    for name in sorted((set(listed) | set(bundle.members)) - {MANIFEST}):
        if name not in bundle.members:
            check.fail(f"{name}: listed in {MANIFEST} but missing from the bundle")
        elif name not in listed:
            check.fail(f"{name}: in the bundle but not listed in {MANIFEST}")
        elif sha256_bytes(bundle.members[name]) != listed[name]:
            check.fail(f"{name}: sha256 differs from {MANIFEST}")
    records_bytes = bundle.members.get("records.csv", b"")
    recorded_sha = bundle.members.get(CHECKSUM_FILE, b"").decode(errors="replace").strip()
    records_intact = sha256_bytes(records_bytes) == recorded_sha
    if not records_intact:
        check.fail(f"records.csv: does not match {CHECKSUM_FILE} (a record was changed)")
    run_json = bundle.run_json
    identity = run_json.get("identity")
    recorded = run_json.get("run_id")
    if not isinstance(identity, dict):
        check.fail("run.json identity: missing")
    elif rundir.run_id_of(identity) != recorded:
        check.fail(f"run.json identity: run_id recomputed from it is {rundir.run_id_of(identity)}, "
                   f"run.json says {recorded} (the identity was changed)")
    if manifest.get("run_id") != recorded:
        check.fail(f"{MANIFEST} run_id {manifest.get('run_id')} != run.json run_id {recorded}")
    try:
        records = bundle.records(temp_dir)
    except (UserError, KeyError) as error:
        check.fail(f"records.csv: unreadable ({error})")
        return check, []
    strangers = sorted({r.run_id for r in records} - {recorded})
    if strangers:
        check.fail(f"records.csv: rows carry run_id {', '.join(strangers)}, run.json says {recorded}")
    if records_intact:  # means of changed records would only repeat that failure
        _check_means(check, manifest, records)
    if check.status == "pass":
        check.summary = (f"{len(bundle.members)} members, {CHECKSUM_FILE}, run_id {recorded}, "
                         f"{len(bundle_means(records))} means")
    return check, records


def _check_means(check: Check, manifest: dict[str, Any], records: list[Record]) -> None:
    claimed: dict[str, float] = (manifest.get("claim") or {}).get("means") or {}
    actual = bundle_means(records)
    for key in sorted(set(claimed) | set(actual)):
        if claimed.get(key) != actual.get(key):
            check.fail(f"{MANIFEST} means: {key.replace('|', ' ')} is {claimed.get(key)} there, "
                       f"the records give {actual.get(key)}")


# --- inputs and weights ---------------------------------------------------------------------------


def check_inputs(bundle: Bundle, work: Plan) -> Check:
    check = Check("inputs")
    rows = list(csv.reader(io.StringIO(bundle.members.get("inputs.csv", b"").decode(errors="replace"))))[1:]
    bundled = {(r[0], r[1], r[2]): r[3] for r in rows if len(r) == 4}
    local = {(r[0], r[1], r[2]): r[3] for r in work.inputs}
    for key in sorted(set(bundled) | set(local), key=lambda k: (k[2], k[0], k[1])):
        where = f"{key[2]} ({key[0]}, {key[1]})"
        if key not in local:
            check.fail(f"{where}: in inputs.csv, missing here")
        elif key not in bundled:
            check.fail(f"{where}: here, not in inputs.csv (extra file)")
        elif local[key] != bundled[key]:
            check.fail(f"{where}: sha256 differs ({local[key][:12]} here, {bundled[key][:12]} in the bundle)")
    if check.status == "pass":
        check.summary = f"{len(local)} files under {work.data_folder} match inputs.csv"
    return check


def check_weights(bundle: Bundle, work: Plan) -> Check:
    check = Check("weights")
    local = {entry["method"]: entry["weights"] for entry in work.identity["methods"].values()}
    checked = []
    for record_name, entry in sorted((bundle.run_json.get("identity") or {}).get("methods", {}).items()):
        here = {w["file"]: w["sha256"] for w in local.get(entry.get("method"), [])}
        for weight in entry.get("weights", []):
            name = weight.get("file")
            if here.get(name) is None:
                check.fail(f"{record_name}: weight file {name} not found here (pass --weights)")
            elif here[name] != weight.get("sha256"):
                check.fail(f"{record_name}: weight file {name} sha256 differs ({here[name][:12]} here, "
                           f"{str(weight.get('sha256'))[:12]} in the bundle)")
            else:
                checked.append(f"{record_name}: {name}")
    check.summary = ", ".join(checked) if checked else "no weight files (methods without learned parameters)"
    return check


# --- rescoring and recomputation ------------------------------------------------------------------


def _compare(check: Check, where: str, recorded: dict[str, float], values: dict[str, float], exact: bool) -> None:
    for metric, value in values.items():
        if metric not in recorded:
            check.fail(f"{where}: no {metric} record")
            continue
        if np.isfinite(value) and np.isfinite(recorded[metric]):
            difference = abs(value - recorded[metric])
        else:  # inf (identical images) or nan: equal as written in records.csv, or infinitely far apart
            difference = 0.0 if format_value(value) == format_value(recorded[metric]) else math.inf
        check.largest[metric] = max(check.largest.get(metric, 0.0), difference)
        tolerance = tolerance_for(metric)
        if exact or tolerance is None:
            if format_value(value) != format_value(recorded[metric]):
                extra = "" if exact else " (no tolerance measured for this metric)"
                check.fail(f"{where} {metric}: {format_value(value)} here, {format_value(recorded[metric])} "
                           f"in the bundle{extra}")
        elif difference > tolerance:
            check.fail(f"{where} {metric}: {format_value(value)} here, {format_value(recorded[metric])} in the "
                       f"bundle, |Δ| {difference:.3g} > tolerance {tolerance:g}")


def _by_group(records: list[Record]) -> dict[tuple[str, str, str], dict[str, float]]:
    groups: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in records:
        groups.setdefault((r.method, r.reference, r.image), {})[r.metric] = r.value
    return groups


def check_rescoring(bundle: Bundle, records: list[Record], config: RunConfig, work: Plan) -> Check:
    check = Check("rescoring")
    names = sorted(n for n in bundle.members if n.startswith(IMAGES + "/"))
    if not names:
        return Check("rescoring", "n/a", "the bundle carries no images (bundle --with-images)")
    if work.spec.sr_quantisation not in ("clamp_round", "round"):
        return Check("rescoring", "n/a", f"preset {work.spec.name} does not round, so a PNG is not the scored array")
    groups = _by_group(records)
    policies = {p.replace(":", "_"): p for p in work.policies}
    items = {item.name: item for item in work.items}
    for name in names:
        parts = name.split("/")
        image = parts[-1].removesuffix(".png")
        if len(parts) != 4 or parts[2] not in policies or image not in items:
            check.fail(f"{name}: names no group of this run")
            continue
        policy = policies[parts[2]]
        try:
            levels = np.asarray(Image.open(io.BytesIO(bundle.members[name]))).astype(np.float64)
            levels = levels[:, :, None] if levels.ndim == 2 else levels
            values = score_levels(levels, make_sample(items[image], work.spec, config.dataset, policy), work.spec)
        except (ValueError, OSError) as error:  # PIL's UnidentifiedImageError is an OSError
            check.fail(f"{name}: cannot be scored ({error})")
            continue
        _compare(check, name, groups.get((parts[1], policy, image), {}), values, exact=True)
    if check.status == "pass":
        check.summary = f"{len(names)} images re-scored, every value exact"
    return check


def chosen_groups(records: list[Record], sample: int | None, seed: int) -> list[tuple[str, str, str]]:
    """The (method, reference, image) groups to recompute: all, or a seeded sample of ``sample``."""
    keys = sorted({(r.method, r.reference, r.image) for r in records})
    if sample is None or sample >= len(keys):
        return keys
    return sorted(random.Random(seed).sample(keys, sample))


def check_recomputation(records: list[Record], config: RunConfig, work: Plan, options: VerifyOptions,
                        differences: list[str], run_id: str) -> Check:
    exact = not differences
    unmeasured = [d for d in differences if not d.startswith("threads ")]
    check = Check("recomputation", mode="exact" if exact else "within tolerance")
    if unmeasured:  # the tolerances come from thread-count changes only; another device or torch is not judged
        check.fail(f"no tolerance was measured for this difference ({'; '.join(unmeasured)}): only thread "
                   "counts were (1 vs 2 CPU threads); the largest |Δ| is reported, not judged")
    keys = chosen_groups(records, options.sample, options.seed)
    methods = {name.replace(RANDOM_WEIGHTS_TAG, ""): i for i, (_, name) in enumerate(work.methods)}
    items = {item.name: i for i, item in enumerate(work.items)}
    groups: list[Group] = []
    for method, policy, image in keys:
        if method.replace(RANDOM_WEIGHTS_TAG, "") not in methods or image not in items or policy not in work.policies:
            check.fail(f"{method} {policy} {image}: not a group this suite can plan from the bundle")
            continue
        groups.append((policy, items[image], methods[method.replace(RANDOM_WEIGHTS_TAG, "")]))
    appender = RecordAppender(config.out_dir / "records.csv", work.spec.metrics, run_id)
    evaluate_groups(config, work, run_id, groups, appender)
    recorded = _by_group(records)
    fresh = _by_group([r for group in read_journal(appender.path)[0] for r in group])
    for (method, policy, image), values in sorted(fresh.items()):
        key = (method, policy, image) if (method, policy, image) in recorded else (method + RANDOM_WEIGHTS_TAG,
                                                                                  policy, image)
        _compare(check, f"{key[0]} {policy} {image}", recorded.get(key, {}), values, exact)
    total = len({(r.method, r.reference, r.image) for r in records})
    how = "exact" if exact else "within tolerance (numeric environment differs: " + "; ".join(differences) + ")"
    check.summary = f"{len(groups)} of {total} groups re-run (seed {options.seed}), {how}"
    return check


# --- the whole verification -----------------------------------------------------------------------


def _config(bundle: Bundle, options: VerifyOptions, out_dir: Path) -> RunConfig:
    run_json = bundle.run_json
    identity = run_json.get("identity") or {}
    methods = tuple(sorted({entry.get("method", name) for name, entry in identity.get("methods", {}).items()}))
    return RunConfig(dataset=str(identity.get("dataset", "")), preset=str((identity.get("preset") or {}).get("name")),
                     methods=methods, out_dir=out_dir, data_root=options.data_root, weights=options.weights,
                     device=options.device, reference_policies=tuple(identity.get("reference_policies", [])),
                     allow_random_weights=True, show_progress=False)


def structure_problems(bundle: Bundle) -> list[str]:
    """What makes ``run.json`` or ``bundle.json`` unfit to read (a crafted or damaged bundle), as integrity
    failures: the identity, its methods and the claim must be JSON objects."""
    identity = bundle.run_json.get("identity")
    problems = []
    if not isinstance(identity, dict):
        problems.append("run.json: the identity is not a JSON object")
    elif not isinstance(identity.get("methods"), dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("weights", []), list)
            for entry in identity["methods"].values()):
        problems.append("run.json: identity.methods is not an object of method entries")
    elif not isinstance(identity.get("numeric"), dict):
        problems.append("run.json: the identity holds no numeric environment (a bundle of an older suite)")
    claim = bundle.manifest.get("claim")
    if not isinstance(claim, dict) or not isinstance(claim.get("means", {}), dict):
        problems.append(f"{MANIFEST}: the claim is not a JSON object with a means object")
    return problems


def verify(bundle: Bundle, options: VerifyOptions) -> Verification:
    """Run the selected checks on ``bundle`` (a UserError when the bundle cannot be planned here, e.g. the
    dataset is not found: the message says which option to pass)."""
    machine_environments: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="refsr-verify-") as temp:
        malformed = structure_problems(bundle)
        if malformed:  # a crafted or damaged bundle: nothing below may trust its shape
            checks = [Check("integrity", "fail", failures=malformed)]
        else:
            integrity, records = check_integrity(bundle, Path(temp))
            checks = [integrity] if "integrity" in options.checks else []
            if set(options.checks) - {"integrity"}:
                machine_environments["bundle"] = numeric_environment(bundle.run_json)
                checks += _planned_checks(bundle, records, options, Path(temp), machine_environments)
    machine = {"device": provenance.device_name(options.device), "model": provenance.device_model(options.device),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "suite_version":
               rundir.suite_version(), "git_sha": provenance.git_sha()}
    return Verification(checks, machine, machine_environments)


def _planned_checks(bundle: Bundle, records: list[Record], options: VerifyOptions, temp: Path,
                    environments: dict[str, Any]) -> list[Check]:
    config = _config(bundle, options, temp / "rerun")
    try:
        work = plan(config)
    except UserError as error:
        raise UserError(f"{error} (to check the bundle without its data: --checks integrity)") from None
    environments["here"] = local_numeric_environment(options.device, work.determinism)
    differences = environment_differences(environments["bundle"], environments["here"])
    checks = []
    inputs = check_inputs(bundle, work)
    weights = check_weights(bundle, work)
    checks += [c for c in (inputs, weights) if c.name in options.checks]
    preset = (bundle.run_json.get("identity") or {}).get("preset")
    if "rescoring" in options.checks:
        checks.append(check_rescoring(bundle, records, config, work) if inputs.status != "fail" else
                      _not_run("rescoring", [inputs], options))
    if "recomputation" in options.checks:
        if preset != work.identity["preset"]:
            fields = sorted(k for k in set(preset or {}) | set(work.identity["preset"])
                            if (preset or {}).get(k) != work.identity["preset"].get(k))
            checks.append(Check("recomputation", "fail", failures=[
                f"run.json identity: preset {config.preset} differs from this suite's spec of that name "
                f"in {', '.join(fields)} (another suite version, or a changed identity)"]))
        elif inputs.status == "fail" or weights.status == "fail" or not records:
            checks.append(_not_run("recomputation", [inputs, weights], options))
        else:
            rundir.make_out_dir(config.out_dir)
            run_id = str(bundle.run_json.get("run_id"))
            checks.append(check_recomputation(records, replace(config, save_images=False), work, options,
                                              differences, run_id))
    return checks


def _not_run(name: str, prerequisites: list[Check], options: VerifyOptions) -> Check:
    """A check skipped because a prerequisite failed: n/a when that failure is reported, else a failure
    naming it (a skipped check must not pass silently)."""
    failed = [c for c in prerequisites if c.status == "fail"]
    if failed and all(c.name in options.checks for c in failed):
        return Check(name, "n/a", f"not run: {', '.join(c.name for c in failed)} failed above")
    reasons = [f"{c.name}: {c.failures[0]}" for c in failed] or ["the bundle has no readable records"]
    return Check(name, "fail", failures=[f"not run: {'; '.join(reasons)}"])
