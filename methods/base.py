"""The method interface: metadata, the ``Method`` protocol, and strict checkpoint loading.

A method is one small wrapper object with
- ``info: MethodInfo`` -- frozen metadata (paper, variant, scale, weights, parts);
- ``module: torch.nn.Module`` -- the whole network, with the OFFICIAL submodule names so that official
  checkpoints load with ``strict=True``; its ``forward`` takes the official arguments;
- ``predict(lr, ref=None, ref_lr=None) -> sr`` -- RGB [0, 1] tensors in and out, every official
  convention (BGR, [-1, 1], padding, LR↑ / Ref↓↑ generation) handled inside and undone;
- ``match(lr, ref) -> Correspondence`` -- only for methods with an explicit correspondence step (the
  ``Matcher`` protocol, defined once in ``protocols.core`` and re-exported here);
- ``load_weights(path)`` -- official checkpoint format, sha256 verified when known.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from methods.cards import MethodCard, WeightFile
from protocols.core import Matcher, UserError

__all__ = [
    "Matcher",
    "Method",
    "MethodInfo",
    "WeightFile",
    "info_from_card",
    "load_state_dict_strict",
    "read_checkpoint",
]


@dataclass(frozen=True)
class MethodInfo:
    """Frozen metadata of one registered method variant.

    ``parts`` maps a role (``matching``, ``extractor``, ``backbone``, ``alignment``...) to a dotted
    submodule path of ``module``; role ``matching`` is what FLOPS-M counts. ``choices`` records every
    configuration decision the paper leaves open (name -> what we chose and why).
    """

    name: str
    title: str
    venue: str
    year: int
    official_repo: str | None
    variant: str
    scale: int
    inputs: tuple[str, ...]
    license: str
    weights: tuple[WeightFile, ...] = ()
    parts: Mapping[str, str] = field(default_factory=dict)
    choices: Mapping[str, str] = field(default_factory=dict)
    lr_multiple: int = 1  # predict() accepts any LR size; this is what the network itself needs
    task: str = "sr"  # "sr": has predict(); "matching": a correspondence-only matcher (predict raises)

    @property
    def needs_reference(self) -> bool:
        return "ref" in self.inputs


def info_from_card(
    card: MethodCard, *, scale: int, choices: Mapping[str, str] | None = None, lr_multiple: int | None = None
) -> MethodInfo:
    """The ``MethodInfo`` of a method built at ``scale``: every fact from ``card`` (one place), plus the
    configuration ``choices`` the factory made. ``lr_multiple`` overrides the card's where the factory
    was configured differently."""
    if not card.supports(scale):
        raise UserError(f"{card.name} supports scales {card.scales_text()}; got {scale}")
    return MethodInfo(
        name=card.name,
        title=card.title,
        venue=card.venue,
        year=card.year,
        official_repo=card.official_repo,
        variant=card.variant,
        scale=scale,
        inputs=card.inputs,
        license=card.license,
        weights=card.weights,
        parts=dict(card.parts),
        choices=dict(choices or {}),
        lr_multiple=card.lr_multiple if lr_multiple is None else lr_multiple,
        task="matching" if card.task == "matcher" else "sr",
    )


@runtime_checkable
class Method(Protocol):
    info: MethodInfo
    module: torch.nn.Module
    weights_loaded: bool

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(1, 3, h, w) RGB [0, 1] float32 -> (1, 3, s*h, s*w) RGB float32 (not clamped, not rounded)."""
        ...

    def load_weights(self, path: str | Path) -> None:
        """Load the official checkpoint file(s); ``path`` is a file or a folder holding the official file names."""
        ...

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        """A module whose ``forward(*inputs)`` runs the whole inference network once, and example inputs
        (official order, range and channel order) for an LR of ``lr_hw`` and a Ref of ``ref_hw`` pixels.
        Used by the cost tools (fvcore tracing, latency); ``info.parts`` paths are relative to this module."""
        ...


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(
    path: str | Path, *, sha256: str | None = None, container_keys: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Read an official checkpoint with ``weights_only=True`` and return a flat state_dict.

    ``container_keys``: keys under which the official code nests the weights (e.g. ``("params",)`` for
    BasicSR-style files); the first one present is used. A leading ``module.`` (DataParallel) is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if sha256 is not None:
        got = sha256_of(path)
        if got != sha256:
            raise UserError(
                f"sha256 mismatch for {path}: expected {sha256}, got {got}. "
                "The file is corrupt or not the official checkpoint; fetch it again with "
                "`refsr-bench weights fetch NAME`."
            )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for non-checkpoint files
        raise UserError(f"cannot read checkpoint {path}: {error}") from error
    if isinstance(loaded, Mapping):
        for key in container_keys:
            if key in loaded and isinstance(loaded[key], Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        what = f"top-level keys: {list(loaded)[:8]}" if isinstance(loaded, Mapping) else f"a {type(loaded).__name__}"
        raise UserError(f"{path} does not hold a state_dict of tensors ({what})")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in loaded.items()}


def load_state_dict_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error naming missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or mis_shaped:

        def listing(title: str, keys: list[str]) -> str:
            shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
            return f"\n  {title} ({len(keys)}): {shown}" if keys else ""

        raise UserError(
            f"checkpoint does not match the {what} layout:"
            + listing("missing keys", missing)
            + listing("unexpected keys", unexpected)
            + listing("shape mismatches", mis_shaped)
        )
    module.load_state_dict(dict(state), strict=True)


def check_image_tensor(name: str, image: torch.Tensor) -> None:
    """Raise a UserError unless ``image`` is a float (1, 3, H, W) tensor."""
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3 or not image.is_floating_point():
        raise UserError(f"{name} must be a float tensor of shape (1, 3, H, W); got {tuple(image.shape)} {image.dtype}")
