"""CARN-M: official layout, strict loading of the real checkpoint (sha256 checked), fixture outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synth import assert_layout_equal

from methods.registry import create
from protocols.core import UserError


def test_layout_and_parameter_count(shared: Path) -> None:
    method = create("carn_m", scale=4)
    assert_layout_equal(method.module, shared / "fixtures" / "carn_m" / "layout.tsv")
    assert sum(p.numel() for p in method.module.parameters()) == 414_811


@pytest.mark.parametrize("scale,key", [(4, "output"), (2, "output_x2"), (3, "output_x3")])
def test_reproduces_official_outputs(shared: Path, scale: int, key: str) -> None:
    method = create("carn_m", scale=scale)
    method.load_weights(shared / "weights" / "carn_m.pth")
    inputs = np.load(shared / "fixtures" / "carn_m" / "inputs.npz")
    expected = np.load(shared / "fixtures" / "carn_m" / "outputs.npz")[key]
    got = method.predict(torch.from_numpy(inputs["x"])).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def test_intermediates_match(shared: Path) -> None:
    method = create("carn_m", scale=4)
    method.load_weights(shared / "weights" / "carn_m.pth")
    fixture = np.load(shared / "fixtures" / "carn_m" / "intermediates.npz")
    captured: dict[str, torch.Tensor] = {}
    for name in ("entry", "b1", "c3", "exit"):
        module = method.module.get_submodule(name)
        module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.clone()))
    method.predict(torch.from_numpy(np.load(shared / "fixtures" / "carn_m" / "inputs.npz")["x"]))
    assert np.abs(captured["exit"].numpy() - fixture["exit#0"]).max() < 1e-5
    for name in ("entry", "b1", "c3"):
        window = captured[name][:, :, 16:32, 16:32].numpy()
        assert np.abs(window - fixture[f"{name}#0__win"]).max() < 1e-5, name


def test_wrong_sha256_and_wrong_keys_are_clear_errors(tmp_path: Path, shared: Path) -> None:
    method = create("carn_m", scale=4)
    state = torch.load(shared / "weights" / "carn_m.pth", map_location="cpu", weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    del state["entry.bias"]
    broken = tmp_path / "carn_m.pth"
    torch.save(state, broken)
    with pytest.raises(UserError, match="sha256 mismatch"):
        method.load_weights(broken)
    from methods.base import load_state_dict_strict

    with pytest.raises(UserError, match=r"missing keys \(1\): entry.bias[\s\S]*unexpected keys \(1\): extra.weight"):
        load_state_dict_strict(method.module, state, "CARN-M")


def test_unsupported_scale_is_rejected() -> None:
    with pytest.raises(UserError, match="scales 2, 3, 4"):
        create("carn_m", scale=8)
