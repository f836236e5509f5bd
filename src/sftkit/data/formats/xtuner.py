"""XTuner: ``conversation`` = list of ``{system?, input, output}`` pairs, one per round."""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, get_list, json_type, register, text
from sftkit.data.formats.sharegpt import finish
from sftkit.errors import RecordError


@register("xtuner", detect=lambda r: isinstance(r.get("conversation"), list), priority=42)
def convert_xtuner(raw: dict, ctx: Ctx) -> dict:
    """XTuner conversation pairs; a system prompt is allowed in the first pair only."""
    messages = []
    for i, pair in enumerate(get_list(raw, "conversation")):
        where = f"conversation[{i}]"
        if not isinstance(pair, dict):
            raise RecordError(where, f"expected an object with input and output, got a JSON {json_type(pair)}")
        system = text(pair.get("system"), f"{where}.system", ctx, required=False)
        if system.strip():
            if i:
                raise RecordError(f"{where}.system", "system may only come first (in conversation[0])")
            messages.append({"role": "system", "content": system})
        for key, role in (("input", "user"), ("output", "assistant")):
            if key not in pair:
                raise RecordError(f"{where}.{key}", "missing field")
            messages.append({"role": role, "content": text(pair[key], f"{where}.{key}", ctx)})
    return finish(raw, ctx, messages, {"conversation"})
