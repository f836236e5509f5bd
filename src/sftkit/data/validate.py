"""Rules every canonical record must meet, and media path checks (the only I/O after reading).

Validation reports, it does not silently fix: the one change it makes (dropping a trailing user turn
that has no reply) is a warning, counted like every other.
"""

from __future__ import annotations

import os

from sftkit.data.formats.base import Ctx
from sftkit.errors import RecordError
from sftkit.schema import MEDIA_KINDS, ROLES


def _blank(s: str) -> bool:
    return not s or s.isspace()


def validate(rec: dict, ctx: Ctx, base_dir: str, root: str | None = None) -> dict:
    """Check one canonical record in place (and resolve its media paths); raise RecordError if invalid."""
    msgs = rec.get("messages")
    if msgs is None:
        return rec  # text records have no turns to check
    for i, m in enumerate(msgs):
        role = m["role"]
        if role == "system":
            if i:
                raise RecordError(f"messages[{i}]", "system turn must come first")
        elif role not in ROLES:
            raise RecordError(f"messages[{i}].role", f"unknown role {role!r}")
        elif _blank(m["content"]) and not m.get("tool_calls"):
            ctx.warn("blank_turn", f"messages[{i}]", f"blank {role} turn")
    if "chosen" in rec:
        _preference(rec)
    else:
        while msgs and msgs[-1]["role"] in ("user", "tool"):
            ctx.warn("trailing_turn_dropped", f"messages[{len(msgs) - 1}]",
                     f"trailing {msgs[-1]['role']} turn has no reply; dropped")
            msgs.pop()
        _has_exchange(msgs)
    if rec.get("images") or "videos" in rec or "audios" in rec:
        resolve_media(rec, base_dir, root, ctx)
    return rec


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
    """Make media paths absolute, refuse paths outside the data root or missing, and fix placeholders."""
    root_real = os.path.realpath(root or base_dir)
    users = [m for m in rec["messages"] if m["role"] == "user"]
    for kind, token in MEDIA_KINDS.items():
        paths = rec.get(kind) or []
        resolved = []
        for i, p in enumerate(paths):
            full = os.path.realpath(os.path.join(base_dir, os.path.expanduser(p)))
            if os.path.commonpath([full, root_real]) != root_real:
                raise RecordError(f"{kind}[{i}]", f"path {p!r} escapes the data folder {root_real}")
            if not os.path.isfile(full):
                raise RecordError(f"{kind}[{i}]", f"file not found: {p!r} (looked for {full})")
            resolved.append(full)
        if paths:
            rec[kind] = resolved
        _placeholders(rec, kind, token, len(paths), users, ctx)


def _placeholders(rec: dict, kind: str, token: str, n: int, users: list[dict], ctx: Ctx) -> None:
    for i, m in enumerate(rec["messages"]):
        if m["role"] != "user" and token in m["content"]:
            raise RecordError(f"messages[{i}]", f"{token} placeholder outside a user turn")
    have = sum(m["content"].count(token) for m in users)
    if have > n:
        raise RecordError(kind, f"{have} {token} placeholders but {n} {kind}")
    if have < n:
        if not users:
            raise RecordError(kind, f"{n} {kind} but no user turn to hold their {token} placeholders")
        users[0]["content"] = token * (n - have) + users[0]["content"]
        ctx.warn("placeholder_added", kind, f"added {n - have} {token} placeholder(s) to the first user turn")
