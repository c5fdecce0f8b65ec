"""The exception types that reach the user as a single clear line."""


class CnnlabError(Exception):
    """A problem with the user's input or environment, worded for the user.

    The CLI prints it as one line (``cnnlab: error: ...``) and exits non-zero; it never
    shows a stack trace for these.
    """


class Interrupted(CnnlabError):
    """A long job stopped by Ctrl-C or SIGTERM, after saving what lets it continue.

    ``what`` says what happened; the message adds ``hint``, how to continue. ``partial``: what
    the job had done when it stopped, for its caller to keep."""

    def __init__(self, what: str, hint: str = "", partial: object = None) -> None:
        super().__init__(f"{what} {hint}".strip())
        self.what = what
        self.partial = partial
