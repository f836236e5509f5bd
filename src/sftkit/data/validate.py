"""Rules every canonical record must meet, and media checks (the only I/O after reading).

Validation reports, it does not silently fix: the one change it makes (dropping a trailing user turn
that has no reply) is a warning, counted like every other. Non-alternating turns (user, user or
assistant, assistant in a row) are counted as ``non_alternating`` and kept. A ``<image>`` / ``<video>`` /
``<audio>`` placeholder with no media entry behind it is refused: it would be trained as literal text.

Media entries (see ``schema``): a local path must be a regular file under the data root; ``file://``
URLs are read as paths; ``data:<mime>;base64,...`` URIs are kept inline when their base64 decodes to at
most ``MAX_INLINE_MEDIA`` bytes; remote URLs (``http(s)://`` and any other ``scheme://``) are refused,
since sftkit never downloads; a control character (NUL ...) in a path is refused.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from urllib.parse import unquote, urlsplit

from sftkit.data.formats.base import Ctx, shown
from sftkit.errors import RecordError
from sftkit.schema import MAX_INLINE_MEDIA, MEDIA_KINDS, ROLES

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,(.*)$", re.DOTALL)


def _blank(s: str) -> bool:
    return not s or s.isspace()


def validate(rec: dict, ctx: Ctx, base_dir: str, root: str | None = None, *, prompts: bool = False) -> dict:
    """Check one canonical record in place (and resolve its media paths); raise RecordError if invalid.

    ``prompts=True`` validates generation input: a conversation may end with its user turn (kept)."""
    msgs = rec.get("messages")
    if msgs is None:  # text records have no turns; media and placeholders are checked like a conversation's
        if any(rec.get(kind) for kind in MEDIA_KINDS) or any(t in rec["text"] for t in MEDIA_KINDS.values()):
            _text_media(rec, base_dir, root, ctx)
        return rec
    for i, m in enumerate(msgs):
        role = m["role"]
        if role == "system":
            if i:
                raise RecordError(f"messages[{i}]", "system turn must come first")
        elif role not in ROLES:
            raise RecordError(f"messages[{i}].role", f"unknown role {shown(role)}")
        elif _blank(m["content"]) and not m.get("tool_calls"):
            ctx.warn("blank_turn", f"messages[{i}]", f"blank {role} turn")
    _alternation(msgs, ctx)
    if "chosen" in rec:
        _preference(rec)
    elif prompts and "label" not in rec:
        if not any(m["role"] == "user" and not _blank(m["content"]) for m in msgs):
            raise RecordError("messages", "needs a non-blank user turn")
    else:
        while msgs and msgs[-1]["role"] in ("user", "tool"):
            ctx.warn("trailing_turn_dropped", f"messages[{len(msgs) - 1}]",
                     f"trailing {msgs[-1]['role']} turn has no reply; dropped")
            msgs.pop()
        _has_exchange(msgs)
    resolve_media(rec, base_dir, root, ctx)
    return rec


def _alternation(msgs: list[dict], ctx: Ctx) -> None:
    prev = None
    for i, m in enumerate(msgs):
        role = m["role"]
        if role == prev and role in ("user", "assistant"):
            ctx.warn("non_alternating", f"messages[{i}]", f"two {role} turns in a row (messages[{i - 1}] and [{i}])")
            return
        prev = role


def _has_exchange(msgs: list[dict]) -> None:
    seen_user = False
    for m in msgs:
        if m["role"] == "user" and not _blank(m["content"]):
            seen_user = True
        elif seen_user and m["role"] == "assistant" and (not _blank(m["content"]) or m.get("tool_calls")):
            return
    raise RecordError("messages", "needs a non-blank user turn followed by a non-blank assistant turn")


def _preference(rec: dict) -> None:
    msgs = rec["messages"]
    if not any(m["role"] == "user" and not _blank(m["content"]) for m in msgs):
        raise RecordError("messages", "preference prompt needs a non-blank user turn")
    if msgs[-1]["role"] == "assistant":
        raise RecordError(f"messages[{len(msgs) - 1}]", "preference prompt must end with a user (or tool) turn")
    for key in ("chosen", "rejected"):
        reply = rec[key]
        if _blank(reply["content"]) and not reply.get("tool_calls"):
            raise RecordError(key, "blank reply")


def resolve_media(rec: dict, base_dir: str, root: str | None, ctx: Ctx) -> None:
    """Check every media entry (paths made absolute; see the module docstring) and match the placeholders."""
    if not (rec.get("images") or rec.get("videos") or rec.get("audios")) and not _has_placeholder(rec):
        return  # the common case: no media and no placeholder
    root_real = None
    users = [m for m in rec["messages"] if m["role"] == "user"]
    for kind, token in MEDIA_KINDS.items():
        entries = rec.get(kind) or []
        if entries:
            root_real = root_real or os.path.realpath(root or base_dir)
            rec[kind] = [_entry(p, f"{kind}[{i}]", base_dir, root_real) for i, p in enumerate(entries)]
        _placeholders(rec, kind, token, len(entries), users, ctx)


def _has_placeholder(rec: dict) -> bool:
    for m in rec["messages"]:
        t = m["content"]
        if "<" in t and ("<image>" in t or "<video>" in t or "<audio>" in t):
            return True
    return any(k in rec and _has_placeholder({"messages": [rec[k]]}) for k in ("chosen", "rejected"))


def _text_media(rec: dict, base_dir: str, root: str | None, ctx: Ctx) -> None:
    """Media of a text record: entries checked as for conversations, placeholders counted in the text."""
    root_real = os.path.realpath(root or base_dir)
    for kind, token in MEDIA_KINDS.items():
        entries = rec.get(kind) or []
        if entries:
            rec[kind] = [_entry(p, f"{kind}[{i}]", base_dir, root_real) for i, p in enumerate(entries)]
        have = rec["text"].count(token)
        if have > len(entries):
            raise RecordError("text", f"{have} {token} placeholder(s) but {len(entries)} {kind}; they would be "
                              "trained as literal text (remove them or add the files)")
        if have < len(entries):
            rec["text"] = token * (len(entries) - have) + rec["text"]
            ctx.warn("placeholder_added", kind, f"added {len(entries) - have} {token} placeholder(s) to the text")


def _entry(p: str, field: str, base_dir: str, root_real: str) -> str:
    if _CONTROL.search(p):
        raise RecordError(field, f"path holds a control character ({_CONTROL.search(p).group()!r}); fix the name")
    try:
        p.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RecordError(field, f"path holds a lone surrogate (U+{ord(p[e.start]):04X}); fix the name") from None
    if p.startswith("data:"):
        return _inline(p, field)
    url = _URL.match(p)
    if url and url.group(1).lower() != "file":
        raise RecordError(field, f"remote media URL ({url.group(1)}://); download it and give a local path")
    if url:
        parts = urlsplit(p)
        if parts.netloc not in ("", "localhost"):
            raise RecordError(field, f"file:// URL on another host ({parts.netloc}); give a local path")
        p = unquote(parts.path)
        if _CONTROL.search(p):
            raise RecordError(field, "path holds a control character; fix the name")
    p = os.path.expanduser(p)
    full = os.path.realpath(os.path.join(base_dir, p))
    if not os.path.isabs(p) and not os.path.exists(full):  # relative to the data root, as LLaMA-Factory's media_dir
        at_root = os.path.realpath(os.path.join(root_real, p))
        full = at_root if os.path.exists(at_root) else full
    if os.path.commonpath([full, root_real]) != root_real:
        raise RecordError(field, f"path {shown(p, 200)} escapes the data folder {root_real}")
    if not os.path.isfile(full):
        what = "not a regular file" if os.path.exists(full) else "file not found"
        raise RecordError(field, f"{what}: {shown(p, 200)} (looked for {full})")
    return full


def _inline(uri: str, field: str) -> str:
    """Check a ``data:`` URI (base64 that decodes, within the size limit); the URI itself is the entry."""
    m = _DATA_URI.match(uri)
    if not m:
        raise RecordError(field, "inline media must be a data:<mime>;base64,<data> URI")
    payload = m.group(3)
    if len(payload) * 3 // 4 > MAX_INLINE_MEDIA:
        raise RecordError(field, f"inline media larger than {MAX_INLINE_MEDIA >> 20} MiB; save it as a file")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RecordError(field, "inline media is not valid base64") from None
    if not data:
        raise RecordError(field, "inline media is empty")
    return uri


def _placeholders(rec: dict, kind: str, token: str, n: int, users: list[dict], ctx: Ctx) -> None:
    for i, m in enumerate(rec["messages"]):
        if m["role"] != "user" and token in m["content"]:
            raise RecordError(f"messages[{i}]", f"{token} placeholder outside a user turn")
    for key in ("chosen", "rejected"):
        if key in rec and token in rec[key]["content"]:
            raise RecordError(key, f"{token} placeholder outside a user turn")
    have = sum(m["content"].count(token) for m in users)
    if have > n:
        if not n:
            raise RecordError(kind, f"{have} {token} placeholder(s) but the record has no {kind}; they would be "
                              "trained as literal text (remove them or add the files)")
        raise RecordError(kind, f"{have} {token} placeholders but {n} {kind}")
    if have < n:
        if not users:
            raise RecordError(kind, f"{n} {kind} but no user turn to hold their {token} placeholders")
        users[0]["content"] = token * (n - have) + users[0]["content"]
        ctx.warn("placeholder_added", kind, f"added {n - have} {token} placeholder(s) to the first user turn")
