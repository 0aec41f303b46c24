"""Released SR outputs as a run-engine "method": ``refsr-bench run --outputs NAME=DIR``.

Authors release their SR images; this scores them exactly like a network's output. For every image and
reference policy the SR file is found by a name template (``--outputs-pattern``, or a built-in one chosen with
``--outputs-format``); ``ReleasedOutputs.load`` reads it instead of predicting, and the run engine scores it
with the one scoring path (``protocols.scoring.scored_levels`` / ``score_levels``).

Template placeholders (Python ``str.format``):
  ``{image}``   the dataset's image name (CUFED5 ``000``, WR-SR ``001``, Urban100 ``img_001``)
  ``{index}``   the image's 0-based position in the dataset's order (all images, whatever the shard);
                write ``{index:05d}`` for zero padding
  ``{level}``   CUFED5 level ``1``..``5`` for ``level:k`` policies, else the policy with ``:`` -> ``_``
  ``{policy}``  the reference policy with ``:`` -> ``_`` (``level_1``, ``pair``: the ``--save-images`` folders)
  ``{hr_stem}`` the HR file's name without extension (CUFED5 ``000_0``)

Accepted SR sizes: the size the preset scores (``Sample.hr``, after its crop/pad recipe), or the canvas the
network output has before the preset's crop (``Sample.lr`` x scale, cropped back by ``Sample.sr_crop`` exactly
as a network's output: MASA's centred padding, C²-Matching's bottom/right zero padding). Anything else, a
missing file, a file matching the template for an image the dataset lacks, a 16-bit, palette or alpha image
-> UserError (exit 2) naming the file. Files that match no template are ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from methods.base import MethodInfo
from protocols.core import Sample, UserError
from protocols.datasets import DatasetItem
from protocols.imageio import file_sha256, image_size, read_image
from protocols.resize import from_uint8_array
from protocols.spec import ProtocolSpec

METHOD_NAME = "released_outputs"  # MethodInfo.name of every released-outputs row (records carry NAME)
PLACEHOLDERS = ("image", "index", "level", "policy", "hr_stem")
_IDENTIFYING = ("image", "index", "hr_stem")
_ACCEPTED_MODES = ("RGB", "L")


@dataclass(frozen=True)
class OutputFormat:
    """A built-in template; ``{param}`` is replaced by the value after ``FORMAT:`` (``needs`` names it)."""

    template: str
    source: str
    needs: str = ""  # what {param} is, e.g. "experiment name"; "" = no parameter


FORMATS: dict[str, OutputFormat] = {
    "plain": OutputFormat("{image}.png", "one PNG per dataset image, named like it"),
    "saved": OutputFormat("{policy}/{image}.png", "this suite's --save-images layout (DIR = <run>/images/<NAME>)"),
    "c2matching": OutputFormat(
        "{image}_{param}.png",
        "yumingj/C2-Matching RefRestorationModel.nondist_validation: <image>_<opt name>.png (shared "
        "docs/sources.md); PARAM = the experiment name (`name` in the test YAML, e.g. C2_matching_mse)",
        needs="experiment name",
    ),
    "ttsr": OutputFormat(
        "save_results/{index:05d}.png",
        "researchmm/TTSR trainer.evaluate --eval_save_results: <save_dir>/save_results/<5-digit batch index>.png "
        "in dataset order (shared docs/sources.md); DIR = the --save_dir; the index counts from 0 (enumerate)",
    ),
    "masa": OutputFormat(
        "{image}.png",
        "UNVERIFIED: MASA-SR's test save name is not in the shared sources; assumed one PNG per image named like "
        "the input -- check your folder and use --outputs-pattern if it differs",
    ),
    "mmagic": OutputFormat(
        "{hr_stem}.png",
        "UNVERIFIED: not in the shared sources; assumed mmagic/mmediting's test --save-path naming, the GT file's "
        "stem (CUFED5 000_0.png -> 000_0.png) -- check your folder and use --outputs-pattern if it differs",
    ),
}


@dataclass(frozen=True)
class OutputsSource:
    """One ``--outputs NAME=DIR`` with its resolved template (``format``: the --outputs-format given, or
    ``pattern`` for an explicit --outputs-pattern)."""

    name: str
    folder: str
    pattern: str
    format: str


def resolve_template(format_text: str | None, pattern: str | None) -> tuple[str, str]:
    """(template, format label) from ``--outputs-format FORMAT[:PARAM]`` or ``--outputs-pattern``."""
    if pattern is not None:
        return pattern, "pattern"
    name, _, param = (format_text or "plain").partition(":")
    if name not in FORMATS:
        raise UserError(f"--outputs-format {name!r}: valid formats are {', '.join(FORMATS)}")
    spec = FORMATS[name]
    if spec.needs and not param:
        raise UserError(f"--outputs-format {name} needs the {spec.needs}: --outputs-format {name}:VALUE "
                        f"({spec.source})")
    if param and not spec.needs:
        raise UserError(f"--outputs-format {name} takes no parameter; got {param!r}")
    escaped = param.replace("{", "{{").replace("}", "}}")
    return spec.template.replace("{param}", escaped), format_text or "plain"


def _fields(pattern: str) -> list[tuple[str, str | None, str | None]]:
    """(literal, field, format spec) parts of a template; a UserError for an unusable template."""
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as error:
        raise UserError(f"--outputs-pattern {pattern!r}: {error}") from None
    for _, field, _, conversion in parts:
        if field is not None and field not in PLACEHOLDERS:
            raise UserError(f"--outputs-pattern {pattern!r}: unknown placeholder {{{field}}}; "
                            f"valid: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        if conversion:
            raise UserError(f"--outputs-pattern {pattern!r}: conversions (!r, !s) are not supported")
    return [(literal, field, spec) for literal, field, spec, _ in parts]


def check_template(pattern: str, policies: tuple[str, ...]) -> None:
    """The template names each image, names the level when several are run, and stays inside DIR."""
    fields = {field for _, field, _ in _fields(pattern) if field}
    if not fields & set(_IDENTIFYING):
        raise UserError(f"--outputs-pattern {pattern!r} must contain {{image}}, {{index}} or {{hr_stem}}")
    if len(policies) > 1 and not fields & {"level", "policy"}:
        raise UserError(f"--outputs-pattern {pattern!r}: {len(policies)} reference policies are run "
                        f"({', '.join(policies)}), so the template needs {{level}} or {{policy}}")
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        raise UserError(f"--outputs-pattern {pattern!r} must be a path inside the outputs folder")
    try:  # a format spec that cannot format the placeholder's value (e.g. {image:05d})
        pattern.format(image="x", index=0, level="1", policy="none", hr_stem="x")
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise UserError(f"--outputs-pattern {pattern!r} cannot be filled in: {error}") from None


def _template_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching every path the template can produce; named groups hold the placeholder values."""
    out, seen = [], set()
    for literal, field, _ in _fields(pattern):
        out.append(re.escape(literal))
        if field is None:
            continue
        if field in seen:
            out.append(f"(?P={field})")
            continue
        seen.add(field)
        out.append(f"(?P<{field}>\\d+)" if field == "index" else f"(?P<{field}>[^/]+?)")
    return re.compile("".join(out))


