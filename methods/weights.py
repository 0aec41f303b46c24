"""Where official checkpoints live, the ``--weights`` option, and the one explicit verb that downloads them.

Weights are never downloaded implicitly. ``REFSR_WEIGHTS`` (default ``~/.cache/refsr-bench/weights``)
is a folder holding the official file names; users may fill it by hand. Facts come from the method cards
(``methods.cards``): listing weights builds no network. ``fetch`` downloads into a private staging folder
beside the target (``methods.download``, shared with ``data fetch``) and moves the file into place only after
it is verified (sha256 where the card knows
it; otherwise a ``weights_only`` load that fills the method's layout strictly), so no partial, 0-byte or
unverified file is ever left under an official name. The sha256 of a file verified by layout is printed
and recorded in ``sha256.json`` in the weights folder so the user can pin it. Files kept in an official Google
Drive *folder* are found by listing the folder with ``gdown``; ``fetch_from`` installs a hand-downloaded file
through the same checks.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from methods.cards import MethodCard, WeightFile
from methods.download import DriveEntry, list_gdrive_folder, reject_html, sha256_of, staging
from methods.download import download_gdrive as _download_gdrive
from methods.download import download_https as _download_https
from methods.registry import card, cards, create, resolve
from protocols.errors import UserError

if TYPE_CHECKING:
    from methods.base import Method

RECORDED_HASHES = "sha256.json"  # file name -> sha256 of files verified by layout, in the weights folder


def _is_folder_value(value: str | Path) -> bool:
    text = str(value)
    return not ("=" in text and not Path(text).exists()) and not Path(text).is_file()


def weights_dir(explicit: str | Path | Sequence[str] | None = None) -> Path:
    """The weights folder: ``explicit`` when it names a folder, else ``$REFSR_WEIGHTS``, else the cache.

    ``explicit`` may also be a ``--weights`` value naming checkpoint files (``FILE`` or ``METHOD=FILE``,
    or a list of them); those are not folders, so the default folder is used for every other file."""
    values = [explicit] if isinstance(explicit, (str, Path)) else list(explicit or [])
    folders = [v for v in values if v and _is_folder_value(v)]
    value = folders[0] if folders else os.environ.get("REFSR_WEIGHTS")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "refsr-bench" / "weights"


# ---------------------------------------------------------------------------------------------------
# the --weights option


@dataclass(frozen=True)
class WeightsOption:
    """A parsed ``--weights``: a folder (None = ``$REFSR_WEIGHTS``/default) and explicit files per method."""

    folder: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def parse_weights_option(values: str | Sequence[str] | None, methods: Sequence[str]) -> WeightsOption:
    """Parse ``--weights`` values against the selected ``methods`` (names, aliases or patterns).

    Each value is a folder, ``METHOD=FILE``, or a bare ``FILE``; a bare file is allowed only when exactly
    one method is selected (otherwise which method it belongs to is ambiguous: a UserError says so)."""
    items = [values] if isinstance(values, str) else list(values or [])
    names = resolve(list(methods)) if methods else []
    folder: str | None = None
    files: dict[str, str] = {}
    for item in items:
        if "=" in item and not Path(item).exists():
            method_text, file_text = item.split("=", 1)
            method = card(method_text).name
            if method not in names:
                raise UserError(f"--weights {item}: {method} is not among the selected methods ({', '.join(names)})")
            if not Path(file_text).is_file():
                raise UserError(f"--weights {item}: checkpoint file not found: {file_text}")
            files[method] = file_text
        elif Path(item).is_file():
            if len(names) != 1:
                raise UserError(
                    f"--weights {item} is one checkpoint file but {len(names)} methods are selected "
                    f"({', '.join(names)}); select one method with -m, or write --weights METHOD={item}"
                )
            files[names[0]] = item
        elif folder is None:
            folder = item
        else:
            raise UserError(f"--weights names two folders ({folder}, {item}); give one folder")
    return WeightsOption(folder, files)


def weight_file_for(values: str | Sequence[str] | None, methods: Sequence[str], method: str) -> str | None:
    """The checkpoint file ``--weights`` names for ``method`` (None: use the weights folder)."""
    return parse_weights_option(values, methods).files.get(method)


# ---------------------------------------------------------------------------------------------------
# listing


@dataclass(frozen=True)
class WeightEntry:
    method: str
    file: WeightFile


def all_weight_entries() -> list[WeightEntry]:
    """Every official weight file of every registered method, from the cards (no network is built)."""
    return [WeightEntry(c.name, f) for c in cards() for f in c.weights]


def recorded_hashes(folder: Path) -> dict[str, str]:
    """``sha256.json`` of ``folder``: file name -> sha256 recorded when ``fetch`` verified a file by layout."""
    path = folder / RECORDED_HASHES
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error}); delete it or fix it") from error
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a PyTorch checkpoint from its first bytes (None: it may be one)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if not head:
        return "empty (0 bytes)"
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        return "not a PyTorch checkpoint (neither zip nor pickle)"
    return None


def file_status(weight: WeightFile, folder: Path, recorded: dict[str, str] | None = None) -> str:
    """One weight file: ``missing``; ``installed`` only when verified (its sha256 is the card's pinned one, or the
    one ``sha256.json`` recorded when a strict ``weights_only`` layout load verified it); ``invalid: <reason>``
    (not a checkpoint, or not the pinned file); else ``unverified`` (``weights fetch`` verifies it)."""
    path = folder / weight.file_name
    if not path.is_file():
        return "missing"
    problem = checkpoint_problem(path)
    if problem is not None:
        return f"invalid: {problem}"
    digest = sha256_of(path)
    if weight.sha256 is not None:
        return "installed" if digest == weight.sha256 else "invalid: sha256 is not the official file's"
    recorded = recorded_hashes(folder) if recorded is None else recorded
    return "installed" if recorded.get(weight.file_name) == digest else "unverified"


def weight_status(method_card: MethodCard, folder: Path) -> str:
    """``installed`` (every file present and verified: ``file_status``), ``invalid: <reason>`` or ``unverified``
    (the first such file), ``fetchable`` (``weights fetch`` can download what is missing), ``manual`` (some missing
    file has no direct link: download it by hand) or ``none`` (no official weights)."""
    if not method_card.weights:
        return "none"
    missing = [f for f in method_card.weights if not (folder / f.file_name).is_file()]
    if missing:
        return "manual" if any(f.source == "manual" for f in missing) else "fetchable"
    recorded = recorded_hashes(folder)
    statuses = [file_status(f, folder, recorded) for f in method_card.weights]
    return next((s for s in statuses if s.startswith("invalid")), None) or next(
        (s for s in statuses if s != "installed"), "installed")


def runnable_methods(weights: str | Path | None, scale: int) -> list[str]:
    """SR methods (not matchers) that support ``scale`` and run as published here: no learned parameters, or
    every official weight file installed in ``weights_dir(weights)``. From the cards; nothing is built."""
    folder = weights_dir(weights)
    return [c.name for c in cards() if c.task != "matcher" and c.supports(scale)
            and (not c.trained or weight_status(c, folder) == "installed")]


def matchers() -> list[str]:
    """The registered methods whose task is matching (the classical matchers; not the RefSR networks that also
    have a correspondence step), in registry order."""
    return [c.name for c in cards() if c.task == "matcher"]


def missing_files(method: Method, folder: Path) -> list[str]:
    return [f.file_name for f in method.info.weights if not (folder / f.file_name).is_file()]


def try_load(method: Method, folder: Path) -> str | None:
    """Load the method's official weights from ``folder``; return None on success, else why not."""
    if method.weights_loaded:
        return None
    if not method.info.weights:
        return "no official checkpoint exists; pass your own with --weights"
    missing = missing_files(method, folder)
    if missing:
        return (
            f"weights not installed: {', '.join(missing)} not in {folder} "
            f"(run `refsr-bench weights fetch {method.info.name}` or place the files there)"
        )
    method.load_weights(folder)
    return None


