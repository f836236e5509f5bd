"""The canonical record shapes every later stage reads (the one schema of sftkit).

Every source format converts to exactly one of these plain-dict shapes; nothing downstream sees a
source format. Records are plain ``dict`` objects (JSON-serialisable, cheap to stream); this module
documents them and holds the checks that define "valid".

Conversation (SFT)::

    {"messages": [{"role": "system" | "user" | "assistant" | "tool", "content": str, ...}],
     "images": [media, ...], "tools": [tool, ...], "videos": [...], "audios": [...],
     "meta": {...}, "origin": {"file": str, "line": int | None, "index": int}}

    * ``system`` may only be the first message.
    * assistant tool calls follow OpenAI: ``{"role": "assistant", "content": "", "tool_calls":
      [{"type": "function", "function": {"name": str, "arguments": json_str}}]}`` (an ``id`` is kept when the
      source has one); the tool's answer is ``{"role": "tool", "content": str}``.
    * an assistant message may carry ``"reasoning_content": str``, the model's thinking before its reply
      (from a source's ``reasoning_content`` field or ``{"type": "reasoning" | "thinking"}`` content parts;
      ``<think>...</think>`` written inline in the content is left there as text, untouched).
    * any message may carry ``"loss_weight": 0 | 1``: 1 = learn this assistant turn, 0 = mask it
      (absent: assistant turns are learned, the others never). Booleans in a source read as 1 / 0.
    * message keys always come in this order: role, content, reasoning_content, tool_calls, tool_call_id,
      name, loss_weight (so writing and re-reading a record is byte-stable).
    * ``tools`` holds OpenAI tool definitions ``{"type": "function", "function": {...}}``.
    * ``images`` always, ``videos`` / ``audios`` when the source has them. Each entry has exactly one
      ``<image>`` (``<video>``, ``<audio>``) placeholder in a user turn, in order; a placeholder with no
      entry behind it is refused. An entry is either a local file (absolute path in memory; it must be a
      regular file under the data root) or an inline ``data:<mime>;base64,...`` URI (OpenAI ``input_audio``
      parts become one), whose base64 must decode and stay under ``MAX_INLINE_MEDIA`` bytes. Remote
      ``http(s)://`` URLs are refused (sftkit works offline); ``file://`` URLs are read as paths.
    * OpenAI content-part arrays (``[{"type": "text", ...}, {"type": "image_url", ...}, ...]``) are
      flattened on conversion: text parts joined, each media part becomes its placeholder at the part's
      position plus an entry in the record's media list.

Text (continued pre-training)::

    {"text": str, "meta": {...}, "origin": {...}}

Preference (DPO and friends): the prompt conversation plus two assistant replies::

    {"messages": [... ending with a user turn], "images": [...], "tools": [...],
     "chosen": {"role": "assistant", "content": str}, "rejected": {"role": "assistant", "content": str},
     "meta": {...}, "origin": {...}}

    (a source's ``chosen_messages`` / ``rejected_messages``, two whole conversations sharing their prompt,
    become this shape.)

KTO: a conversation ending with an assistant turn and a desirability label::

    {"messages": [...], "images": [...], "tools": [...], "label": bool, "meta": {...}, "origin": {...}}

``meta`` keeps everything useful that is not a turn: ids, task type, citations, final answers,
timestamps, actions, per-turn extras (``meta["turns"]``) and any source key no converter consumed.
A source's own ``meta`` object is its start; a ``meta`` that is not an object is kept as
``meta["meta"]`` (with a warning); a top-level key that collides with a key of the source's ``meta`` keeps
``meta``'s value and is stored as ``<key>_top`` (with a warning). Nothing is dropped.

``origin`` (lineage) names where the record was read: the data file as given, the 1-based line the record
starts on (None for parquet and wrapped JSON), and its 0-based index in the file. The pipeline sets it on
every record (a converter that makes several records gives them all the same origin), except that a
record read with a valid ``origin`` keeps it, so converting sftkit's own output again changes nothing.

Written files: ``sftkit data convert`` stores media paths relative to the data root (``--data-root``, by
default the folder of the data files), so a dataset folder can move. A file sftkit wrote is read back by
the ``canonical`` format, which resolves relative media paths against its data root: ``--data-root`` or,
by default, the canonical file's own folder.
"""

from __future__ import annotations

ROLES = ("system", "user", "assistant", "tool")
MEDIA_KINDS = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}
MESSAGE_KEYS = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name", "loss_weight")
MAX_INLINE_MEDIA = 16 << 20  # bytes an inline data: URI may decode to


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


def origin(file: str, line: int | None, index: int) -> dict:
    """The lineage of a record: the data file, 1-based line (None when it has none) and 0-based index."""
    return {"file": file, "line": line, "index": index}


def valid_origin(value) -> bool:
    """True for an ``origin`` object exactly as :func:`origin` builds it."""
    return (type(value) is dict and list(value) == ["file", "line", "index"] and type(value["file"]) is str
            and (value["line"] is None or (type(value["line"]) is int and value["line"] >= 1))
            and type(value["index"]) is int and value["index"] >= 0)


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
