"""Turn lists (ShareGPT ``from``/``value``, OpenAI ``role``/``content``) to canonical messages.

Shared by every converter whose source holds a list of turns, so role names, tool calls and the
bare-string repair behave the same everywhere.
"""

from __future__ import annotations

import json
from typing import Any

from sftkit.data.formats.base import Ctx, json_type, text
from sftkit.errors import RecordError

# Role names seen in real data -> canonical role ("function_call" becomes an assistant tool call).
ROLE_ALIASES = {
    "user": "user", "human": "user", "system": "system", "assistant": "assistant", "gpt": "assistant",
    "bot": "assistant", "model": "assistant", "chatgpt": "assistant", "tool": "tool", "observation": "tool",
    "function": "tool", "ipython": "tool", "function_call": "function_call", "tool_call": "function_call",
}
_MESSAGE_KEYS = ("tool_calls", "tool_call_id", "name")


def role_map(tags: dict[str, str]) -> dict[str, str]:
    """Aliases plus the LLaMA-Factory ``tags`` of a registry entry (``user_tag`` etc.)."""
    out = dict(ROLE_ALIASES)
    for tag, role in (("user_tag", "user"), ("assistant_tag", "assistant"), ("observation_tag", "tool"),
                      ("function_tag", "function_call"), ("system_tag", "system")):
        if tags.get(tag):
            out[tags[tag]] = role
    return out


def parse_tool_calls(value: Any, field: str) -> list[dict]:
    """A ``function_call`` turn's JSON (one call or a list) to OpenAI ``tool_calls``."""
    try:
        calls = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as e:
        raise RecordError(field, f"function call is not valid JSON ({e.msg})") from None
    calls = calls if isinstance(calls, list) else [calls]
    out = []
    for c in calls:
        fn = c.get("function", c) if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RecordError(field, "function call needs an object with a 'name'")
        args = fn.get("arguments", fn.get("parameters", {}))
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        out.append({"type": "function", "function": {"name": fn["name"], "arguments": args}})
    return out


def parse_tools(value: Any, field: str) -> list[dict]:
    """Tool definitions (JSON text or list, bare or OpenAI-wrapped) to OpenAI tool objects."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RecordError(field, f"tools is not valid JSON ({e.msg})") from None
    items = value if isinstance(value, list) else [value]
    out = []
    for i, t in enumerate(items):
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict):
            out.append(t)
        elif isinstance(t, dict) and isinstance(t.get("name"), str):
            out.append({"type": "function", "function": t})
        else:
            raise RecordError(f"{field}[{i}]", "a tool needs a 'name' (or OpenAI's {'type': 'function', 'function': {...}})")
    return out


def _bare_strings(turns: list, field: str, ctx: Ctx) -> list[dict] | None:
    if not any(isinstance(t, str) for t in turns):
        return None
    if "alternate-roles" not in ctx.options.repairs or not all(isinstance(t, str) for t in turns):
        raise RecordError(field, "messages are bare strings with no roles; fix the data or pass "
                          "--repair alternate-roles to read them as alternating user/assistant turns")
    ctx.repairs.append("alternate-roles")
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def parse_turns(turns: list, field: str, ctx: Ctx) -> tuple[list[dict], list[dict]]:
    """Convert a list of turns; return (messages, per-turn extras for ``meta["turns"]``)."""
    repaired = _bare_strings(turns, field, ctx)
    if repaired is not None:
        return repaired, []
    tags = ctx.options.tags
    roles = role_map(tags)
    messages, turn_meta = [], []
    for i, turn in enumerate(turns):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(where, f"expected a turn object with a role and content, got a JSON {json_type(turn)}")
        rk = next((k for k in (tags.get("role_tag"), "from", "role") if k and k in turn), None)
        if rk is None:
            raise RecordError(where, "turn has no role ('from' or 'role')")
        ck = next((k for k in (tags.get("content_tag"), "value", "content") if k and k in turn), "content")
        name = turn[rk]
        role = roles.get(name) if isinstance(name, str) else None
        if role is None and isinstance(name, str):
            role = roles.get(name.strip().lower())
        if role is None:
            raise RecordError(f"{where}.{rk}", f"unknown role {name!r} (known: user/human, assistant/gpt, "
                              "system, tool/observation, function_call)")
        msg = _message(role, turn, ck, f"{where}.{ck}", ctx)
        messages.append(msg)
        extra = {k: v for k, v in turn.items() if k not in (rk, ck) and k not in _MESSAGE_KEYS}
        if extra:
            turn_meta.append({"turn": i, **extra})
    return messages, turn_meta


def _message(role: str, turn: dict, ck: str, field: str, ctx: Ctx) -> dict:
    value = turn.get(ck)
    if role == "function_call":
        return {"role": "assistant", "content": "", "tool_calls": parse_tool_calls(value, field)}
    calls = turn.get("tool_calls")
    if calls and role == "assistant":
        content = text(value, field, ctx, required=False)
        return {"role": "assistant", "content": content, "tool_calls": parse_tool_calls(calls, field.rsplit(".", 1)[0] + ".tool_calls")}
    if ck not in turn:
        raise RecordError(field, "turn has no content ('value' or 'content')")
    msg = {"role": role, "content": text(value, field, ctx, required=False)}
    for k in ("tool_call_id", "name"):
        if k in turn:
            msg[k] = turn[k]
    return msg


def reply(value: Any, field: str, ctx: Ctx) -> dict:
    """A preference reply (text, a turn object, or a one-turn list) as an assistant message."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        msgs, _ = parse_turns([value], field, ctx)
        msg = msgs[0]
        if msg["role"] != "assistant":
            raise RecordError(field, f"expected an assistant reply, got role {msg['role']!r}")
        return msg
    return {"role": "assistant", "content": text(value, field, ctx)}
