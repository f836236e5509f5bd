"""ShareGPT (``conversations``), OpenAI (``messages``), their tool-calling, preference and KTO variants.

Covers LLaMA-Factory's ``sharegpt`` formatting (``from``/``value`` with human, gpt, system,
function_call, observation; or ``role``/``content`` via registry ``tags``), OpenAI messages with a
system role-play prompt, glaive-style tool calling with a ``tools`` field, DPO pairs
(``chosen``/``rejected``), KTO (``label`` / ``kto_tag``), image-text (``images`` or ``image_path``), ``videos``
and ``audios``, OpenAI content-part arrays (media parts become placeholders, see ``parts.py``),
``reasoning_content`` and per-message ``loss_weight``.
"""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, extras, get_list, json_type, register, shown, text
from sftkit.data.formats.turns import parse_tools, parse_turns, reply
from sftkit.errors import RecordError
from sftkit.schema import MEDIA_KINDS

_MEDIA_KEYS = {"images": ("images", "image_path", "image"), "videos": ("videos",), "audios": ("audios",)}
_ANY_MEDIA_KEY = frozenset(k for keys in _MEDIA_KEYS.values() for k in keys)


def media(raw: dict, ctx: Ctx, used: set[str]) -> dict[str, list]:
    """Media lists of a record (``images`` / ``image_path``, ``videos``, ``audios``, or content parts); checked later."""
    cols = ctx.options.columns
    if not cols and not ctx.media and _ANY_MEDIA_KEY.isdisjoint(raw):
        return {}  # the common case, kept cheap
    out = {}
    for kind in MEDIA_KINDS:
        from_parts = ctx.media.get(kind)
        keys = (cols[kind],) if cols.get(kind) else _MEDIA_KEYS[kind]
        key = next((k for k in keys if raw.get(k) not in (None, "", [])), None)
        used.update(k for k in keys if k in raw and raw[k] in (None, "", []))  # an empty list says nothing
        if key is None:
            if from_parts:
                out[kind] = list(from_parts)
            continue
        if from_parts:
            raise RecordError(key, f"{kind} given both as content parts and in {key!r}; use one of the two")
        used.add(key)
        value = raw[key]
        paths = value if isinstance(value, list) else [value]
        for i, p in enumerate(paths):
            if not isinstance(p, str) or not p.strip():
                raise RecordError(f"{key}[{i}]" if isinstance(value, list) else key,
                                  f"expected a file path, got a JSON {json_type(p)}")
        out[kind] = paths
    return out


def with_system(messages: list[dict], raw: dict, key: str, ctx: Ctx, used: set[str]) -> list[dict]:
    """Prepend the record-level system prompt (``system`` column) unless the turns already start with one."""
    if key in raw:
        used.add(key)
        system = text(raw[key], key, ctx, required=False)
        if system.strip():
            if messages and messages[0]["role"] == "system":
                ctx.warn("system_ignored", key, "turns already start with a system message; field ignored")
            else:
                return [{"role": "system", "content": system}, *messages]
    return messages


def finish(raw: dict, ctx: Ctx, messages: list[dict], used: set[str], meta: dict | None = None,
           pair: tuple[dict, dict] | None = None) -> dict:
    """Attach tools, media, preference (``pair`` or chosen / rejected keys) or KTO fields to converted turns
    and build the canonical record."""
    cols = ctx.options.columns
    tools_key = cols.get("tools", "tools") if cols else "tools"
    tools = parse_tools(raw[tools_key], tools_key) if tools_key in raw else []
    used.add(tools_key)
    found = media(raw, ctx, used)
    rec = {"messages": messages, "images": found.pop("images", []), "tools": tools, **found}
    if pair is not None:
        rec["chosen"], rec["rejected"] = pair
    elif is_preference(raw, ctx):
        ck, rk = cols.get("chosen", "chosen"), cols.get("rejected", "rejected")
        if ck not in raw or rk not in raw:
            raise RecordError(rk if ck in raw else ck, "missing field (a preference pair needs both chosen and rejected)")
        used.update((ck, rk))
        rec["chosen"] = reply(raw[ck], ck, ctx)
        rec["rejected"] = reply(raw[rk], rk, ctx)
    else:
        # an explicit registry kto_tag column, or a boolean `label` / `kto_tag` (other labels stay in meta)
        key = cols.get("kto_tag") if cols else None
        if key is None:
            key = "label" if type(raw.get("label")) is bool else "kto_tag" if type(raw.get("kto_tag")) is bool else None
        if key is not None and key in raw:
            used.add(key)
            rec["label"] = _label(raw[key], key, ctx)
    rec["meta"] = extras(raw, used, meta, ctx)
    return rec


def is_preference(raw: dict, ctx: Ctx) -> bool:
    """True when the record is meant as a chosen/rejected pair (registry ``ranking``, or either key present:
    a pair missing one half is then refused naming that key, not read as a conversation)."""
    cols = ctx.options.columns or {}
    return ctx.options.ranking or cols.get("chosen", "chosen") in raw or cols.get("rejected", "rejected") in raw


def _label(value, field: str, ctx: Ctx) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        ctx.warn("label_as_text", field, f"label {value!r} read as a boolean")
        return value.strip().lower() in ("true", "1")
    if value in (0, 1):
        ctx.warn("label_as_number", field, f"label {value!r} read as a boolean")
        return bool(value)
    raise RecordError(field, f"KTO label must be true or false, got {shown(value)}")


def _messages_key(raw: dict, ctx: Ctx) -> str:
    key = ctx.options.columns.get("messages")
    if key:
        return key
    return next((k for k in ("conversations", "messages") if k in raw), "conversations")


@register("sharegpt", detect=lambda r: "conversations" in r, priority=40)
def convert_sharegpt(raw: dict, ctx: Ctx) -> dict:
    """ShareGPT / OpenAI turn lists, incl. tool calls, DPO, KTO and images."""
    key = _messages_key(raw, ctx)
    messages, turn_meta = parse_turns(get_list(raw, key), key, ctx)
    used = {key}
    messages = with_system(messages, raw, ctx.options.columns.get("system", "system"), ctx, used)
    return finish(raw, ctx, messages, used, {"turns": turn_meta} if turn_meta else None)


register("openai", detect=lambda r: "messages" in r, priority=41)(convert_sharegpt)
