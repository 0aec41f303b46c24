"""Types shared by every layer: the user-facing error, evaluation samples and correspondences.

Data flows one way (protocols -> methods -> metrics -> records -> reports); this module sits at the
bottom so that both protocols and methods can import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing UserError must not import torch (dataset/metric cards, --help)
    import torch

from protocols.errors import UserError

__all__ = ["Correspondence", "Matcher", "Sample", "UserError"]


@dataclass(frozen=True)
class Sample:
    """One evaluation item produced by a protocol.

    All image tensors are float32, shape (1, C, H, W), values in [0, 1] holding 8-bit levels (k/255)
    unless the preset leaves them unquantised; channel order RGB; C = 3 except for Y-only presets (C = 1).

    - ``hr``: the ground truth the metrics compare with (after the preset's size recipe).
    - ``lr``: the degraded input, made by the protocol from ``hr`` (or from a padded copy of it).
    - ``ref``: the reference at HR resolution, or None for SISR protocols.
    - ``ref_lr``: the reference down-scaled by the protocol (Ref↓), or None.
    - ``sr_crop``: (top, bottom, left, right) pixels the runner removes from the SR output before scoring,
      for recipes that pad the HR before degrading it (MASA's centred replicate padding).
    """

    name: str
    hr: torch.Tensor
    lr: torch.Tensor
    ref: torch.Tensor | None = None
    ref_lr: torch.Tensor | None = None
    level: str = "-"
    sr_crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Correspondence:
    """Dense correspondence from the LR grid to the reference image.

    For every LR pixel (i, j) -- standing for the HR position (scale*i, scale*j), 0-based, the top-left
    pixel of its scale x scale block (CC-Net evaluates HR positions (8m, 8n)) -- ``ref_yx[i, j]`` is the
    matched position (y, x) in the reference's HR pixel frame, float32, shape (h, w, 2), and
    ``score[i, j]`` the matcher's confidence (higher = better), float32, shape (h, w).
    """

    ref_yx: torch.Tensor
    score: torch.Tensor


@runtime_checkable
class Matcher(Protocol):
    """What the matching-accuracy protocol needs of a method (``protocols.matching``); every matcher port has it."""

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """LR (1, 3, h, w) and HR-resolution Ref (1, 3, H, W), RGB [0, 1] float32 -> dense correspondence."""
        ...
