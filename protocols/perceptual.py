"""Optional LPIPS metric through the ``lpips`` package (Zhang et al. 2018), AlexNet backbone, v0.1.

The package ships its linear-layer weights; the ImageNet AlexNet backbone comes from torchvision and must
already be in the torch hub cache (this suite never downloads at run time). Inputs are mapped from
[0, 255] to [-1, 1], RGB, as the package expects; the record names net, version and input range.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from protocols.core import UserError

LPIPS_NET = "alex"
LPIPS_VERSION = "0.1"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1
LPIPS_DESCRIPTION = f"lpips {LPIPS_VERSION}, net={LPIPS_NET}, inputs RGB in [-1, 1]"


def _backbone_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def require_backbone() -> None:
    """A UserError naming the missing AlexNet backbone file and where to put it (torch hub cache, which
    ``$TORCH_HOME`` moves); the run verb checks this before any work when LPIPS is among the metrics."""
    if not _backbone_path().is_file():
        raise UserError(
            f"LPIPS needs the torchvision AlexNet weights at {_backbone_path()} (file {ALEXNET_FILE}); "
            "download it once on a connected machine (torchvision.models.alexnet(weights='IMAGENET1K_V1')) "
            "and copy it there (the folder follows $TORCH_HOME)"
        )


@functools.lru_cache(maxsize=1)
def _model() -> torch.nn.Module:
    require_backbone()
    import lpips

    return lpips.LPIPS(net=LPIPS_NET, version=LPIPS_VERSION, verbose=False).eval()


def lpips_distance(sr: np.ndarray, hr: np.ndarray, *, crop_border: int) -> float:
    """LPIPS between two (H, W, 3) RGB arrays on [0, 255]; lower is better."""
    if crop_border:
        sr, hr = (
            sr[crop_border:-crop_border, crop_border:-crop_border],
            hr[crop_border:-crop_border, crop_border:-crop_border],
        )

    def to_tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0

    with torch.inference_mode():
        return float(_model()(to_tensor(sr), to_tensor(hr)).item())
