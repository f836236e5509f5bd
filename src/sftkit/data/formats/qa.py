"""QA: ``question`` / ``answer`` (+ ``context``); GSM8K's ``#### N`` answer goes to meta as the final answer."""

from __future__ import annotations

import re

from sftkit.data.formats.base import Ctx, get_text, register
from sftkit.data.formats.sharegpt import finish

_FINAL = re.compile(r"####\s*(.+?)\s*$")


@register("qa", detect=lambda r: "question" in r and "prompt" not in r, priority=62)
def convert_qa(raw: dict, ctx: Ctx) -> dict:
    """Question / answer with optional context (context goes into the prompt before the question)."""
    question = get_text(raw, "question", ctx)
    answer = get_text(raw, "answer", ctx)
    context = get_text(raw, "context", ctx, required=False)
    prompt = f"{context}\n\n{question}" if context.strip() else question
    meta = {}
    if m := _FINAL.search(answer):
        meta["final_answer"] = m.group(1)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return finish(raw, ctx, messages, {"question", "answer", "context"}, meta)
