"""Writing canonical records and rejects: the strict-JSON check every record passes, media paths made
relative to a data root, and rejects lines that never fail to write (their raw value is kept as text)."""

from __future__ import annotations

import json
import math
import os

from sftkit.errors import RecordError
from sftkit.schema import MEDIA_KINDS

_STRICT = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def writable(rec: dict) -> None:
    """Raise RecordError naming the field when ``rec`` is not strict UTF-8 JSON (lone surrogate, NaN, huge int)."""
    try:
        _STRICT(rec).encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError) as e:
        fld, reason = _unwritable(rec)
        raise RecordError(fld, reason or f"cannot be written as JSON ({type(e).__name__})") from None


def _unwritable(rec: dict) -> tuple[str, str | None]:
    """The first value that strict UTF-8 JSON cannot hold, as (field path, reason); walked without recursion."""
    stack: list[tuple[str, object, int]] = [("", rec, 0)]
    while stack:
        path, value, depth = stack.pop()
        if depth > 500:
            return path, "nested too deeply"
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                return path, f"text holds a lone surrogate (U+{ord(value[e.start]):04X}), which is not valid Unicode"
        elif isinstance(value, float) and not math.isfinite(value):
            return path, "NaN / Infinity is not valid JSON"
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 14000:
            return path, "integer too long to write"
        elif isinstance(value, dict):
            for k, v in reversed(value.items()):
                stack.append((f"{path}.{k}" if path else str(k), k, depth + 1))
                stack.append((f"{path}.{k}" if path else str(k), v, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v, depth + 1) for i, v in reversed(list(enumerate(value))))
    return "", None


def relative_media(rec: dict, root: str, outside: list | None = None) -> dict:
    """A copy of ``rec`` whose absolute media paths under ``root`` are relative to it; paths outside it stay
    absolute (appended to ``outside``); ``data:`` URIs stay as they are."""
    kinds = [k for k in MEDIA_KINDS if rec.get(k)]
    if not kinds:
        return rec
    out = dict(rec)
    prefix = root.rstrip(os.sep) + os.sep
    for k in kinds:
        paths = []
        for p in rec[k]:
            if os.path.isabs(p) and p.startswith(prefix):
                p = os.path.relpath(p, root)
            elif os.path.isabs(p) and outside is not None:
                outside.append(p)
            paths.append(p)
        out[k] = paths
    return out


def reject_line(rej: dict) -> str:
    """One rejects-file line; a raw value strict JSON cannot hold (lone surrogate, NaN, depth) is kept as text."""
    try:
        line = json.dumps(rej, ensure_ascii=False, allow_nan=False, default=str)
        line.encode("utf-8")
        return line
    except (ValueError, UnicodeEncodeError, RecursionError):
        pass
    try:  # \uXXXX escapes keep lone surrogates exactly; NaN is kept inside the raw text
        raw = json.dumps(rej["raw"], ensure_ascii=True, default=str)
    except (ValueError, RecursionError):
        raw = "(the raw record cannot be written: nested too deeply or an integer too long)"
    return json.dumps({**rej, "raw": raw, "raw_as_text": True}, ensure_ascii=True, default=str)
