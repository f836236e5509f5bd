"""The canonical record shapes every later stage reads (the one schema of sftkit).

Every source format converts to exactly one of these plain-dict shapes; nothing downstream sees a
source format. Records are plain ``dict`` objects (JSON-serialisable, cheap to stream); this module
documents them and holds the checks that define "valid".

Conversation (SFT)::

    {"messages": [{"role": "system" | "user" | "assistant" | "tool", "content": str, ...}],
     "images": [path, ...], "tools": [tool, ...], "meta": {...}}

    * ``system`` may only be the first message.
    * assistant tool calls follow OpenAI: ``{"role": "assistant", "content": "", "tool_calls":
      [{"type": "function", "function": {"name": str, "arguments": json_str}}]}``; the tool's answer
      is ``{"role": "tool", "content": str}``.
    * ``tools`` holds OpenAI tool definitions ``{"type": "function", "function": {...}}``.
    * ``images`` (and, when present, ``videos`` / ``audios``) hold absolute paths; each one has exactly
      one ``<image>`` (``<video>``, ``<audio>``) placeholder in a user turn.

Text (continued pre-training)::

    {"text": str, "meta": {...}}

Preference (DPO and friends): the prompt conversation plus two assistant replies::

    {"messages": [... ending with a user turn], "chosen": {"role": "assistant", "content": str},
     "rejected": {"role": "assistant", "content": str}, "images": [...], "tools": [...], "meta": {...}}

KTO: a conversation ending with an assistant turn and a desirability label::

    {"messages": [...], "label": bool, "images": [...], "tools": [...], "meta": {...}}

``meta`` keeps everything useful that is not a turn: ids, task type, citations, final answers,
timestamps, actions, per-turn extras (``meta["turns"]``) and any source key no converter consumed.
"""

from __future__ import annotations

ROLES = ("system", "user", "assistant", "tool")
MEDIA_KINDS = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}


def record_kind(rec: dict) -> str:
    """Return which canonical shape a record has: conversation, text, preference or kto."""
    if "text" in rec and "messages" not in rec:
        return "text"
    if "chosen" in rec:
        return "preference"
    if "label" in rec:
        return "kto"
    return "conversation"


def text_record(text: str, meta: dict) -> dict:
    """Build a canonical text record."""
    return {"text": text, "meta": meta}


def prompt_and_reply(rec: dict) -> tuple[str, str]:
    """Flatten a record to (prompt text, reply text) for statistics and de-duplication."""
    kind = record_kind(rec)
    if kind == "text":
        return "", rec["text"]
    msgs = rec["messages"]
    if kind == "preference":
        return "\n".join(m.get("content") or "" for m in msgs), rec["chosen"].get("content") or ""
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=len(msgs))
    prompt = "\n".join(m.get("content") or "" for m in msgs[:last])
    reply = msgs[last].get("content") or "" if last < len(msgs) else ""
    return prompt, reply
