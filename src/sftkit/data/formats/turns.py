"""Turn lists (ShareGPT ``from``/``value``, OpenAI ``role``/``content``) to canonical messages.

Shared by every converter whose source holds a list of turns, so role names, tool calls and the
bare-string repair behave the same everywhere.
"""

from __future__ import annotations

from typing import Any

from sftkit.data.formats.base import Ctx, dumps, json_type, loads, shown, text
from sftkit.data.formats.parts import content_parts, is_parts
from sftkit.errors import RecordError
from sftkit.schema import MESSAGE_KEYS

# Role names seen in real data -> canonical role ("function_call" becomes an assistant tool call).
ROLE_ALIASES = {
    "user": "user", "human": "user", "system": "system", "assistant": "assistant", "gpt": "assistant",
    "bot": "assistant", "model": "assistant", "chatgpt": "assistant", "tool": "tool", "observation": "tool",
    "function": "tool", "ipython": "tool", "function_call": "function_call", "tool_call": "function_call",
}
_MESSAGE_KEYS = ("tool_calls", "tool_call_id", "name", "reasoning_content", "loss_weight")


def role_map(tags: dict[str, str]) -> dict[str, str]:
    """Aliases plus the LLaMA-Factory ``tags`` of a registry entry (``user_tag`` etc.)."""
    out = dict(ROLE_ALIASES)
    for tag, role in (("user_tag", "user"), ("assistant_tag", "assistant"), ("observation_tag", "tool"),
                      ("function_tag", "function_call"), ("system_tag", "system")):
        if tags.get(tag):
            out[tags[tag]] = role
    return out


def parse_tool_calls(value: Any, field: str) -> list[dict]:
    """A ``function_call`` turn's JSON (one call or a list) to OpenAI ``tool_calls`` (a call's ``id`` is kept)."""
    calls = loads(value, field, "function call") if isinstance(value, str) else value
    calls = calls if isinstance(calls, list) else [calls]
    out = []
    for c in calls:
        fn = c.get("function", c) if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RecordError(field, "function call needs an object with a 'name'")
        args = fn.get("arguments", fn.get("parameters", {}))
        if not isinstance(args, str):
            args = dumps(args, field, "function call arguments")
        elif args.lstrip().startswith(("{", "[")):  # templates decode it: it must decode to writable JSON
            try:
                loads(args, f"{field}.arguments", "function call arguments")
            except RecordError as e:
                if "not valid JSON" not in e.reason:
                    raise  # free-text arguments stay text; JSON that decodes to something unwritable does not
        call = {"id": c["id"]} if isinstance(c.get("id"), str) else {}
        out.append({**call, "type": "function", "function": {"name": fn["name"], "arguments": args}})
    return out


def parse_tools(value: Any, field: str) -> list[dict]:
    """Tool definitions (JSON text or list, bare or OpenAI-wrapped) to OpenAI tool objects."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = loads(value, field, "tools")
    items = value if isinstance(value, list) else [value]
    out = []
    for i, t in enumerate(items):
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict):
            if not isinstance(t["function"].get("name"), str) or not t["function"]["name"].strip():
                raise RecordError(f"{field}[{i}].function.name", "a tool needs a non-empty name")
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
            raise RecordError(f"{where}.{rk}", f"unknown role {shown(name)} (known: user/human, assistant/gpt, "
                              "system, tool/observation, function_call)")
        msg = _message(role, turn, ck, f"{where}.{ck}", ctx)
        messages.append(msg)
        taken = ("weight",) if msg["role"] == "assistant" and "loss_weight" not in turn else ()  # read as loss_weight
        extra = {k: v for k, v in turn.items() if k not in (rk, ck) and k not in _MESSAGE_KEYS and k not in taken}
        if extra:
            turn_meta.append({"turn": i, **extra})
    return messages, turn_meta


def _message(role: str, turn: dict, ck: str, field: str, ctx: Ctx) -> dict:
    where = field.rsplit(".", 1)[0]
    if role == "function_call":
        msg = {"role": "assistant", "content": "", "tool_calls": parse_tool_calls(turn.get(ck), field)}
    else:
        calls = turn.get("tool_calls")
        if calls not in (None, []) and role != "assistant":
            raise RecordError(f"{where}.tool_calls", f"only assistant turns make tool calls, not {role}")
        if ck not in turn and not calls:
            raise RecordError(field, "turn has no content ('value' or 'content')")
        msg = {"role": role, "content": _content(turn.get(ck), field, role, ctx, reasoning := [], part_calls := [])}
        if reasoning:
            msg["reasoning_content"] = "\n".join(reasoning)
        if calls:
            msg["tool_calls"] = parse_tool_calls(calls, f"{where}.tool_calls")
        for value, at in part_calls:  # tool calls given as content parts, after any tool_calls field
            msg.setdefault("tool_calls", []).extend(parse_tool_calls(value, at))
        for k in ("tool_call_id", "name"):
            if turn.get(k) is not None:
                msg[k] = text(turn[k], f"{where}.{k}", ctx)
    if turn.get("reasoning_content") is not None:
        if msg["role"] != "assistant":
            raise RecordError(f"{where}.reasoning_content", f"only assistant turns carry reasoning, not {role}")
        if "reasoning_content" in msg:
            raise RecordError(f"{where}.reasoning_content", "reasoning given both as a field and as content parts")
        msg["reasoning_content"] = text(turn["reasoning_content"], f"{where}.reasoning_content", ctx)
    if "loss_weight" not in turn and "weight" in turn and msg["role"] == "assistant":
        msg["loss_weight"] = _loss_weight(turn["weight"], f"{where}.weight")  # OpenAI fine-tuning files' name
    if "loss_weight" in turn:
        msg["loss_weight"] = _loss_weight(turn["loss_weight"], f"{where}.loss_weight")
        if msg["role"] != "assistant" and msg["loss_weight"] == 1:
            ctx.warn("loss_weight_ignored", f"{where}.loss_weight", f"loss_weight 1 on a {msg['role']} turn has no "
                     "effect: only assistant replies are learned (data.train_on_prompt learns prompts too)")
    return {k: msg[k] for k in MESSAGE_KEYS if k in msg}


def _content(value: Any, field: str, role: str, ctx: Ctx, reasoning: list[str], calls: list) -> str:
    if is_parts(value):
        return content_parts(value, field, role, ctx, reasoning, calls)
    return text(value, field, ctx, required=False)


def _loss_weight(value: Any, field: str) -> int:
    """0 or 1 (booleans read as 1 / 0); anything else is refused rather than guessed."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    got = f"a JSON {json_type(value)}" if value is None or isinstance(value, str) else shown(value)
    raise RecordError(field, f"loss_weight must be 0 or 1 (or true / false), got {got}")


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
