"""The one definition of "the same network" for cost: ``network_key``.

Two methods are the same network at a size when their cost graphs (``method.cost_graph(lr_hw, ref_hw)``) agree
in everything the cost depends on: the module's class and printed structure, every submodule's public Python
attributes, the parameter and buffer names and shapes, the method's parts, the scale and the input shapes.
They may differ only in checkpoint values -- ``masa_rec`` / ``masa_gan``, ``ttsr_rec`` / ``ttsr_gan`` -- and
those do not change parameters, MACs, latency or memory. Weight values, the method's name and its weights
variant are deliberately left out: a name or variant says nothing about the graph, and comparing the graph
itself cannot merge two networks that differ. The cost pipeline measures such methods once and records the
rows under every name (``same_network_as`` in run.json); ``refsr-bench cost`` measures each name itself.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch


def network_key(method: Any, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> str:
    """sha256 of what the cost of ``module`` on ``inputs`` depends on (see the module docstring); ``method``
    follows ``methods.base.Method`` (its ``info.parts`` and ``info.scale`` are part of the key)."""
    parts = [type(module).__qualname__, repr(module), repr(sorted(dict(method.info.parts).items())),
             f"scale:{method.info.scale}"]
    parts += [f"{key}:{tuple(value.shape)}" for key, value in module.state_dict().items()]
    for path, submodule in module.named_modules():
        public = sorted((k, repr(v)) for k, v in vars(submodule).items() if not k.startswith("_"))
        parts.append(f"{path}:{public}")
    parts += [repr(tuple(t.shape)) for t in inputs]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def network_signature(method: Any, lr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> str:
    """``network_key`` of ``method``'s cost graph at LR ``lr_hw`` / Ref ``ref_hw`` (HR pixels)."""
    module, inputs = method.cost_graph(lr_hw, ref_hw)
    return network_key(method, module, inputs)
