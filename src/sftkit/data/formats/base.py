"""What every converter shares: the format registry, the per-record context and field helpers.

A converter is a pure function ``convert(raw: dict, ctx: Ctx) -> dict | list[dict]``: no I/O, no
tokenization. It raises :class:`~sftkit.errors.RecordError` naming the source field for anything it
cannot convert (never any other exception, whatever the record holds), and reports non-fatal fixes
through ``ctx.warn``. JSON held inside a string (``tools``, function-call arguments) is parsed with
:func:`loads`, so a malformed, too deeply nested or too long-numbered one is a reject, not a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sftkit.errors import RecordError
from sftkit.schema import valid_origin
from sftkit.textutil import has_cjk, json_type  # noqa: F401  (re-exported for converters)


@dataclass
class Options:
    """Converter options chosen by the user (all optional)."""

    repairs: frozenset[str] = frozenset()  # e.g. {"alternate-roles"}
    speaker_map: dict[str, str] = field(default_factory=dict)  # dialog speaker -> role
    columns: dict[str, str] = field(default_factory=dict)  # LLaMA-Factory registry `columns`
    tags: dict[str, str] = field(default_factory=dict)  # LLaMA-Factory registry `tags`
    ranking: bool = False  # LLaMA-Factory registry `ranking`
    registry: bool = False  # read through a dataset_info.json entry: only its listed columns count
    prompts: bool = False  # generation input: a conversation may end with the user turn to reply to


class Ctx:
    """Per-record scratchpad: options in, warnings, repairs and media found in content parts out."""

    __slots__ = ("options", "warnings", "repairs", "media")

    def __init__(self, options: Options):
        self.options = options
        self.warnings: list[tuple[str, str, str]] = []  # (kind, field, message)
        self.repairs: list[str] = []
        self.media: dict[str, list[str]] = {}  # kind -> entries, in placeholder order (OpenAI content parts)

    def warn(self, kind: str, field_: str, message: str) -> None:
        """Record a non-fatal problem of a given kind (counted by kind in reports)."""
        self.warnings.append((kind, field_, message))


Converter = Callable[[dict, Ctx], "dict | list[dict]"]


@dataclass(frozen=True)
class Format:
    """A registered source format: its converter and how to recognise it from a record's keys."""

    name: str
    convert: Converter
    detect: Callable[[dict], bool]
    priority: int
    doc: str


FORMATS: dict[str, Format] = {}


