"""MACs of one traced forward, in every requested counting convention (``protocols.md`` §7,
``bench/engines/cost/flop_handlers.py``).
Units: MACs (one fused multiply-add = 1) or the convention's units, as integers.

ONE jit trace per (method, size) through fvcore's ``FlopCountAnalysis``; a combined operator table evaluates
every requested convention on that trace, so the (possibly minutes-long) traced forward runs once. The trace
prunes computations whose results are unused (the MASA counter did the same); the executed-but-dead work is
therefore not in these counts. The traced graph also tells which parameters feed an operation
(``TraceCost.used_param_ids``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn import jit_analysis as _fvcore_jit

from bench.engines.cost.flop_handlers import CONVENTIONS, HANDLES_BY_CONVENTION, PRODUCT_BUCKETS, Handle
from protocols.core import UserError


@dataclass(frozen=True)
class MacCount:
    """Counts of one convention on one trace. All counts are integers (MACs or convention units)."""

    convention: str
    total: int
    by_operator: dict[str, int]
    by_module: dict[str, int]
    by_module_and_operator: dict[str, dict[str, int]]
    unsupported_ops: dict[str, int]  # op kind -> number of trace nodes counted as 0 with a warning
    ops_seen: dict[str, tuple[int, int]]  # handled op kind -> (trace nodes, count it contributed)

    def module_total(self, path: str) -> int:
        return self.by_module.get(path, 0)

    def module_exclusive(self, path: str) -> int:
        """Count of operations run directly in ``path``'s own forward, not inside one of its submodules."""
        prefix = path + "." if path else ""
        children = [n for n in self.by_module if n.startswith(prefix) and n != path and "." not in n[len(prefix) :]]
        return self.module_total(path) - sum(self.module_total(c) for c in children)

    def module_products(self, path: str) -> int:
        """Multiply-accumulates of products (conv, matmul family, deformable conv) inside ``path``."""
        ops = self.by_module_and_operator.get(path, {})
        return sum(v for k, v in ops.items() if k in PRODUCT_BUCKETS)


@dataclass(frozen=True)
class TraceCost:
    """Everything one trace tells: counts per convention, modules the trace never reached, and which
    parameters feed an operation of the pruned graph (None if the graph could not be mapped)."""

    counts: dict[str, MacCount]
    uncalled_modules: tuple[str, ...]
    used_param_ids: frozenset[int] | None
    canonical_names: dict[str, str]


@dataclass
class _Tally:
    nodes: Counter[str] = field(default_factory=Counter)
    cost: Counter[str] = field(default_factory=Counter)
    unsupported: Counter[str] = field(default_factory=Counter)
    unhandled: Counter[str] = field(default_factory=Counter)


def _short_op_name(kind: str) -> str:
    return kind.split("::", 1)[1] if "::" in kind else kind


