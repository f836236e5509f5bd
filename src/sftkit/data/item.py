"""What a reader yields: one record as read, with its file, line and index, and either the parsed object or why
it could not be parsed. :class:`Item` sits in its own module because every reader (line files, CSV, the ``.json``
scanner) builds Items and none should reach into another's internals for it; :data:`_SHOWN` bounds how much of a
damaged or oversized record's text a reject keeps, so one huge bad record cannot bloat the rejects file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SHOWN = 2000  # characters of an oversized or damaged region kept for the rejects file


@dataclass(slots=True)
class Item:
    """One record as read: where it came from, and the parsed object or why it could not be parsed."""

    source: str
    line: int | None  # 1-based line where the record starts (None for parquet)
    index: int  # 0-based position of the record in its file
    raw: Any = None
    error: str | None = None  # set when the record could not be parsed
    text: str | None = None  # the unparsed text, kept for the rejects file

    def where(self) -> str:
        """Human-readable location, e.g. ``data.jsonl:12 (index 11)``."""
        loc = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{loc} (index {self.index})"
