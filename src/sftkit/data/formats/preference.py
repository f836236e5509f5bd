"""Preference pairs without a turn list: ``prompt`` (or ``question``) + ``chosen`` + ``rejected`` (TRL style).

Turn-list pairs (LLaMA-Factory's DPO demo) are read by the ShareGPT converter and Alpaca-style pairs
by the Alpaca converter; this one dispatches to them, so ``--format preference`` reads any of them.
"""

from __future__ import annotations

from sftkit.data.formats.alpaca import convert_alpaca
from sftkit.data.formats.base import Ctx, register, text
from sftkit.data.formats.sharegpt import convert_sharegpt, finish
from sftkit.data.formats.turns import parse_turns
from sftkit.errors import RecordError


@register("preference", detect=lambda r: "chosen" in r and "rejected" in r, priority=35)
def convert_preference(raw: dict, ctx: Ctx) -> dict:
    """A prompt and a chosen / rejected reply pair (TRL, LLaMA-Factory alpaca or sharegpt shape)."""
    if "conversations" in raw or "messages" in raw:
        return convert_sharegpt(raw, ctx)
    if "instruction" in raw:
        return convert_alpaca(raw, ctx)
    key = next((k for k in ("prompt", "question", "query") if k in raw), None)
    if key is None:
        raise RecordError("prompt", "missing field (a preference pair needs prompt, chosen and rejected)")
    value = raw[key]
    if isinstance(value, list):
        messages, _ = parse_turns(value, key, ctx)
    else:
        messages = [{"role": "user", "content": text(value, key, ctx)}]
    return finish(raw, ctx, messages, {key})
