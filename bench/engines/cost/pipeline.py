"""``measure_cost(request)``: the one cost loop. ``refsr-bench cost`` (``bench.engines.cost.run_folder``), the
demo's cost step and ``gpu-check``'s cost step (``bench.engines.checks.gpu``) all call it.

A request names methods (each with its scale), shapes (LR size and Ref size at HR resolution), devices,
precisions (``bench.engines.cost.precision``), MAC conventions, the timing and whether the memory forward runs.
Each (device, shape, method) is a *cell*; per cell:

1. build the method on the device (the last built method is reused by the next cell of the same method);
   a factory error or a method without ``cost_graph`` skips its cells; a method that ignores the reference is
   measured once per LR size (its Ref is ``-``);
2. build the cost graph; an LR the network cannot take (``UserError``) is padded up to the method's
   ``lr_multiple``, as its ``predict`` pads -- rows keep the requested size, run.json says ``measured_lr_hw``;
3. with ``share_networks``, a graph that is the same network (``bench.engines.cost.network.network_key``) as one
   already measured on the device gets that cell's rows under its own name (``same_network_as``);
4. parameters and MACs (one trace), then per precision latency, memory and the PSNR against float32
   (``bench.engines.cost.measure``), and the load during the timed part (``bench.engines.cost.load``).

With a ``budget`` the cells go shape-major (every method's first shape before any second one), a cell reached
after the deadline is skipped, and each cell's timed loop is capped at an even share of the time left among the
distinct networks still to measure. Errors stay in their cell (run.json ``error``); nothing is estimated.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from tqdm import tqdm

from bench.engines.cost.flop_handlers import CONVENTIONS
from bench.engines.cost.latency import LatencyConfig
from bench.engines.cost.load import LoadReading, warn_if_loaded
from bench.engines.cost.measure import MethodCost, Timing, count_graph, time_graph
from bench.engines.cost.network import network_key
from bench.engines.cost.precision import REFERENCE, precision
from bench.results.cost_csv import CostRow, hw_text
from protocols.core import UserError

OUTCOMES = ("measured", "shared", "skipped", "method_skipped", "failed")
TIMED_SHARE = 0.6  # of a cell's time share, for the timed loops; the rest: trace, warm-up, memory, PSNR


@dataclass(frozen=True)
class Shape:
    """A named (LR, Ref) setting; sizes (height, width) in pixels, Ref at HR resolution."""

    name: str
    lr_hw: tuple[int, int]
    ref_hw: tuple[int, int]


@dataclass
class Budget:
    """Wall-clock deadline (``time.perf_counter`` seconds) of the cost loop."""

    deadline: float

    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    def share_s(self, cells_left: int) -> float:
        return max(0.0, self.left_s()) / max(1, cells_left)


@dataclass(frozen=True)
class CostRequest:
    """What ``measure_cost`` measures (see the module docstring). ``where``: added to every measured cell's
    ``measured_on`` (rank, host); ``progress``: the progress bar's label (None: no bar)."""

    methods: tuple[tuple[str, int], ...]  # (registry name, scale)
    shapes: tuple[Shape, ...]
    devices: tuple[str, ...] = ("cpu",)
    precisions: tuple[str, ...] = (REFERENCE,)
    conventions: tuple[str, ...] = ("macs",)
    latency: LatencyConfig | None = None
    memory: bool = False
    share_networks: bool = False
    budget: Budget | None = None
    plugins: tuple[str, ...] = ()
    where: tuple[tuple[str, Any], ...] = ()
    progress: str | None = "cost"


@dataclass
class Cell:
    """One (device, shape, method): its rows and run.json ``entry``; ``outcome`` one of ``OUTCOMES``
    (``method_skipped``: the method itself cannot be measured, e.g. no cost graph)."""

    method: str
    device: str
    shape: Shape
    entry: dict[str, Any]
    rows: list[CostRow] = field(default_factory=list)
    outcome: str = "measured"
    load: LoadReading | None = None


