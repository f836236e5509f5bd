"""Preference pairs without a turn list: ``prompt`` (or ``question``) + ``chosen`` + ``rejected`` (TRL style).

Turn-list pairs (LLaMA-Factory's DPO demo) are read by the ShareGPT converter and Alpaca-style pairs
by the Alpaca converter; this one dispatches to them, so ``--format preference`` reads any of them.
Two whole conversations sharing a prompt (``chosen_messages`` / ``rejected_messages``, as newer
LLaMA-Factory and TRL files hold them) become one pair: the shared prompt plus each final assistant turn.
"""

from __future__ import annotations

from sftkit.data.formats.alpaca import convert_alpaca
from sftkit.data.formats.base import Ctx, get_list, register, text
from sftkit.data.formats.sharegpt import convert_sharegpt, finish
from sftkit.data.formats.turns import parse_turns
from sftkit.errors import RecordError


def _detect(r: dict) -> bool:
    # either half is enough: a pair missing the other is refused naming it, not read as another format
    return any(k in r for k in ("chosen", "rejected", "chosen_messages", "rejected_messages"))


@register("preference", detect=_detect, priority=35)
def convert_preference(raw: dict, ctx: Ctx) -> dict:
    """A prompt and a chosen / rejected reply pair (TRL, LLaMA-Factory alpaca or sharegpt shape, chosen_messages)."""
    if "chosen_messages" in raw or "rejected_messages" in raw:
        return convert_pair_conversations(raw, ctx)
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


def _conversation(raw: dict, key: str, ctx: Ctx) -> tuple[list[dict], list[dict], dict]:
    """One whole conversation of a pair: (messages, per-turn extras, media from content parts)."""
    saved, ctx.media = ctx.media, {}
    messages, turn_meta = parse_turns(get_list(raw, key), key, ctx)
    found, ctx.media = ctx.media, saved
    if not messages or messages[-1]["role"] != "assistant":
        raise RecordError(key, "must end with an assistant turn (the reply being compared)")
    return messages, turn_meta, found


def convert_pair_conversations(raw: dict, ctx: Ctx) -> dict:
    """``chosen_messages`` / ``rejected_messages`` (two conversations sharing a prompt) to one preference record."""
    chosen, chosen_turns, media = _conversation(raw, "chosen_messages", ctx)
    rejected, rejected_turns, rejected_media = _conversation(raw, "rejected_messages", ctx)
    if chosen[:-1] != rejected[:-1] or media != rejected_media:
        raise RecordError("rejected_messages", "chosen_messages and rejected_messages must share the same prompt "
                          "(every turn before the final assistant reply)")
    ctx.media = media
    meta = {k: v for k, v in (("turns", chosen_turns), ("rejected_turns", rejected_turns)) if v}
    used = {"chosen_messages", "rejected_messages"}
    return finish(raw, ctx, chosen[:-1], used, meta or None, pair=(chosen[-1], rejected[-1]))