def _values(item: DatasetItem, index: int, policy: str) -> dict[str, Any]:
    level = policy.split(":", 1)[1] if policy.startswith("level:") else policy.replace(":", "_")
    hr_stem = item.hr.stem if isinstance(item.hr, Path) else item.name
    return {"image": item.name, "index": index, "level": level, "policy": policy.replace(":", "_"),
            "hr_stem": hr_stem}


class ReleasedOutputs:
    """A folder of SR images standing in for a method in a run: ``load`` returns the SR image of a sample
    instead of a prediction. ``files`` maps (image, policy) to the SR file; ``fingerprint`` is the sha256 of
    every file in the folder that the template assigns to an image of the dataset (the run identity)."""

    weights_loaded = True

    def __init__(self, source: OutputsSource, spec: ProtocolSpec, files: dict[tuple[str, str], Path],
                 fingerprint: dict[str, str]) -> None:
        self.source = source
        self.spec = spec
        self.files = files
        self.fingerprint = fingerprint
        self.info = MethodInfo(
            name=METHOD_NAME, title=f"released outputs: {source.folder}", venue="-", year=0, official_repo=None,
            variant=source.format, scale=spec.scale, inputs=("lr",), license="as released by the authors",
            choices={"pattern": source.pattern, "format": source.format, "folder": source.folder},
        )

    def identity(self) -> dict[str, Any]:
        """The part of the run identity this row contributes: template and every file's sha256."""
        return {"method": METHOD_NAME, "outputs": {"pattern": self.source.pattern, "files": self.fingerprint}}

    def provenance(self) -> dict[str, Any]:
        """What run.json and the report say about the folder."""
        return {"folder": str(Path(self.source.folder).resolve()), "format": self.source.format,
                "pattern": self.source.pattern, "files": len(self.fingerprint),
                "sha256_of_list": hashlib.sha256(repr(sorted(self.fingerprint.items())).encode()).hexdigest()}

    def load(self, sample: Sample, policy: str) -> tuple[torch.Tensor, Sample]:
        """(SR (1, 3, H, W) float32 RGB [0, 1] holding 8-bit levels, the sample to score it against). An SR of the
        scored size is scored as it is (no ``sr_crop``); one of the network-output canvas is cropped back by
        ``sample.sr_crop`` like a network's output."""
        path = self.files[(sample.name, policy)]
        sr = from_uint8_array(read_image(path, grey="replicate", high_bit_depth="reject"))
        hw = tuple(sr.shape[2:])
        scored = tuple(sample.hr.shape[2:])
        canvas = (sample.lr.shape[2] * self.spec.scale, sample.lr.shape[3] * self.spec.scale)
        if hw == scored:
            return sr, dataclasses.replace(sample, sr_crop=(0, 0, 0, 0))
        if hw == canvas:
            return sr, sample
        raise UserError(f"{path}: SR image is {hw[1]}x{hw[0]} px; preset {self.spec.name} scores "
                        f"{scored[1]}x{scored[0]} (or takes the {canvas[1]}x{canvas[0]} canvas before its crop) "
                        f"for {sample.name} under {policy}")


