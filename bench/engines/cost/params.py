"""Parameter counts of a cost graph's module and of each part's submodule (``MethodInfo.parts``).

``total`` = every parameter (shared tensors once); ``used`` = those feeding an operation of the pruned trace
(``bench.engines.cost.macs``; e.g. the x4 path of a multi-scale checkpoint); ``buffers`` counted separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from protocols.core import UserError


@dataclass(frozen=True)
class ParamCount:
    total: int
    trainable: int
    buffers: int  # elements of registered buffers (running statistics, constants), not parameters
    used: int | None  # parameters feeding an operation of the pruned trace; None if unknown
    by_part: dict[str, int]


def resolve_part(module: torch.nn.Module, role: str, path: str) -> torch.nn.Module:
    try:
        return module.get_submodule(path)
    except AttributeError as error:
        raise UserError(
            f"MethodInfo.parts[{role!r}] = {path!r} is not a submodule of the cost graph; "
            f"top-level submodules: {', '.join(n for n, _ in module.named_children())}"
        ) from error


def count_params(
    module: torch.nn.Module, parts: Mapping[str, str] | None = None, used_param_ids: frozenset[int] | None = None
) -> ParamCount:
    """Parameter counts of ``module`` (shared tensors counted once) and of each part's submodule."""
    params = list(module.parameters())  # nn.Module.parameters() already yields a shared tensor once
    by_part = {
        role: sum(p.numel() for p in resolve_part(module, role, path).parameters())
        for role, path in sorted((parts or {}).items())
    }
    return ParamCount(
        total=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        buffers=sum(b.numel() for b in module.buffers()),
        used=None if used_param_ids is None else sum(p.numel() for p in params if id(p) in used_param_ids),
        by_part=by_part,
    )