def register(name: str, detect: Callable[[dict], bool], priority: int = 50):
    """Register a converter under ``name``; lower ``priority`` is tried first when detecting."""

    def deco(fn: Converter) -> Converter:
        FORMATS[name] = Format(name, fn, detect, priority, (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def text(value: Any, field_: str, ctx: Ctx, *, required: bool = True) -> str:
    """Return ``value`` as text: numbers and booleans become text with a warning; lists/objects are rejected."""
    if type(value) is str:
        return value
    if value is None:
        if required:
            raise RecordError(field_, "missing" if field_ else "missing text")
        return ""
    if isinstance(value, bool | int | float):
        try:
            as_text = str(value).lower() if isinstance(value, bool) else str(value)
        except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
            raise RecordError(field_, "number too long to read as text") from None
        ctx.warn("number_as_text", field_, f"{json_type(value)} {as_text} converted to text")
        return as_text
    raise RecordError(field_, f"expected text, got a JSON {json_type(value)}")


def shown(value: Any, limit: int = 60) -> str:
    """A short, always printable rendering of a source value for a reason (long text cut, huge numbers named)."""
    if isinstance(value, list | dict):
        return f"a JSON {json_type(value)}"
    try:
        out = repr(value)
    except ValueError:  # an integer of more digits than Python prints
        return "a very long number"
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(value: str, field_: str, what: str):
    """Parse JSON held in a string field as strict JSON (no NaN / Infinity; text that decodes to a lone
    surrogate is refused); anything it cannot parse is a RecordError naming the field."""
    try:
        out = json.loads(value, parse_constant=_no_constant)
        if "\\u" in value:  # an escape may decode to a lone surrogate, which no later step can write
            json.dumps(out, ensure_ascii=False).encode("utf-8")
        return out
    except json.JSONDecodeError as e:
        raise RecordError(field_, f"{what} is not valid JSON ({e.msg})") from None
    except RecursionError:
        raise RecordError(field_, f"{what} is nested too deeply") from None
    except UnicodeEncodeError:
        raise RecordError(field_, f"{what} holds a lone surrogate (an unpaired \\ud800-\\udfff escape)") from None
    except ValueError as e:  # an integer of more digits than Python converts, NaN / Infinity
        raise RecordError(field_, f"{what} cannot be read ({e})") from None


def dumps(value, field_: str, what: str) -> str:
    """JSON text of a value for a string field (tool-call arguments); unwritable values are a RecordError."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise RecordError(field_, f"{what} is nested too deeply") from None
    except ValueError as e:  # NaN / Infinity, or an integer too long to write
        raise RecordError(field_, f"{what} cannot be written as JSON ({e})") from None


def get_text(raw: dict, key: str, ctx: Ctx, *, required: bool = True) -> str:
    """Text of ``raw[key]``, naming the key when it is missing or of the wrong type."""
    if required and key not in raw:
        raise RecordError(key, "missing field")
    return text(raw.get(key), key, ctx, required=required)


def get_list(raw: dict, key: str, *, required: bool = True) -> list:
    """``raw[key]`` as a list, naming the key when it is missing or not a list."""
    value = raw.get(key)
    if value is None:
        if required:
            raise RecordError(key, "missing field")
        return []
    if not isinstance(value, list):
        raise RecordError(key, f"expected a list, got a JSON {json_type(value)}")
    return value


def extras(raw: dict, used: tuple[str, ...] | set[str] | frozenset[str], meta: dict | None = None,
           ctx: Ctx | None = None) -> dict:
    """Meta for a record: the source's ``meta``, the converter's ``meta`` and every source key no converter
    consumed. Nothing is lost: a non-object ``meta`` is kept as ``meta["meta"]``, and a key that collides with
    one of the source's ``meta`` keeps ``meta``'s value and goes under a free name ``<key>_top`` (warned).
    A valid ``origin`` is lineage, not metadata: the pipeline keeps it at the top level."""
    src = raw.get("meta")
    out = dict(src) if isinstance(src, dict) else {}
    if src is not None and not isinstance(src, dict):
        put_meta(out, "meta", src, ctx)
        _warn(ctx, "meta_not_object", "meta", f"meta is a JSON {json_type(src)}, not an object; kept as meta.meta")
    for k, v in (meta or {}).items():
        put_meta(out, k, v, ctx)
    for k, v in raw.items():
        if k not in used and k != "meta" and not (k == "origin" and valid_origin(v)):
            put_meta(out, k, v, ctx)
    return out


def put_meta(out: dict, key: str, value, ctx: Ctx | None) -> None:
    """Add ``key`` to a meta dict without overwriting: a different value already there wins, the new one goes
    under ``<key>_top`` (``_top2``...) with a warning."""
    if key not in out:
        out[key] = value
        return
    if _same(out[key], value):
        return
    free, n = f"{key}_top", 2
    while free in out:
        free, n = f"{key}_top{n}", n + 1
    out[free] = value
    _warn(ctx, "meta_key_collision", key, f"{key!r} is both in meta and elsewhere in the record; meta's value "
          f"kept, the other stored as {free!r}")


def _same(a, b) -> bool:
    try:
        return type(a) is type(b) and a == b
    except RecursionError:
        return False


def _warn(ctx: Ctx | None, kind: str, field_: str, message: str) -> None:
    if ctx is not None:
        ctx.warn(kind, field_, message)
