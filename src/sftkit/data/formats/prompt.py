"""Prompt-only records: what ``sftkit generate`` (and later a server or RL rollouts) reply to.

``{"prompt" | "question" | "query" | "instruction" (+ "input"): ...}`` with no reply field, or a turn list
(``messages`` / ``conversations``) that ends with a user (or tool) turn. The result is a conversation that ends
with a user turn. Detected only when no reply field is present, so records with replies keep their own format.
Outside generation the record is read by the format it would otherwise have (alpaca, qa, ShareGPT, ...), so
training refuses it exactly as before (e.g. ``output: missing field``).
"""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, register, text
from sftkit.data.formats.sharegpt import convert_sharegpt, finish, with_system
from sftkit.errors import RecordError

PROMPT_KEYS = ("prompt", "question", "query", "instruction")
REPLY_KEYS = ("output", "answer", "completion", "response", "chosen", "rejected", "label")  # "reference" stays in meta
_TURN_KEYS = ("messages", "conversations")


def _last_role(turns) -> str | None:
    last = turns[-1] if isinstance(turns, list) and turns else None
    role = last.get("role", last.get("from")) if isinstance(last, dict) else None
    return role.strip().lower() if isinstance(role, str) else None


def is_prompt_only(raw: dict) -> bool:
    """True for a record with a prompt and no reply (turn lists: ending with a user or tool turn)."""
    if any(k in raw for k in REPLY_KEYS):
        return False
    key = next((k for k in _TURN_KEYS if k in raw), None)
    if key is not None:
        return _last_role(raw[key]) in ("user", "human", "tool", "observation", "function")
    return any(k in raw for k in PROMPT_KEYS) and not {"chunks", "turns", "problem", "caption"} & set(raw)


@register("prompt", detect=is_prompt_only, priority=5)
def convert_prompt(raw: dict, ctx: Ctx) -> dict:
    """A prompt with no reply (a conversation ending with a user turn), for generation."""
    if any(k in raw for k in _TURN_KEYS):
        return convert_sharegpt(raw, ctx)
    if not ctx.options.prompts or not is_prompt_only(raw):
        # training (or a record of another shape in a prompt file): the record's own format decides, and says
        # what is missing (e.g. ``output: missing field``)
        from sftkit.data.formats.base import FORMATS

        other = next((f for f in sorted(FORMATS.values(), key=lambda f: f.priority)
                      if f.name != "prompt" and f.detect(raw)), None)
        if other is None and ctx.options.prompts:
            raise RecordError("prompt", f"no prompt to reply to (one of {', '.join(PROMPT_KEYS)}, messages, text)")
        if other is None:
            raise RecordError(_reply_field(raw), "missing field (a prompt-only record has nothing to learn from)")
        return other.convert(raw, ctx)
    if "instruction" in raw:
        parts = [t for k in ("instruction", "input") if (t := text(raw.get(k), k, ctx, required=False))]
        used = {"instruction", "input"}
    else:
        key = next(k for k in PROMPT_KEYS if k in raw)
        parts, used = [text(raw[key], key, ctx)], {key}
    if not parts or not "".join(parts).strip():
        raise RecordError(next(k for k in PROMPT_KEYS if k in raw), "blank prompt")
    messages = with_system([{"role": "user", "content": "\n".join(parts)}], raw, "system", ctx, used)
    return finish(raw, ctx, messages, used)


def _reply_field(raw: dict) -> str:
    return "output" if "instruction" in raw else "answer" if "question" in raw else "completion"
