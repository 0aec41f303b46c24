"""Contract test over every method card (like timm's model tests): the card's facts equal facts measured on
the built method (parameter count, scales accepted, reference required, parts called), predict runs at an odd
LR size, matchers match, and a synthetic state dict of the method's
own layout loads strictly. Sizes are tiny so that the whole file runs in well under a minute on 2 cores."""

from __future__ import annotations

import inspect
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from synth import synthetic_value

from methods import registry
from methods.base import load_state_dict_strict
from methods.cards import BUILTIN_CARDS, MethodCard, WeightFile
from protocols.core import UserError

ROOT = Path(__file__).resolve().parents[1]
LR_HW = (13, 11)  # odd on both sides, not a multiple of any network's block size
CARD_IDS = [card.name for card in BUILTIN_CARDS]


@pytest.fixture(scope="module")
def built() -> dict[str, object]:
    return {}


def _build(card: MethodCard, cache: dict[str, object]) -> object:
    if card.name not in cache:
        cache[card.name] = registry.factory_of(card)(scale=card.default_scale, device="cpu")
    return cache[card.name]


def _images(card: MethodCard) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, *LR_HW, generator=generator)
    s = card.default_scale
    ref = torch.rand(1, 3, s * LR_HW[0] - 6, s * LR_HW[1] + 2, generator=generator)  # not the HR size
    return lr, ref


def _accepted_scales(card: MethodCard, method: object) -> set[int]:
    """Scales 1..8 the factory builds, measured by trying each (a UserError = refused)."""
    accepted = set()
    for scale in range(1, 9):
        try:
            other = method if scale == card.default_scale else registry.factory_of(card)(scale=scale, device="cpu")
        except UserError:
            continue
        assert other.info.scale == scale  # type: ignore[attr-defined]
        accepted.add(scale)
    return accepted


def _needs_reference(method: object, lr: torch.Tensor) -> bool:
    """Measured: predict without a reference is refused with a UserError."""
    try:
        method.predict(lr, None)  # type: ignore[attr-defined]
    except UserError:
        return True
    return False


@pytest.mark.parametrize("name", CARD_IDS)
def test_card_facts_equal_facts_measured_from_the_built_method(name: str, built: dict[str, object]) -> None:
    """Each card fact against the same fact measured on the built module (not read back from ``info``)."""
    card = registry.card(name)
    method = _build(card, built)
    module = getattr(method, "module", None)
    count = 0 if module is None else sum(p.numel() for p in module.parameters())
    assert (count > 0) == card.trained
    if card.parameters is not None:
        assert count == card.parameters
    assert _accepted_scales(card, method) == {s for s in range(1, 9) if card.supports(s)}
    lr, _ = _images(card)
    if card.task != "matcher":
        assert _needs_reference(method, lr) == ("ref" in card.inputs)
        assert set(card.inputs) <= {"lr"} | set(inspect.signature(method.predict).parameters)  # type: ignore[attr-defined]
    assert callable(getattr(method, "match", None)) == card.has_match
    if card.parts:  # every part is a submodule of the cost graph whose forward (or a child's) really runs
        graph, inputs = method.cost_graph((16, 16), (64, 64))  # type: ignore[attr-defined]
        submodules = dict(graph.named_modules())
        assert set(card.parts.values()) <= set(submodules), sorted(set(card.parts.values()) - set(submodules))
        called: set[str] = set()
        hooks = [child.register_forward_hook(lambda *_, path=path: called.add(path))
                 for path in card.parts.values() for child in submodules[path].modules()]
        with torch.no_grad():
            graph(*inputs)
        for hook in hooks:
            hook.remove()
        assert called == set(card.parts.values())


@pytest.mark.parametrize("name", CARD_IDS)
def test_predict_or_match_at_an_odd_size(name: str, built: dict[str, object]) -> None:
    card = registry.card(name)
    method = _build(card, built)
    lr, ref = _images(card)
    if card.task != "matcher":
        sr = method.predict(lr, ref if card.needs_reference else None)  # type: ignore[attr-defined]
        s = card.default_scale
        assert tuple(sr.shape) == (1, 3, s * LR_HW[0], s * LR_HW[1])
        assert torch.isfinite(sr).all()
    if card.has_match:
        correspondence = method.match(lr, ref)  # type: ignore[attr-defined]
        assert tuple(correspondence.ref_yx.shape) == (*LR_HW, 2)
        assert tuple(correspondence.score.shape) == LR_HW


