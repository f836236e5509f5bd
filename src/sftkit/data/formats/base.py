"""What every converter shares: the format registry, the per-record context and field helpers.

A converter is a pure function ``convert(raw: dict, ctx: Ctx) -> dict | list[dict]``: no I/O, no
tokenization. It raises :class:`~sftkit.errors.RecordError` naming the source field for anything it
cannot convert, and reports non-fatal fixes through ``ctx.warn``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sftkit.errors import RecordError
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


class Ctx:
    """Per-record scratchpad: options in, warnings and repairs out."""

    __slots__ = ("options", "warnings", "repairs")

    def __init__(self, options: Options):
        self.options = options
        self.warnings: list[tuple[str, str, str]] = []  # (kind, field, message)
        self.repairs: list[str] = []

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
        ctx.warn("number_as_text", field_, f"{json_type(value)} {value!r} converted to text")
        return str(value).lower() if isinstance(value, bool) else str(value)
    raise RecordError(field_, f"expected text, got a JSON {json_type(value)}")


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


def extras(raw: dict, used: tuple[str, ...] | set[str] | frozenset[str], meta: dict | None = None) -> dict:
    """Meta for a record: ``meta`` plus every source key no converter consumed (nothing is lost)."""
    out = dict(raw["meta"]) if isinstance(raw.get("meta"), dict) else {}
    if meta:
        out.update(meta)
    for k, v in raw.items():
        if k not in used and k != "meta":
            out[k] = v
    return out
