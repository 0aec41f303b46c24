"""Method registry: cards by name, fnmatch listing, and building a method from its card's factory.

Built-in methods are the cards in ``methods.cards``; their modules are imported only when a method is built.
A user's own method is one file that calls ``register(card, factory)`` (a ``MethodCard`` and a callable
taking ``scale`` and ``device``); load it with ``refsr-bench ... --plugin FILE``. This module does not
import torch: listing and lookups read cards only.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from methods.cards import BUILTIN_CARDS, MethodCard
from protocols.errors import UserError
from protocols.registry import CardRegistry

if TYPE_CHECKING:
    from methods.base import Method

Factory = Callable[..., "Method"]

_CARDS: CardRegistry[MethodCard] = CardRegistry("method", BUILTIN_CARDS, lambda card: card.aliases)
_BUILTIN_NAMES = frozenset(card.name for card in BUILTIN_CARDS)
_ALIASES = _CARDS.aliases  # alias -> method name (the registry's own table)
_PLUGIN_FACTORIES: dict[str, Factory] = {}
_PLUGIN_FILES: list[Path] = []  # plugin files loaded in this process, in load order (part of a run's identity)


def register(card: MethodCard | str, factory: Factory) -> None:
    """Register a user method: its card and its factory (must not shadow a built-in name or alias).

    ``register("name", factory)`` (no card) is still accepted: the card is then read from one method the
    factory builds at scale 4 (its ``info``), so facts are available after that one build.
    """
    if isinstance(card, str):
        _CARDS.check_free(card)
        card = _card_from_built(card, factory)
    _CARDS.register(card)
    _PLUGIN_FACTORIES[card.name] = factory


def _card_from_built(name: str, factory: Factory) -> MethodCard:
    method = factory(scale=4, device="cpu")
    info = method.info
    return MethodCard(
        name=name,
        factory=f"{getattr(factory, '__module__', 'plugin')}:{getattr(factory, '__qualname__', 'factory')}",
        task="matcher" if info.task == "matching" else ("refsr" if "ref" in info.inputs else "sisr"),
        scales=(info.scale,),
        inputs=tuple(info.inputs),
        title=info.title,
        venue=info.venue,
        year=info.year,
        official_repo=info.official_repo if (info.official_repo or "").startswith("https://") else None,
        license=info.license,
        variant=info.variant,
        weights=tuple(info.weights),
        parts=dict(info.parts),
        lr_multiple=info.lr_multiple,
        trained=not getattr(method, "weights_loaded", False),
    )


def load_plugin(path: str | Path) -> None:
    """Import a user's method file; it is expected to call ``register``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plugin file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"refsr_plugin_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if path.resolve() not in _PLUGIN_FILES:
        _PLUGIN_FILES.append(path.resolve())


def plugin_files() -> list[Path]:
    """The plugin files loaded in this command (resolved paths, load order): part of a run's identity."""
    return list(_PLUGIN_FILES)


def forget_plugin_files() -> None:
    """Start a new command (``refsr-bench`` called in-process again): only its own ``--plugin`` files count."""
    _PLUGIN_FILES.clear()


def source_files(name: str, method: Method) -> list[Path]:
    """The own source modules of method ``name`` (as registered) built as ``method``: its factory's file and its
    class's file (sorted, unique); files that cannot be located (built-ins, C extensions) are left out."""
    found: set[Path] = set()
    for obj in (factory_of(card(name)), type(method)):
        try:
            source = inspect.getsourcefile(obj)
        except TypeError:
            continue
        if source:
            found.add(Path(source).resolve())
    return sorted(found)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching an fnmatch ``pattern``, sorted."""
    return _CARDS.names(pattern)


def cards(pattern: str = "*") -> list[MethodCard]:
    """Cards of the registered methods matching ``pattern`` (an alias also matches its method), by name."""
    return _CARDS.cards(pattern)


def card(name: str) -> MethodCard:
    """The card of a method by name or alias; an unknown name raises a UserError listing valid ones."""
    return _CARDS.lookup(name)


def resolve(pattern_or_names: list[str]) -> list[str]:
    """Expand names, aliases and fnmatch patterns; unknown names raise a UserError listing valid ones."""
    return _CARDS.expand(pattern_or_names)


def factory_of(method_card: MethodCard) -> Factory:
    """The callable that builds ``method_card``'s method (imports its module)."""
    if method_card.name in _PLUGIN_FACTORIES:
        return _PLUGIN_FACTORIES[method_card.name]
    module_path, function_name = method_card.factory.split(":")
    return getattr(importlib.import_module(module_path), function_name)  # type: ignore[no-any-return]


def create(name: str, **kwargs: Any) -> Method:
    """Build a method by name (alias accepted). Keyword arguments go to the factory (``scale``, ``device``)."""
    return factory_of(card(name))(**kwargs)
