"""Method registry: name -> factory, with fnmatch listing and lazy imports.

Built-in methods are listed here by import path and imported only when used. A user's own method is
one file that calls ``register("my_method", factory)``; load it with ``refsr-bench ... --plugin FILE``.
A factory takes keyword arguments ``scale`` (int) and ``device`` (str) and returns a ``Method``.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from methods.base import Method
from protocols.core import UserError

Factory = Callable[..., Method]

_BUILTIN: dict[str, str] = {
    "bicubic": "methods.bicubic:bicubic",
    "bicubic_matlab": "methods.bicubic:bicubic_matlab",
    "bicubic_matlab_u8": "methods.bicubic:bicubic_matlab_u8",
    "carn_m": "methods.carn_m:carn_m",
    "masa_rec": "methods.masa:masa_rec",
    "masa_gan": "methods.masa:masa_gan",
    "ttsr_rec": "methods.ttsr:ttsr_rec",
    "ttsr_gan": "methods.ttsr:ttsr_gan",
    "srntt": "methods.srntt:srntt",
    "srntt_rec": "methods.srntt:srntt_rec",
    "c2_matching_rec": "methods.c2_matching:c2_matching_rec",
    "c2_matching_gan": "methods.c2_matching:c2_matching_gan",
    "crossnet": "methods.crossnet:crossnet",
    "ssen": "methods.ssen:ssen",
    "ssen_self": "methods.ssen:ssen_self",
    "ssen_baseline": "methods.ssen:ssen_baseline",
    "e2ent2": "methods.e2ent2:e2ent2",
    "refsr_net": "methods.refsr_net:refsr_net",
    "refsr_net_x4": "methods.refsr_net:refsr_net_x4",
    "zncc": "methods.classical:zncc",
    "zncc_blurry": "methods.classical:zncc_blurry",
    "patchmatch": "methods.classical:patchmatch",
    "dense_sift": "methods.classical:dense_sift",
    "dense_sift_blurry": "methods.classical:dense_sift_blurry",
}
# Short aliases the design and the papers use.
_ALIASES: dict[str, str] = {"masa": "masa_rec", "ttsr": "ttsr_rec", "c2_matching": "c2_matching_rec"}
_PLUGINS: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Register a user method under ``name`` (must not shadow a built-in)."""
    if name in _BUILTIN or name in _ALIASES:
        raise UserError(f"method name {name!r} is taken by a built-in method")
    _PLUGINS[name] = factory


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


def available_modules() -> set[str]:
    """Names of built-ins whose module exists in this checkout."""
    return {name for name, target in _BUILTIN.items() if importlib.util.find_spec(target.split(":")[0]) is not None}


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching an fnmatch ``pattern``, sorted."""
    names = available_modules() | set(_PLUGINS)
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def resolve(pattern_or_names: list[str]) -> list[str]:
    """Expand names, aliases and fnmatch patterns; unknown names raise a UserError listing valid ones."""
    resolved: list[str] = []
    for item in pattern_or_names:
        item = _ALIASES.get(item, item)
        hits = list_methods(item)
        if not hits:
            raise UserError(f"unknown method {item!r}; valid: {', '.join(list_methods())}")
        resolved.extend(h for h in hits if h not in resolved)
    return resolved


def create(name: str, **kwargs: Any) -> Method:
    """Build a method by name (alias accepted). Keyword arguments go to the factory (``scale``, ``device``)."""
    name = _ALIASES.get(name, name)
    if name in _PLUGINS:
        return _PLUGINS[name](**kwargs)
    if name not in available_modules():
        raise UserError(f"unknown method {name!r}; valid: {', '.join(list_methods())}")
    module_path, factory_name = _BUILTIN[name].split(":")
    factory: Factory = getattr(importlib.import_module(module_path), factory_name)
    return factory(**kwargs)
