"""The user-facing error type, in a module with only standard-library imports so that light modules (cards, the
CLI) can use it without loading torch; and the one "unknown name (did you mean ...?)" message.
``protocols.core`` re-exports ``UserError``."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A problem the user can fix (bad path, bad name, bad file). The CLI prints it without a traceback."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """The one error for a name that is not registered: ``unknown KIND 'name' (did you mean 'x'?); valid: ...``.

    Suggestions are the registered names closest to ``name`` (difflib ratio >= 0.6, case-insensitive, at most
    three, best first); ``valid`` is listed in the order given."""
    import difflib

    choices = list(dict.fromkeys(valid))
    by_lower = {choice.lower(): choice for choice in reversed(choices)}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(by_lower[c]) for c in close)}?)" if close else ""
    return UserError(f"unknown {kind} {name!r}{hint}; valid: {', '.join(choices)}")