# ---------------------------------------------------------------------------------------------------
# loading: the one place that turns a method name and the --weights option into a method with weights

_CHECKPOINT_ERRORS = (RuntimeError, ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError)


def _first_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first if len(first) <= 200 else first[:200] + " ..."


def check_checkpoint_file(path: Path) -> None:
    """Short reasons for files that cannot be checkpoints (``checkpoint_problem``), before torch prints its long
    ones."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise UserError(f"checkpoint {path} is {problem}; download it again")


def _guarded(name: str, load: Callable[[], str | None]) -> str | None:
    try:
        return load()
    except UserError as error:  # our own messages: every line (a layout mismatch lists its keys on later lines)
        raise UserError(f"{name}: {str(error).strip() or 'unknown error'}") from None
    except _CHECKPOINT_ERRORS as error:
        raise UserError(f"{name}: the checkpoint does not fit this method: {_first_line(str(error))}") from None


def load_method(
    name: str, scale: int, device: str, weights: str | Sequence[str] | None, methods: Sequence[str]
) -> tuple[Method, str | None]:
    """Create method ``name`` and load its weights: ``--weights FILE`` / ``METHOD=FILE`` when given for it, else
    the official files in the weights folder. Returns (method, None) when loaded, or (method with its seeded
    random weights, why no weights were loaded) so the caller decides whether random weights may be used."""
    method = create(name, scale=scale, device=device)
    if explicit_file := weight_file_for(weights, methods, name):
        check_checkpoint_file(Path(explicit_file))
        _guarded(name, lambda: method.load_weights(explicit_file))
        return method, None
    folder = weights_dir(weights)
    for weight in method.info.weights:
        if (folder / weight.file_name).is_file():
            check_checkpoint_file(folder / weight.file_name)
    return method, _guarded(name, lambda: try_load(method, folder))


def weight_files(method: Method, weights: str | Sequence[str] | None, methods: Sequence[str]) -> list[dict[str, Any]]:
    """Each weight file ``method`` loads, with its sha256 (None when the file is absent)."""
    folder = weights_dir(weights)
    rows: list[dict[str, Any]] = []
    for weight in method.info.weights:
        path = folder / weight.file_name
        rows.append({"file": weight.file_name, "sha256": sha256_of(path) if path.is_file() else None})
    if explicit_file := weight_file_for(weights, methods, method.info.name):
        rows.append({"file": Path(explicit_file).name, "sha256": sha256_of(Path(explicit_file))})
    return rows


# ---------------------------------------------------------------------------------------------------
# fetching

FolderListings = dict[str, list[DriveEntry] | UserError]  # folder URL -> its listing, or why it failed


def _import_callable(dotted: str) -> object:
    module_path, name = dotted.split(":")
    return getattr(importlib.import_module(module_path), name)


def verify_layout(method_card: MethodCard, weight: WeightFile, path: Path) -> None:
    """Raise a UserError unless ``path`` loads with ``weights_only=True`` and fills its layout strictly:
    the card's ``layout`` module for files outside the method's own layout (torchvision VGG19), else the
    built method's ``load_weights``."""
    from methods.base import load_state_dict_strict, read_checkpoint

    if weight.layout is not None:
        module = _import_callable(weight.layout)()  # type: ignore[operator]
        state = read_checkpoint(path, container_keys=("params",))
        load_state_dict_strict(module, state, f"{weight.file_name} ({weight.layout})")
        return
    read_checkpoint(path, container_keys=("params",))  # weights_only load; clear error for a non-checkpoint
    method = create(method_card.name, scale=method_card.default_scale)
    method.load_weights(path)


