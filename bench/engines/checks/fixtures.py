"""The fidelity fixtures of ``../shared/fixtures`` as code: the synthetic-weight rule and one runner per port.

The synthetic rule (``fixtures/README.md``, "Synthetic weight rule") is numpy only. ``PORT_FIXTURES`` says, per
port, which layouts and gain files fill which module, how the fixture inputs are fed to it, which output is
compared and the tolerance the fixture README justifies. The tests (``tests/synth.py``) and
``refsr-bench gpu-check`` share this module, so a port is checked the same way on CPU and on a GPU.

Every fixture input and output is float32 NCHW; channel order and range are the official forward's (each
fixture README states them: RGB [0, 1] for C²/CrossNet/CARN-M, RGB [-1, 1] for TTSR/SRNTT, BGR [-1, 1] for MASA).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from protocols.core import UserError

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "long": torch.int64}

# --------------------------------------------------------------------------------------------------
# the synthetic-weight rule


def read_layout(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """Rows (key, shape, dtype) of a ``layout*.tsv``; the optional header line is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("key\t"):
            continue
        key, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in shape.split(",") if d.strip() != "")
        rows.append((key, dims, dtype))
    return rows


def read_gains(path: Path | None) -> dict[str, float]:
    """``key<TAB>gain`` lines of a ``synth_overrides*.tsv`` (missing file: no gains)."""
    if path is None or not path.is_file():
        return {}
    gains = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and not line.startswith("key\t") and not line.startswith("#"):
            try:
                gains[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return gains


def synthetic_value(key: str, shape: tuple[int, ...], gain: float = 1.0) -> np.ndarray:
    """One state entry by the fixtures' rule (float64 maths, float32 result, C order)."""
    count = int(np.prod(shape)) if shape else 1
    phase = (zlib.crc32(key.encode("utf-8")) % 100000) / 100000 * 2 * np.pi
    b = np.sin(0.61803398875 * np.arange(count, dtype=np.float64) + phase)
    last = key.split(".")[-1]
    if key.endswith("running_var") or "std" in last:
        value = 0.5 + 0.25 * (b + 1)
    elif key.endswith("running_mean") or "mean" in last:
        value = 0.1 * b
    elif len(shape) >= 2:
        value = b / np.sqrt(np.prod(shape[1:]))
    elif len(shape) == 1 and key.endswith("weight"):
        value = 1 + 0.1 * b
    else:
        value = 0.05 * b
    value = value * gain
    return value.astype(np.float32).reshape(shape)


def synthetic_state_dict(
    layout: Path, overrides: Path | None = None, defaults: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """State dict built from a layout with the synthetic rule. Integer entries take ``defaults[key]``
    (the module's own default, e.g. ``num_batches_tracked``) or zero."""
    gains = read_gains(overrides)
    state: dict[str, torch.Tensor] = {}
    for key, shape, dtype in read_layout(layout):
        if dtype in ("int64", "long"):
            state[key] = (
                defaults[key].clone() if defaults and key in defaults else torch.zeros(shape, dtype=torch.int64)
            )
            continue
        state[key] = torch.from_numpy(synthetic_value(key, shape, gains.get(key, 1.0))).to(
            _DTYPES.get(dtype, torch.float32)
        )
    return state


def load_npz(path: Path) -> dict[str, torch.Tensor]:
    with np.load(path) as data:
        return {key: torch.from_numpy(data[key]) for key in data.files}


# --------------------------------------------------------------------------------------------------
# one runner per port

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class PortFixture:
    """How one port is checked against its fixture.

    ``method``: the registry name whose network the fixture exercises. ``build(folder, device)`` returns a
    callable that maps the fixture inputs (on ``device``) to the compared output. ``expected_key`` names the
    output in ``outputs.npz``. ``atol`` is the fixture README's suggested tolerance on that output, ``atol_why``
    says where it comes from. ``uses_deform_conv``: the port calls ``torchvision.ops.deform_conv2d``.
    """

    method: str
    folder: str
    expected_key: str
    atol: float
    atol_why: str
    build: Callable[[Path, str], Forward]
    uses_deform_conv: bool = False


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor], device: str) -> torch.nn.Module:
    module.load_state_dict(state, strict=True)
    return module.to(device).eval()


def _masa(folder: Path, device: str) -> Forward:
    from methods.masa import MASA

    net = _load(MASA(), synthetic_state_dict(folder / "layout.tsv", folder / "synth_overrides.tsv"), device)
    return lambda x: net(x["lr"], x["ref"], x["ref_down"])


def _ttsr(folder: Path, device: str) -> Forward:
    from methods.ttsr import TTSR

    net = _load(TTSR(), synthetic_state_dict(folder / "layout.tsv", folder / "synth_overrides.tsv"), device)
    return lambda x: net(x["lr"], x["lrsr"], x["ref"], x["refsr"])[0]


