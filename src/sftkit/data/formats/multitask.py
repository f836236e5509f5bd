"""Multi-task: ``task_type``, ``source_lang``, ``target_lang``, ``source_text``, ``target_text``.

An instruction is built from the task (and languages), the source text goes in the prompt and the
target text is the reply; task type and languages go to meta.
"""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, get_text, register
from sftkit.data.formats.sharegpt import finish

_LANGS = {"zh": "Chinese", "en": "English", "ja": "Japanese", "ko": "Korean", "fr": "French", "de": "German",
          "es": "Spanish", "ru": "Russian", "ar": "Arabic", "pt": "Portuguese", "it": "Italian"}
_TASKS = {
    "translation": "Translate the following {src} text into {tgt}.",
    "summarization": "Summarize the following {src} text in {tgt}.",
    "paraphrase": "Paraphrase the following {src} text in {tgt}.",
    "qa": "Answer the question in {tgt}.",
    "classification": "Classify the following {src} text.",
}


def _lang(code: str) -> str:
    return _LANGS.get(code.strip().lower().split("-")[0], code) if code else ""


@register("multitask", detect=lambda r: "task_type" in r and ("source_text" in r or "target_text" in r), priority=26)
def convert_multitask(raw: dict, ctx: Ctx) -> dict:
    """Task instruction + source text -> target text."""
    task = get_text(raw, "task_type", ctx)
    src = _lang(get_text(raw, "source_lang", ctx, required=False))
    tgt = _lang(get_text(raw, "target_lang", ctx, required=False)) or src
    template = _TASKS.get(task.strip().lower().replace(" ", "_"))
    if template:
        instruction = template.format(src=src or "given", tgt=tgt or "the same language").replace("  ", " ")
    else:
        instruction = f"Task: {task}" + (f" ({src} -> {tgt})" if src and tgt and src != tgt else "") + "."
    prompt = f"{instruction}\n\n{get_text(raw, 'source_text', ctx)}"
    messages = [{"role": "user", "content": prompt},
                {"role": "assistant", "content": get_text(raw, "target_text", ctx)}]
    meta = {k: raw[k] for k in ("task_type", "source_lang", "target_lang") if k in raw}
    return finish(raw, ctx, messages, {"task_type", "source_lang", "target_lang", "source_text", "target_text"}, meta)
