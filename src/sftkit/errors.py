"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class SftkitError(Exception):
    """A user-facing error: bad file, bad option, unknown format. Printed as one line, exit code 2."""


class RecordError(Exception):
    """One record cannot be converted: names the field and the reason (file and line are added later)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