def _record_hash(folder: Path, file_name: str, sha256: str) -> None:
    hashes = recorded_hashes(folder)
    hashes[file_name] = sha256
    staging_file = folder / f".{RECORDED_HASHES}.part"
    staging_file.write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n")
    os.replace(staging_file, folder / RECORDED_HASHES)


def _hand_download_hint(weight: WeightFile, target: Path) -> str:
    return (f"download {weight.file_name} from {weight.url} ({weight.note or 'see its README'}) and install it with "
            f"`refsr-bench weights fetch {weight.file_name} --from DOWNLOADED_FILE --weights {target.parent}` "
            f"(or save it as {target})")


def _folder_entry(weight: WeightFile, target: Path, listings: FolderListings) -> DriveEntry:
    """The entry of ``weight.file_name`` in its Drive folder's listing (listed once per fetch)."""
    if weight.url not in listings:
        try:
            listings[weight.url] = list_gdrive_folder(weight.url)
        except UserError as error:
            listings[weight.url] = error
    listing = listings[weight.url]
    if isinstance(listing, UserError):
        raise UserError(f"{listing}; {_hand_download_hint(weight, target)}")
    found = [entry for entry in listing if entry.name == weight.file_name]
    if len(found) != 1:
        names = ", ".join(entry.path for entry in listing[:20])
        how = "no file" if not found else f"{len(found)} files"
        raise UserError(f"the Google Drive folder {weight.url} lists {how} named {weight.file_name} (it has: "
                        f"{names}); {_hand_download_hint(weight, target)}")
    return found[0]


def _verify_and_install(method_card: MethodCard, weight: WeightFile, part: Path, folder: Path, origin: str) -> Path:
    """Check ``part`` (not HTML, pinned sha256 or strict layout) and move it to its official name in ``folder``."""
    target = folder / weight.file_name
    reject_html(part, origin, "a checkpoint")
    got = sha256_of(part)
    if weight.sha256 is not None and got != weight.sha256:
        raise UserError(f"sha256 mismatch for {origin}: expected {weight.sha256}, got {got}; the file was not kept")
    if weight.sha256 is None:
        verify_layout(method_card, weight, part)
    os.replace(part, target)
    if weight.sha256 is None:
        print(f"sha256 {got}  {weight.file_name} (no pinned hash: verified by layout; recorded in "
              f"{folder / RECORDED_HASHES})")
        _record_hash(folder, weight.file_name, got)
    return target


