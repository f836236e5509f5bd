"""Source formats: one pure converter per format, all registered in ``FORMATS`` by name."""

from sftkit.data.formats import (  # noqa: F401  (importing registers each format)
    alpaca,
    canonical,
    completion,
    cot,
    dialog,
    image_text,
    legal,
    multitask,
    preference,
    prompt,
    qa,
    sharegpt,
    text,
    xtuner,
)
from sftkit.data.formats.base import FORMATS, Ctx, Format, Options

__all__ = ["FORMATS", "Ctx", "Format", "Options", "detect_format"]


def detect_format(raw: dict) -> str | None:
    """Name of the first format (by priority) whose keys match the record, or None."""
    for fmt in sorted(FORMATS.values(), key=lambda f: f.priority):
        if fmt.detect(raw):
            return fmt.name
    return None
