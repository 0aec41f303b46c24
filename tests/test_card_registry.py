"""The one card registry (``protocols.registry.CardRegistry``) under the method, dataset, metric, preset registries."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from protocols.core import UserError
from protocols.registry import CardRegistry


@dataclass(frozen=True)
class Widget:
    name: str
    aliases: tuple[str, ...] = ()


def _registry() -> CardRegistry[Widget]:
    return CardRegistry("widget", (Widget("beta", ("b",)), Widget("alpha")), lambda card: card.aliases)


def test_lookup_by_name_or_alias_and_unknown_names_list_the_valid_ones() -> None:
    registry = _registry()
    assert registry.lookup("b") is registry["beta"] and list(registry) == ["beta", "alpha"]  # table order kept
    with pytest.raises(UserError, match=r"^unknown widget 'gamma'; valid: alpha, beta$"):
        registry.lookup("gamma")


def test_plugins_may_not_shadow_a_builtin_name_or_alias() -> None:
    registry = _registry()
    for card in (Widget("alpha"), Widget("b"), Widget("new", ("beta",))):
        with pytest.raises(UserError, match="is taken by a built-in widget"):
            registry.register(card)
    registry.register(Widget("gamma", ("g",)))
    assert registry.lookup("g").name == "gamma" and registry.names("*a") == ["alpha", "beta", "gamma"]


def test_patterns_expand_in_first_seen_order_and_aliases_match() -> None:
    registry = _registry()
    assert registry.expand(["b", "a*", "beta"]) == ["beta", "alpha"]
    assert [card.name for card in registry.cards("b")] == ["beta"]  # the alias matches its card
    with pytest.raises(UserError, match="unknown widget 'z\\*'; valid: alpha, beta"):
        registry.expand(["z*"])


def test_a_copy_is_independent() -> None:
    registry = _registry()
    twin = registry.copy()
    twin.register(Widget("gamma", ("g",)))
    assert "gamma" not in registry and "g" not in registry.aliases and twin.builtin_names == registry.builtin_names


def test_the_four_public_registries_are_card_registries() -> None:
    from methods import registry as methods_registry
    from protocols.datasets import DATASETS, get_dataset
    from protocols.metrics import METRICS, get_metric
    from protocols.spec import PRESETS, get_preset

    for registry, kind in ((methods_registry._CARDS, "method"), (DATASETS, "dataset"), (METRICS, "metric"),
                           (PRESETS, "preset")):
        assert isinstance(registry, CardRegistry) and registry.kind == kind
    assert get_dataset("set5") is DATASETS["set5"] and get_metric("psnr_y") is METRICS["psnr_y"]
    assert get_preset("refsr") is PRESETS["refsr"] and methods_registry.card("masa").name == "masa_rec"
    for lookup, kind in ((get_dataset, "dataset"), (get_metric, "metric"), (get_preset, "preset"),
                         (methods_registry.card, "method")):
        with pytest.raises(UserError, match=f"^unknown {kind} 'nope'; valid: "):
            lookup("nope")