def _synthetic(key: str, like: torch.Tensor) -> torch.Tensor:
    if not like.is_floating_point():
        return like.clone()
    if like.numel() <= 4096:
        return torch.from_numpy(synthetic_value(key, tuple(like.shape)))
    return torch.full(like.shape, (zlib.crc32(key.encode()) % 1000 + 1) / 1e4, dtype=like.dtype)


@pytest.mark.parametrize("name", [c.name for c in BUILTIN_CARDS if c.trained])
def test_strict_load_of_a_synthetic_state_dict(name: str, built: dict[str, object], tmp_path: Path) -> None:
    card = registry.card(name)
    method = built.pop(name, None) or registry.factory_of(card)(scale=card.default_scale, device="cpu")
    own = method.module.state_dict()
    # every tensor of the module's own layout, filled with a key-dependent constant (large layouts stay fast;
    # tests.synth's full rule is used where the file is small)
    synthetic = {key: _synthetic(key, value) for key, value in own.items()}
    single_own_file = len(card.weights) <= 1 and all(w.sha256 is None for w in card.weights)
    if single_own_file:  # the method's own loader, on a file of its own layout
        path = tmp_path / (card.weights[0].file_name if card.weights else f"{name}.pth")
        torch.save(synthetic, path)
        method.load_weights(path)
        assert method.weights_loaded
    else:  # pinned sha256 (a synthetic file cannot match it) or several files: the module itself, strictly
        load_state_dict_strict(method.module, synthetic, name)
    key = next(k for k, v in synthetic.items() if v.is_floating_point() and v.numel() > 1)
    torch.testing.assert_close(method.module.state_dict()[key], synthetic[key], rtol=0, atol=0)


def test_every_builtin_url_is_a_real_https_source() -> None:
    for card in BUILTIN_CARDS:
        assert card.official_repo is None or card.official_repo.startswith("https://github.com/"), card.name
        for weight in card.weights:
            assert weight.url.startswith("https://"), (card.name, weight.file_name)
            assert " " not in weight.url, (card.name, weight.url)  # a URL, not a note
            if weight.source == "manual":
                assert weight.note, weight.file_name  # says where on the page the file is


def test_a_typo_in_a_factory_path_is_an_error_not_a_missing_method() -> None:
    typo = MethodCard(name="typo", factory="methods.bicubik:bicubic", task="sisr", scales=(4,), inputs=("lr",),
                      title="t", venue="-", year=0, official_repo=None, license="-")
    with pytest.raises(ModuleNotFoundError):
        registry.factory_of(typo)
    # and every built-in card's path resolves to a callable
    assert all(callable(registry.factory_of(card)) for card in BUILTIN_CARDS)


def test_plugin_card_registers_like_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    from methods.bicubic import bicubic

    monkeypatch.setattr(registry, "_CARDS", registry._CARDS.copy())
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    monkeypatch.setattr(registry, "_PLUGIN_FACTORIES", {})
    card = MethodCard(name="my_up", factory="plugin:my_up", task="sisr", scales=(4,), inputs=("lr",),
                      title="mine", venue="-", year=0, official_repo=None, license="MIT", aliases=("mu",),
                      trained=False, weights=(WeightFile("mine.pth", "https://example.org/mine.pth", None, "MIT"),))
    registry.register(card, lambda scale=4, device="cpu": bicubic(scale=scale))
    assert "my_up" in registry.list_methods() and registry.card("mu") is card
    assert registry.create("mu", scale=4).info.scale == 4
    with pytest.raises(UserError, match="taken by a built-in"):
        registry.register(MethodCard(**{**card.__dict__, "name": "bicubic", "aliases": ()}), bicubic)
    registry.register("legacy_up", lambda scale=4, device="cpu": bicubic(scale=scale))  # the old form
    assert registry.card("legacy_up").task == "sisr" and not registry.card("legacy_up").trained


def test_cards_and_registry_do_not_import_torch() -> None:
    code = "import sys, methods.registry, methods.weights; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