def _srntt(folder: Path, device: str) -> Forward:
    from methods.srntt import SRNTTPipeline

    state = synthetic_state_dict(folder / "layout.tsv", folder / "synth_overrides.tsv")
    vgg = synthetic_state_dict(folder / "layout_vgg.tsv", folder / "synth_overrides_vgg.tsv")
    net = _load(SRNTTPipeline(use_weights=False), {**state, **{f"vgg.{k}": v for k, v in vgg.items()}}, device)
    return lambda x: net(x["x"], x["img_in_up"], x["ref"], x["ref_blur"])[1]


def _c2_matching(folder: Path, device: str) -> Forward:
    from methods.base import load_state_dict_strict
    from methods.c2_matching import c2_matching_rec

    method = c2_matching_rec()
    for stem, attribute in (("restoration", "net_g"), ("extractor", "net_extractor"), ("vgg_map", "net_map")):
        state = synthetic_state_dict(folder / f"layout_{stem}.tsv", folder / f"synth_overrides_{stem}.tsv")
        load_state_dict_strict(getattr(method, attribute), state, stem)
    net = method.module.to(device).eval()
    return lambda x: net(x["img_in_lq"], x["img_in_up"], x["img_ref"])


def _crossnet(folder: Path, device: str) -> Forward:
    from methods.crossnet import MultiscaleWarpingNet

    net = _load(MultiscaleWarpingNet(), synthetic_state_dict(folder / "layout.tsv", folder / "synth_overrides.tsv"),
                device)
    return lambda x: net(input_img1_LR=x["input_img1_LR"], input_img1_SR=x["input_img1_SR"],
                         input_img2_HR=x["input_img2_HR"])


def _carn_m(folder: Path, device: str) -> Forward:
    """The one fixture with the REAL checkpoint: ``<shared>/weights/carn_m.pth`` (folder's grandparent)."""
    from methods.registry import create

    method = create("carn_m", scale=4, device=device)
    method.load_weights(folder.parent.parent / "weights" / "carn_m.pth")
    return lambda x: method.module(x["x"], 4)


PORT_FIXTURES: tuple[PortFixture, ...] = (
    PortFixture("c2_matching_rec", "c2_matching", "output", 1e-4,
                "C² tests use 1e-4 (README: exact indices; float32 vs float64 of the official code 7.2e-6)",
                _c2_matching, uses_deform_conv=True),
    PortFixture("carn_m", "carn_m", "output", 1e-5,
                "CARN-M README/test: real checkpoint, outputs within 1e-5", _carn_m),
    PortFixture("crossnet", "crossnet", "output", 1e-4,
                "README: float32 vs float64 of the official code <= 1.3e-5; suggested atol 1e-4", _crossnet),
    PortFixture("masa_rec", "masa", "output", 5e-5, "README: 'compare output with atol = 5e-5'", _masa),
    PortFixture("srntt", "srntt", "upscale_srntt", 5e-5,
                "README: float32 vs float64 of the port <= 2.3e-6; suggested atol 5e-5", _srntt),
    PortFixture("ttsr_rec", "ttsr", "sr", 2e-5, "README: hard index exact, then atol = 2e-5 for sr, T_*, S", _ttsr),
)


@dataclass(frozen=True)
class FixtureOutcome:
    """One port's fixture run: ``max_abs_diff`` of the compared output against ``outputs.npz``."""

    method: str
    device: str
    max_abs_diff: float
    atol: float
    atol_why: str
    output: torch.Tensor  # on the CPU, float32
    inputs: dict[str, torch.Tensor]  # on the CPU

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol


def fixture_folder(shared: Path, port: PortFixture) -> Path:
    folder = shared / "fixtures" / port.folder
    if not (folder / "inputs.npz").is_file():
        raise UserError(f"fixture {folder} not found; set REFSR_SHARED to the shared folder (it holds fixtures/)")
    return folder


def run_port_fixture(port: PortFixture, shared: Path, device: str, forward: Forward | None = None) -> FixtureOutcome:
    """Build the port (unless ``forward`` is given), feed the fixture inputs on ``device`` under
    ``torch.inference_mode``, compare the output with the fixture's."""
    folder = fixture_folder(shared, port)
    forward = forward or port.build(folder, device)
    inputs = load_npz(folder / "inputs.npz")
    with torch.inference_mode():
        output = forward({k: v.to(device) for k, v in inputs.items()}).float().cpu()
    expected = load_npz(folder / "outputs.npz")[port.expected_key]
    if output.shape != expected.shape:
        raise RuntimeError(f"{port.method}: output {tuple(output.shape)} != fixture {tuple(expected.shape)}")
    diff = float((output - expected).abs().max())
    return FixtureOutcome(port.method, device, diff, port.atol, port.atol_why, output, inputs)