def _fetch_one(method_card: MethodCard, weight: WeightFile, folder: Path, listings: FolderListings) -> Path:
    """Download, verify and move one file into ``folder``; nothing is left behind on any failure."""
    target = folder / weight.file_name
    with staging(folder, f"fetch-{weight.file_name}") as stage:
        part = stage / weight.file_name
        if weight.source == "gdrive_folder":
            entry = _folder_entry(weight, target, listings)
            print(f"downloading {entry.path} from {weight.url} -> {target}")
            _download_gdrive(entry.url, part)
            return _verify_and_install(method_card, weight, part, folder, entry.url)
        print(f"downloading {weight.url} -> {target}")
        if weight.source == "gdrive":
            _download_gdrive(weight.url, part)
        else:
            _download_https(weight.url, part, f"place it at {target}")
        return _verify_and_install(method_card, weight, part, folder, weight.url)


def verify_existing(method_card: MethodCard, weight: WeightFile, folder: Path) -> None:
    """Verify a file already under an official name before anything is said about it: its pinned sha256, else a
    strict ``weights_only`` layout load (then its sha256 is recorded in ``sha256.json``). A file that fails is
    left in place and named (UserError): it is the user's file, not ours to delete."""
    target = folder / weight.file_name
    status = file_status(weight, folder)
    if status == "installed":
        return
    if status == "unverified":
        try:
            verify_layout(method_card, weight, target)
        except UserError as error:
            status = f"invalid: {str(error).strip()}"
        else:
            digest = sha256_of(target)
            print(f"sha256 {digest}  {weight.file_name} (no pinned hash: verified by layout; recorded in "
                  f"{folder / RECORDED_HASHES})")
            _record_hash(folder, weight.file_name, digest)
            return
    raise UserError(f"{target} is already there but is {status}; delete or replace it and run the fetch again")


def _manual_message(files: list[tuple[WeightFile, Path]]) -> str:
    lines = [
        f"{weight.file_name}: no direct download link is documented; get it from {weight.url} "
        f"({weight.note or 'see its README'}) and save it as {target}"
        for weight, target in files
    ]
    return "cannot download automatically:\n  " + "\n  ".join(lines)


def _entries_for(name: str) -> list[WeightEntry]:
    """The weight files a method name, alias or official file name stands for (one per file name)."""
    entries = [e for e in all_weight_entries() if name in (e.method, e.file.file_name)]
    if not entries:
        method_card = card(name)  # an unknown name: "unknown method ... (did you mean ...?)"
        entries = [WeightEntry(method_card.name, f) for f in method_card.weights]
    if not entries:
        valid = sorted({e.method for e in all_weight_entries()})
        raise UserError(f"{name} has no official weights (no checkpoint is published); methods with weights: "
                        f"{', '.join(valid)}")
    return list({e.file.file_name: e for e in entries}.values())


def fetch(name: str, folder: Path) -> list[Path]:
    """Download the official files of a method (or one file name) into ``folder``, verified.

    Files already present are kept when their sha256 matches the card (or the card has none). Files whose
    card source is ``manual`` are never downloaded: a UserError names the official page and the target path.
    """
    entries = _entries_for(name)
    folder.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    manual: list[tuple[WeightFile, Path]] = []
    failures: list[str] = []
    listings: FolderListings = {}
    for entry in entries:
        target = folder / entry.file.file_name
        if target.is_file():
            try:
                verify_existing(card(entry.method), entry.file, folder)
            except UserError as error:
                failures.append(str(error))
                continue
            done.append(target)
            continue
        if entry.file.source == "manual":
            manual.append((entry.file, target))
            continue
        try:
            done.append(_fetch_one(card(entry.method), entry.file, folder, listings))
        except UserError as error:  # try the other files; report every problem at the end
            failures.append(str(error))
    if manual or failures:
        raise UserError("\n".join([*failures, *([_manual_message(manual)] if manual else [])]))
    return done


def fetch_from(name: str, source: Path, folder: Path) -> Path:
    """Install a hand-downloaded checkpoint ``source`` as the official file ``name`` stands for, through the same
    checks as ``fetch`` (not HTML, pinned sha256 or strict layout); ``source`` itself is copied, never moved.

    ``name`` is an official file name, or a method whose files include one named like ``source``; a method
    with one weight file takes any file name."""
    if not source.is_file():
        raise UserError(f"--from {source}: no such file")
    entries = _entries_for(name)
    if len(entries) > 1:
        entries = [e for e in entries if e.file.file_name == source.name]
    if len(entries) != 1:
        names = ", ".join(e.file.file_name for e in _entries_for(name))
        raise UserError(f"--from {source}: say which file of {name} it is: "
                        f"`refsr-bench weights fetch FILE_NAME --from {source}` with FILE_NAME one of {names}")
    entry = entries[0]
    folder.mkdir(parents=True, exist_ok=True)
    with staging(folder, f"fetch-{entry.file.file_name}") as stage:
        part = stage / entry.file.file_name
        shutil.copyfile(source, part)
        return _verify_and_install(card(entry.method), entry.file, part, folder, str(source))
