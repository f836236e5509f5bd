"""Alpaca: ``instruction`` / ``input`` / ``output`` (+ ``system``, ``history``), LLaMA-Factory conventions.

prompt = instruction + "\\n" + input (each only when non-empty), history pairs become earlier turns
that are learned like the last one. With registry ``columns`` any column names work, and
``chosen``/``rejected`` (ranking) or ``kto_tag`` turn it into preference / KTO data.
"""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, register, text
from sftkit.data.formats.sharegpt import finish, is_preference, with_system
from sftkit.errors import RecordError


def _history(value, key: str, ctx: Ctx) -> list[dict]:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise RecordError(key, "history must be a list of [prompt, response] pairs")
    out = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise RecordError(f"{key}[{i}]", "history entry must be a [prompt, response] pair")
        out.append({"role": "user", "content": text(pair[0], f"{key}[{i}][0]", ctx)})
        out.append({"role": "assistant", "content": text(pair[1], f"{key}[{i}][1]", ctx)})
    return out


def prompt_text(raw: dict, keys: tuple[str, ...], ctx: Ctx) -> str:
    """Join the non-empty prompt fields with a newline (LLaMA-Factory's instruction + input rule)."""
    parts = [t for k in keys if k in raw and (t := text(raw[k], k, ctx, required=False))]
    if not parts:
        present = [k for k in keys if k in raw]
        raise RecordError(keys[0], "missing field" if not present else f"{' and '.join(present)} blank")
    return "\n".join(parts)


@register("alpaca", detect=lambda r: "instruction" in r, priority=60)
def convert_alpaca(raw: dict, ctx: Ctx) -> dict:
    """Alpaca instruction / input / output, optional system and history."""
    cols, registry = ctx.options.columns, ctx.options.registry
    pk, qk, rk = cols.get("prompt", "instruction"), cols.get("query", "input"), cols.get("response", "output")
    hk = cols.get("history") if registry else "history"
    used = {pk, qk, rk}
    messages = []
    if hk:
        used.add(hk)
        messages = _history(raw.get(hk), hk, ctx)
    messages.append({"role": "user", "content": prompt_text(raw, (pk, qk), ctx)})
    if ctx.options.ranking and isinstance(raw.get(rk), list) and len(raw[rk]) == 2 and "chosen" not in cols:
        # LLaMA-Factory's older ranking shape: output = [chosen, rejected]
        raw = {**raw, "chosen": raw[rk][0], "rejected": raw[rk][1]}
    if not is_preference(raw, ctx):
        if rk not in raw:
            raise RecordError(rk, "missing field")
        messages.append({"role": "assistant", "content": text(raw[rk], rk, ctx)})
    sk = cols.get("system") if registry else "system"
    if sk and sk in raw:
        messages = with_system(messages, raw, sk, ctx, used)
    return finish(raw, ctx, messages, used)
