"""User-facing errors.

Anything a user can cause (a bad file, an unknown board, a model that does not
fit) raises TinygenError; the CLI prints its message as one line and exits
non-zero.  Everything else is a bug and is allowed to show a traceback.
"""


class TinygenError(Exception):
    """An error the user can act on; str() is the one line the CLI prints."""

    exit_code = 2


class VerificationFailed(TinygenError):
    """The device's outputs differ from the reference beyond the tolerance."""

    exit_code = 1
