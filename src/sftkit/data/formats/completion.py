"""Prompt / completion pairs (code): whitespace is content, kept byte for byte; ``label`` makes it KTO."""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, get_text, register
from sftkit.data.formats.sharegpt import finish


@register("prompt_completion", detect=lambda r: "completion" in r or ("prompt" in r and "text" not in r), priority=64)
def convert_completion(raw: dict, ctx: Ctx) -> dict:
    """Prompt / completion; nothing is stripped, so indentation and tabs survive."""
    messages = [{"role": "user", "content": get_text(raw, "prompt", ctx)},
                {"role": "assistant", "content": get_text(raw, "completion", ctx)}]
    return finish(raw, ctx, messages, {"prompt", "completion"})
