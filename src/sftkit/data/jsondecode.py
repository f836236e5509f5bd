"""Strict decoding of one JSON value, shared by the ``.jsonl`` and ``.json`` readers so that both reject the same
values for the same reasons. :data:`_DECODER` refuses NaN, Infinity and numbers too large for a float;
:func:`_value_problem` refuses values nested deeper than :data:`MAX_DEPTH` and strings holding a lone surrogate
(which no UTF-8 file can hold); :func:`_parse_reason` turns any decoding failure into the one-line reject reason
the pipeline reports; :func:`_parse_bytes` decodes the exact bytes of one value that the ``.json`` scanner located.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 100  # records nested deeper than this many arrays/objects are rejected


class _Rejected(ValueError):
    """A JSON value that parses but must not be used (NaN, Infinity)."""


def _refuse_constant(name: str):
    raise _Rejected(f"{name} is not valid JSON (JSON numbers cannot be NaN or infinite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Rejected(f"number {text[:40]} is too large (it would become Infinity)")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _value_problem(raw: Any, data: bytes | bytearray, depth_known: bool = False) -> str | None:
    """Why a parsed value must be rejected although it parsed (too deep, lone surrogate), or None.

    Cheap for ordinary records: the walks run only when the raw text has many brackets or surrogate escapes.
    """
    if not depth_known and data.count(b"{") + data.count(b"[") > MAX_DEPTH and _too_deep(raw):
        return f"nesting deeper than {MAX_DEPTH} levels"
    if _SURROGATE_ESCAPE.search(data):
        m = _SURROGATE.search(json.dumps(raw, ensure_ascii=False))
        if m:
            return f"string holds a lone surrogate (\\u{ord(m.group()):04x})"
    return None


def _too_deep(raw: Any) -> bool:
    stack = [(raw, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = obj.values() if type(obj) is dict else obj if type(obj) is list else ()
        stack.extend((c, depth + 1) for c in children if type(c) in (dict, list))
    return False


def _parse_reason(e: Exception) -> str:
    """The reject reason for an exception raised while decoding one JSON value."""
    if isinstance(e, RecursionError):
        return f"nesting deeper than {MAX_DEPTH} levels"
    if isinstance(e, _Rejected):
        return str(e)
    if isinstance(e, json.JSONDecodeError):
        return f"malformed JSON: {e.msg.removesuffix(' at')}"  # "Invalid control character at"
    text = str(e).split(";")[0]  # int(): "Exceeds the limit (4300 digits) ...; use sys.set_int_max_str_digits()"
    return f"number too long: {text}" if "integer string conversion" in text else f"unreadable JSON value: {text}"


def _parse_bytes(data: bytes | bytearray) -> tuple[Any, str, int]:
    """Decode one JSON value; return ``(value, "", 0)`` or ``(None, reason, byte offset of the problem)``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 (byte 0x{data[e.start]:02x})", e.start
    try:
        raw, end = _DECODER.raw_decode(text)  # the scanner found the value's exact extent
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except (ValueError, RecursionError) as e:
        pos = e.pos if isinstance(e, json.JSONDecodeError) else 0
        return None, _parse_reason(e), len(text[:pos].encode("utf-8", "surrogatepass"))
    problem = _value_problem(raw, data, depth_known=True)  # the scanner counted the depth
    return (None, problem, 0) if problem else (raw, "", 0)