def check_request(request: CostRequest) -> None:
    """User errors for devices, precisions, conventions and timing counts a request cannot measure."""
    for device in request.devices:
        if device.split(":")[0] not in ("cpu", "cuda"):
            raise UserError(f"device must be cpu or cuda, got {device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("--device cuda requested but torch.cuda.is_available() is False; use --device cpu")
    for name in request.precisions:
        precision(name)
    unknown = [c for c in request.conventions if c not in CONVENTIONS]
    if unknown:
        raise UserError(f"unknown counting convention(s) {unknown}; valid: {', '.join(CONVENTIONS)}")
    latency = request.latency
    if latency is not None and (latency.warmup < 0 or latency.repeat < 1):
        raise UserError(f"--warmup must be >= 0 and --repeat >= 1; got {latency.warmup}, {latency.repeat}")


class _State:
    """What the loop remembers between cells: the last built method, networks measured, SISR LR sizes done,
    and the number of distinct networks still to measure (for the budget share; counted on first need)."""

    def __init__(self, request: CostRequest) -> None:
        self.request = request
        self.built: tuple[tuple[str, int, str], Any] | None = None
        self.networks: dict[tuple[str, str], Cell] = {}
        self.sisr_done: set[tuple[str, str, tuple[int, int]]] = set()
        self.cells_left: int | None = None

    def create(self, name: str, scale: int, device: str) -> Any:
        """The method (reusing the last one built with these arguments) or the factory's UserError text."""
        from methods import registry

        key = (name, scale, device)
        if self.built is None or self.built[0] != key:
            self.built = None
            gc.collect()
            try:
                self.built = (key, registry.create(name, scale=scale, device=device))
            except UserError as error:
                self.built = (key, f"factory: {error}")
        return self.built[1]

    def cap_s(self) -> float | None:
        budget = self.request.budget
        if budget is None:
            return None
        if self.cells_left is None:
            self.cells_left = count_networks(self.request) * len(self.request.shapes) * len(self.request.devices)
        cap = budget.share_s(self.cells_left) / len(self.request.precisions) * TIMED_SHARE
        self.cells_left = max(1, self.cells_left - 1)
        return cap


def cost_graph(method: Any, shape: Shape, entry: dict[str, Any]) -> tuple[tuple[int, int], Any, Any]:
    """(LR measured, module, inputs) of ``method`` at ``shape``; an LR the network refuses is padded up to the
    method's ``lr_multiple`` (recorded in ``entry``)."""
    try:
        return (shape.lr_hw, *method.cost_graph(shape.lr_hw, shape.ref_hw))
    except UserError as error:
        multiple = max(1, int(getattr(method.info, "lr_multiple", 1)))
        lr_run = (-(-shape.lr_hw[0] // multiple) * multiple, -(-shape.lr_hw[1] // multiple) * multiple)
        if lr_run == shape.lr_hw:
            raise
        module, inputs = method.cost_graph(lr_run, shape.ref_hw)
        entry["measured_lr_hw"] = list(lr_run)
        entry["padding_why"] = f"{error} -> measured at LR {hw_text(lr_run)}, as predict() pads"
        return lr_run, module, inputs


def count_networks(request: CostRequest) -> int:
    """Distinct networks among the request's methods at its first shape (each built once on the CPU; with
    ``share_networks`` twins count once): the budget's divisor."""
    from methods import registry

    keys = set()
    for name, scale in request.methods:
        try:
            method = registry.create(name, scale=scale, device="cpu")
            if not hasattr(method, "cost_graph"):
                continue
            _, module, inputs = cost_graph(method, request.shapes[0], {})
        except (UserError, NotImplementedError):
            continue
        keys.add(network_key(method, module, inputs) if request.share_networks else name)
    return max(1, len(keys))


def _cells(request: CostRequest) -> Iterator[tuple[str, Shape, tuple[str, int]]]:
    for device in request.devices:
        if request.budget is not None:  # shape-major: the first shape of every method first
            yield from ((device, shape, method) for shape in request.shapes for method in request.methods)
        else:
            yield from ((device, shape, method) for method in request.methods for shape in request.shapes)


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _measure(state: _State, cell: Cell, method: Any, scale: int) -> None:
    """Steps 2-4 of the module docstring for one cell whose method is built."""
    request, shape, device = state.request, cell.shape, cell.device
    lr_run, module, inputs = cost_graph(method, shape, cell.entry)
    module = module.to(device).eval()
    inputs = tuple(t.to(device) for t in inputs)
    ref = shape.ref_hw if method.info.needs_reference else None
    base: dict[str, Any] = {"method": cell.method, "lr_hw": hw_text(shape.lr_hw), "ref_hw": hw_text(ref),
                            "device": device.split(":")[0]}
    key = (device, network_key(method, module, inputs)) if request.share_networks else None
    twin = state.networks.get(key) if key is not None else None
    if twin is not None:
        cell.rows = [replace(row, method=cell.method) for row in twin.rows]
        cell.entry["same_network_as"] = twin.method
        cell.entry["measured_on"] = dict(twin.entry.get("measured_on") or {})  # where the shared rows were measured
        cell.outcome, cell.load = "shared", twin.load
        return
    padding = {k: cell.entry.pop(k) for k in ("measured_lr_hw", "padding_why") if k in cell.entry}
    cost: MethodCost = count_graph(cell.method, method, module, inputs, (shape.lr_hw, shape.ref_hw), base,
                                   request.conventions)
    timing = Timing(request.latency, request.memory, request.precisions, state.cap_s(), request.plugins)
    probe = {"method": cell.method, "scale": scale, "lr_hw": lr_run, "ref_hw": shape.ref_hw,
             "plugins": request.plugins}
    time_graph(cost, module, inputs, base, device, timing, probe)
    cell.entry.update(cost.run_json, **padding)
    cell.entry["measured_on"].update(dict(request.where))
    cell.rows, cell.load = cost.rows, cost.load
    if cost.failed is not None:
        cell.entry["error"], cell.outcome = cost.failed, "failed"
    elif key is not None:
        state.networks[key] = cell


def _one_cell(state: _State, device: str, shape: Shape, name: str, scale: int) -> Cell | None:
    """Step 1 of the module docstring and the error handling around the rest; None: nothing to do (the Ref
    size of a method that ignores the reference)."""
    budget = state.request.budget
    cell = Cell(name, device, shape, {"shape": shape.name, "lr_hw": list(shape.lr_hw), "ref_hw": list(shape.ref_hw)})
    if budget is not None and budget.left_s() <= 0:
        cell.entry["skipped"], cell.outcome = "budget spent before this cell (rerun with -m for the rest)", "skipped"
        return cell
    method = state.create(name, scale, device)
    if isinstance(method, str) or not hasattr(method, "cost_graph"):
        cell.entry["skipped"] = method if isinstance(method, str) else "the method has no cost_graph"
        cell.outcome = "method_skipped"
        return cell
    if not method.info.needs_reference:
        if (name, device, shape.lr_hw) in state.sisr_done:
            return None
        state.sisr_done.add((name, device, shape.lr_hw))
        cell.entry["ref_hw"] = None
    started = time.perf_counter()
    try:
        _measure(state, cell, method, scale)
    except torch.cuda.OutOfMemoryError as error:
        cell.entry["error"], cell.outcome = f"out of memory: {(str(error).splitlines() or [''])[0]}", "failed"
    except (UserError, NotImplementedError) as error:  # matcher-only methods, sizes a method cannot take
        cell.entry["skipped"], cell.outcome = str(error), "skipped"
    except Exception as error:  # a network that cannot be traced or run must not lose the others' results
        cell.entry["error"], cell.outcome = f"{type(error).__name__}: {error}", "failed"
    finally:
        _free(device)
    if cell.outcome in ("measured", "failed") and "measured_on" in cell.entry:
        cell.entry["measured_on"]["seconds"] = round(time.perf_counter() - started, 2)
    if cell.outcome == "measured" and cell.load is not None:
        warn_if_loaded(cell.load, f"{name} ({shape.name}, {device})")
    return cell


def measure_cost(request: CostRequest, on_cell: Callable[[Cell], None] | None = None) -> list[Cell]:
    """Every cell of ``request`` (see the module docstring), in order; ``on_cell`` sees each as it finishes."""
    check_request(request)
    state = _State(request)
    order = list(_cells(request))
    cells: list[Cell] = []
    progress = tqdm(order, desc=request.progress or "cost", unit="cell", file=sys.stderr, mininterval=1.0,
                    disable=request.progress is None)
    for device, shape, (name, scale) in progress:
        progress.set_postfix_str(f"{name} {shape.name}")
        cell = _one_cell(state, device, shape, name, scale)
        if cell is not None:
            cells.append(cell)
            if on_cell is not None:
                on_cell(cell)
    progress.close()
    state.built = None
    return cells


def failed_methods(cells: Sequence[Cell]) -> list[str]:
    """Methods with a failed cell, sorted."""
    return sorted({cell.method for cell in cells if cell.outcome == "failed"})