def _combined_handle(kind: str, conventions: Sequence[str], tallies: dict[str, _Tally]) -> Handle:
    """One fvcore handle evaluating every convention's rule for ``kind``; buckets are ``<convention>/<bucket>``."""

    def handle(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        merged: Counter[str] = Counter()
        for convention in conventions:
            tally = tallies[convention]
            rule = HANDLES_BY_CONVENTION[convention].get(kind)
            if rule is None:
                tally.unhandled[kind] += 1
                continue
            result = rule(inputs, outputs)
            if result is None:
                tally.unsupported[kind] += 1
                continue
            buckets = result if isinstance(result, Counter) else Counter({_short_op_name(kind): result})
            tally.nodes[kind] += 1
            tally.cost[kind] += int(sum(buckets.values()))
            for bucket, value in buckets.items():
                merged[f"{convention}/{bucket}"] += int(value)
        return merged

    return handle


@contextlib.contextmanager
def _capture_trace_graph(sink: list[torch._C.Graph]) -> Iterator[None]:
    """Keep the graph fvcore traces (read-only) so parameter use can be read off it without tracing again.
    fvcore 0.1.5.post20221221 (pinned) calls this module-level function once per analysis."""
    original = _fvcore_jit._get_scoped_trace_graph

    def capturing(*args: Any, **kwargs: Any) -> torch._C.Graph:
        graph = original(*args, **kwargs)
        sink.append(graph)
        return graph

    _fvcore_jit._get_scoped_trace_graph = capturing
    try:
        yield
    finally:
        _fvcore_jit._get_scoped_trace_graph = original


def _unique_state_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """State tensors in ``state_dict`` order, each tensor once: the order in which the tracer appends them
    to the graph inputs after the example inputs."""
    seen: set[int] = set()
    tensors = []
    for tensor in module.state_dict(keep_vars=True).values():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensors.append(tensor)
    return tensors


def _used_parameter_ids(module: torch.nn.Module, n_inputs: int, graph: torch._C.Graph) -> frozenset[int] | None:
    graph_inputs = list(graph.inputs())
    state = _unique_state_tensors(module)
    if len(graph_inputs) != n_inputs + len(state):
        return None
    param_ids = {id(p) for p in module.parameters()}
    return frozenset(
        id(tensor)
        for tensor, value in zip(state, graph_inputs[n_inputs:], strict=True)
        if id(tensor) in param_ids and len(value.uses()) > 0
    )


def analyze_trace(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], conventions: Sequence[str] = CONVENTIONS
) -> TraceCost:
    """Trace ``module(*inputs)`` once with fvcore and count it in every requested convention."""
    unknown = [c for c in conventions if c not in HANDLES_BY_CONVENTION]
    if unknown:
        raise UserError(f"unknown counting convention(s) {unknown}; valid: {', '.join(CONVENTIONS)}")
    if not isinstance(inputs, tuple) or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise UserError("cost_graph must return its example inputs as a tuple of tensors (fvcore traces those)")
    tallies = {c: _Tally() for c in conventions}
    kinds = set().union(*(HANDLES_BY_CONVENTION[c] for c in conventions))
    analysis = FlopCountAnalysis(module, inputs)
    analysis.clear_op_handles()
    analysis.set_op_handle(**{kind: _combined_handle(kind, conventions, tallies) for kind in sorted(kinds)})
    analysis.unsupported_ops_warnings(False)  # surfaced in our own report instead of the log
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    graphs: list[torch._C.Graph] = []
    with torch.no_grad(), _capture_trace_graph(graphs):
        merged = analysis.by_module_and_operator()
    never_handled = dict(analysis.unsupported_ops())  # no rule in any requested convention
    uncalled = tuple(sorted(analysis.uncalled_modules()))
    used = _used_parameter_ids(module, len(inputs), graphs[0]) if graphs else None
    canonical = {name: analysis.canonical_module_name(name) for name, _ in module.named_modules(remove_duplicate=False)}

    counts: dict[str, MacCount] = {}
    for convention in conventions:
        prefix = convention + "/"
        per_module = {
            name: {k[len(prefix) :]: int(v) for k, v in ops.items() if k.startswith(prefix)}
            for name, ops in merged.items()
        }
        tally = tallies[convention]
        unsupported = Counter(never_handled)
        unsupported.update(tally.unsupported)
        for kind, nodes in tally.unhandled.items():
            if kind not in _fvcore_jit._IGNORED_OPS:
                unsupported[kind] += nodes
        by_operator = per_module.get("", {})
        counts[convention] = MacCount(
            convention=convention,
            total=sum(by_operator.values()),
            by_operator=dict(sorted(by_operator.items())),
            by_module={name: sum(ops.values()) for name, ops in per_module.items()},
            by_module_and_operator=per_module,
            unsupported_ops=dict(sorted(unsupported.items())),
            ops_seen={k: (tally.nodes[k], tally.cost[k]) for k in sorted(tally.nodes)},
        )
    return TraceCost(counts=counts, uncalled_modules=uncalled, used_param_ids=used, canonical_names=canonical)