def _check_file(path: Path, allowed: list[tuple[int, int]], at_least: tuple[int, int] | None) -> None:
    """Header checks: 8-bit RGB or grey, and a size the preset can score."""
    h, w = image_size(path, "reject")  # 16-bit (grey or colour) and over-limit files fail here
    with Image.open(path) as image:
        mode = image.mode
    if mode not in _ACCEPTED_MODES:
        kind = "a palette" if mode == "P" else f"a mode-{mode}"
        raise UserError(f"{path} is {kind} image; SR outputs must be 8-bit RGB (or 8-bit grey) files")
    if (h, w) in allowed or (at_least is not None and h >= at_least[0] and w >= at_least[1]):
        return
    sizes = " or ".join(f"{b}x{a}" for a, b in dict.fromkeys(allowed))
    raise UserError(f"{path}: SR image is {w}x{h} px; the preset scores {sizes} for this image")


def _expected_sizes(item: DatasetItem, spec: ProtocolSpec, dataset: str
                    ) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """(sizes accepted, minimum size when the canvas depends on the reference: C²'s zero padding)."""
    file_hw = image_size(item.hr, spec.high_bit_depth) if isinstance(item.hr, Path) else item.hr.shape[:2]
    scored, degraded = spec.prepared_hw((int(file_hw[0]), int(file_hw[1])), dataset)
    s = spec.scale
    canvas = (degraded[0] // s * s, degraded[1] // s * s)
    at_least = scored if spec.hr_recipe == "zero_pad_to_common" else None
    return [scored, canvas], at_least


def prepare(source: OutputsSource, items: list[DatasetItem], spec: ProtocolSpec, dataset: str,
            policies: tuple[str, ...]) -> ReleasedOutputs:
    """Find, check and fingerprint ``source``'s files for every image of the dataset (``items``: all of them,
    in dataset order) and every reference policy; UserError naming the first problem."""
    folder = Path(source.folder)
    if not folder.is_dir():
        raise UserError(f"--outputs {source.name}={source.folder}: no such folder")
    check_template(source.pattern, policies)
    files: dict[tuple[str, str], Path] = {}
    for index, item in enumerate(items):
        for policy in policies:
            files[(item.name, policy)] = folder / source.pattern.format(**_values(item, index, policy))
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UserError(f"--outputs {source.name}: missing SR file(s) {', '.join(missing[:3])}{more} "
                        f"(template {source.pattern!r})")
    fingerprint = _fingerprint(source, folder, items, set(files.values()))
    for item in items:
        allowed, at_least = _expected_sizes(item, spec, dataset)
        for policy in policies:
            _check_file(files[(item.name, policy)], allowed, at_least)
    return ReleasedOutputs(source, spec, files, fingerprint)


def _fingerprint(source: OutputsSource, folder: Path, items: list[DatasetItem], expected: set[Path]
                 ) -> dict[str, str]:
    """sha256 of every file the template assigns to an image of the dataset; a file the template assigns to an
    image the dataset lacks is a UserError."""
    regex = _template_regex(source.pattern)
    specs = {field: spec for _, field, spec in _fields(source.pattern) if field}
    known = {
        "image": {item.name for item in items},
        "hr_stem": {_values(item, 0, "none")["hr_stem"] for item in items},
        "index": {format(i, specs.get("index") or "") for i in range(len(items))},
    }
    found: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        match = regex.fullmatch(relative)
        if match is None:
            continue  # another method's file, a log, ...: ignored
        groups = match.groupdict()
        strangers = [f"{field} {groups[field]!r}" for field in _IDENTIFYING
                     if field in groups and groups[field] not in known[field]]
        if strangers and path not in expected:
            raise UserError(f"{path}: matches the --outputs template {source.pattern!r} for "
                            f"{' and '.join(strangers)}, which the dataset does not have ({len(items)} images)")
        found[relative] = file_sha256(path)
    return found


def count_matches(folder: Path, pattern: str) -> int:
    """How many files under ``folder`` the template could have produced (0 when the folder holds none)."""
    regex = _template_regex(pattern)
    return sum(1 for p in folder.rglob("*") if p.is_file() and regex.fullmatch(p.relative_to(folder).as_posix()))
