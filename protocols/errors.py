"""The user-facing error type, in a module with no imports so that light modules (cards, the CLI) can use it
without loading torch. ``protocols.core`` re-exports it."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad name, bad file). The CLI prints it without a traceback."""
