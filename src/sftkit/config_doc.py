"""Config fields as a reader sees them: ``sftkit train --help-config`` and what a UI can build a form from."""

from __future__ import annotations

import types
import typing
from typing import Literal, Union

import yaml
from pydantic import BaseModel


def _type_name(ann) -> str:
    """A field's type as a reader writes it: ``int | None``, ``linear|cosine``, ``list[str]``."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return "|".join(map(str, args))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"
    return "none" if ann is type(None) else getattr(ann, "__name__", str(ann))


def describe_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every config field as (dotted key, type, default, description), sections expanded: what ``sftkit train
    --help-config`` prints and what a UI can build a form from."""
    rows = []
    for name, f in model.model_fields.items():
        key, ann = prefix + name, f.annotation
        section = isinstance(ann, type) and issubclass(ann, BaseModel)
        if f.is_required():
            default = "required"
        elif section:
            default = ""
        else:
            value = f.get_default(call_default_factory=True)
            if isinstance(value, list):  # e.g. rl.rewards: a list of sections
                value = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
            default = "none" if value is None else yaml.safe_dump(value, default_flow_style=True).strip()
            default = default.removesuffix("\n...").strip()
        rows.append((key, "section" if section else _type_name(ann), default, f.description or ""))
        if section:
            rows += describe_fields(ann, key + ".")
        item = (typing.get_args(ann) or (None,))[0]
        if typing.get_origin(ann) is list and isinstance(item, type) and issubclass(item, BaseModel):
            rows += describe_fields(item, key + "[].")  # e.g. data.datasets[].path
    return rows


def format_fields(model: type[BaseModel]) -> str:
    """``describe_fields`` as aligned text, one field per line (sections as headings)."""
    lines = []
    for key, kind, default, doc in describe_fields(model):
        if kind == "section":
            lines.append(f"\n{key}:  {doc}")
            continue
        shown = f" = {default}" if default else ""
        lines.append(f"  {key}: {kind}{shown}\n      {doc}" if doc else f"  {key}: {kind}{shown}")
    return "\n".join(lines).strip("\n") + "\n"
