"""Legal cases: ``case_id``, ``legal_issue``, ``facts``, ``judgment``, ``citations``.

Prompt = the legal issue and the facts; reply = the judgment; case id and citations go to meta.
"""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, get_text, has_cjk, register
from sftkit.data.formats.sharegpt import finish


@register("legal", detect=lambda r: "judgment" in r or "legal_issue" in r, priority=22)
def convert_legal(raw: dict, ctx: Ctx) -> dict:
    """Legal issue + facts -> judgment; case id and citations kept in meta."""
    issue = get_text(raw, "legal_issue", ctx, required=False)
    facts = get_text(raw, "facts", ctx, required=False)
    judgment = get_text(raw, "judgment", ctx)
    zh = has_cjk(issue + facts)
    labels = ("法律问题：", "案件事实：") if zh else ("Legal issue: ", "Facts: ")
    prompt = "\n".join(f"{label}{value}" for label, value in zip(labels, (issue, facts), strict=True) if value.strip())
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": judgment}]
    meta = {k: raw[k] for k in ("case_id", "citations") if k in raw}
    return finish(raw, ctx, messages, {"legal_issue", "facts", "judgment", "case_id", "citations"}, meta)
