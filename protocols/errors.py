"""The user-facing error type and the unknown-name message, in a module that imports nothing of the suite, so
that light modules (cards, the CLI) can use it without loading torch. ``protocols.core`` re-exports it."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A problem the user can fix (bad path, bad name, bad file). The CLI prints it without a traceback."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """The one error for a name that is not one of ``valid`` (a method, dataset, metric, preset ...): it names
    the kind, the name given and every valid choice. Every registry lookup builds its message here."""
    return UserError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")
