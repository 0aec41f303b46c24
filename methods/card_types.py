"""The card types: ``MethodCard`` (every fact about a method) and ``WeightFile`` (one official weight file).
Frozen data, readable without building a network; ``methods.cards`` holds the built-in cards. Imports nothing
heavy (no torch, no numpy)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

TASKS = ("refsr", "sisr", "matcher")
WEIGHT_SOURCES = ("https", "gdrive", "gdrive_folder", "manual")


@dataclass(frozen=True)
class WeightFile:
    """One official checkpoint file of a method.

    ``source`` says how ``url`` is used: ``https`` -- a direct file URL (GitHub raw, a plain HTTPS host),
    downloaded as is; ``gdrive`` -- a Google Drive file URL, downloaded through ``gdown``; ``gdrive_folder`` -- a
    Google Drive *folder* URL: ``weights fetch`` lists it with ``gdown`` and downloads the file named ``file_name``
    (``note`` names the official page that links the folder); ``manual`` -- no
    direct file link is documented: ``url`` is the official page that links the file, and the user puts
    the file in the weights folder by hand. ``layout``: ``"module:callable"`` building the ``nn.Module``
    whose state_dict the file fills strictly, for files outside the method's own layout (torchvision's
    VGG19); None means the method's ``load_weights`` checks the file.
    """

    file_name: str
    url: str
    sha256: str | None
    license: str
    role: str = "net"  # which module of the method it fills, e.g. "net_g", "net_extractor"
    source: str = "https"
    layout: str | None = None
    note: str = ""  # where on ``url`` the file is, for ``manual`` sources

    def __post_init__(self) -> None:
        if self.source not in WEIGHT_SOURCES:
            raise ValueError(f"{self.file_name}: source must be one of {WEIGHT_SOURCES}; got {self.source!r}")
        if not self.url.startswith(("https://", "http://")) or " " in self.url:
            raise ValueError(f"{self.file_name}: url must be a URL (built-in cards: https); got {self.url!r}")


@dataclass(frozen=True)
class MethodCard:
    """Frozen facts of one method variant.

    ``scales``: the scales the factory builds; ``any_scale_from``: every integer scale from this one up is
    also built (interpolation baselines). ``parts`` maps a role (``matching``, ``extractor`` ...) to a
    dotted submodule path of the built ``module``; role ``matching`` is what FLOPS-M counts.
    ``has_match``: the method implements ``match(lr, ref)`` (a correspondence step the ``match`` verb can
    score). ``parameters``: ``sum(p.numel() for p in module.parameters())`` where a document states it.
    """

    name: str
    factory: str  # "package.module:function", called with scale= and device=
    task: str  # "refsr" | "sisr" | "matcher"
    scales: tuple[int, ...]
    inputs: tuple[str, ...]
    title: str
    venue: str
    year: int
    official_repo: str | None  # URL of the official code, None where none exists
    license: str
    variant: str = "-"
    aliases: tuple[str, ...] = ()
    weights: tuple[WeightFile, ...] = ()
    parts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    has_match: bool = False
    lr_multiple: int = 1  # predict() accepts any LR size; this is what the network itself needs
    parameters: int | None = None
    any_scale_from: int | None = None
    trained: bool = True  # False: no learned parameters, runs without any checkpoint (interpolation, classical)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {TASKS}; got {self.task!r}")
        if ":" not in self.factory:
            raise ValueError(f"{self.name}: factory must be 'module:function'; got {self.factory!r}")
        if self.official_repo is not None and not self.official_repo.startswith("https://"):
            raise ValueError(f"{self.name}: official_repo must be a URL; got {self.official_repo!r}")
        if not self.scales:
            raise ValueError(f"{self.name}: at least one scale is needed")
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))

    @property
    def default_scale(self) -> int:
        """The scale a plain ``create(name)`` builds (the factory's default)."""
        return 4 if 4 in self.scales else self.scales[0]

    @property
    def needs_reference(self) -> bool:
        return "ref" in self.inputs

    def supports(self, scale: int) -> bool:
        return scale in self.scales or (self.any_scale_from is not None and scale >= self.any_scale_from)

    def scales_text(self) -> str:
        listed = ",".join(map(str, self.scales))
        return f"{listed}+" if self.any_scale_from is not None else listed

    @property
    def paper(self) -> str:
        return f"{self.venue} {self.year}" if self.year else "-"
