"""Hierarchical dialog: ``dialog_id``, ``scenario``, ``turns`` of ``speaker`` / ``utterance`` (+ timestamp, actions).

Speakers map to roles: an explicit speaker map first; else a speaker already named like a role
(user, assistant, system, ...); else the first speaker is the user and the other the assistant.
Scenario, ids, timestamps and actions go to meta.
"""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, get_list, json_type, register, text
from sftkit.data.formats.sharegpt import finish
from sftkit.data.formats.turns import ROLE_ALIASES
from sftkit.errors import RecordError


def _role(speaker: str, seen: dict[str, str], ctx: Ctx, where: str) -> str:
    explicit = ctx.options.speaker_map
    if speaker in explicit:
        return explicit[speaker]
    if explicit:
        raise RecordError(where, f"speaker {speaker!r} is not in the speaker map ({', '.join(explicit)})")
    if speaker not in seen:
        alias = ROLE_ALIASES.get(speaker.strip().lower())
        if alias in ("user", "assistant", "system"):
            seen[speaker] = alias
        else:
            free = [r for r in ("user", "assistant") if r not in seen.values()]
            if not free:
                raise RecordError(where, f"a third speaker {speaker!r} ({', '.join(seen)} already map to user and "
                                  "assistant); pass --speaker-map NAME=ROLE ...")
            seen[speaker] = free[0]
    return seen[speaker]


@register("dialog", detect=lambda r: "dialog_id" in r or ("turns" in r and "scenario" in r), priority=20)
def convert_dialog(raw: dict, ctx: Ctx) -> dict:
    """Dialog turns with speakers; first speaker -> user, the other -> assistant, or an explicit map."""
    messages, turn_meta, seen = [], [], {}
    for i, turn in enumerate(get_list(raw, "turns")):
        where = f"turns[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(where, f"expected a turn object, got a JSON {json_type(turn)}")
        speaker = text(turn.get("speaker"), f"{where}.speaker", ctx)
        role = _role(speaker, seen, ctx, f"{where}.speaker")
        messages.append({"role": role, "content": text(turn.get("utterance"), f"{where}.utterance", ctx)})
        extra = {k: v for k, v in turn.items() if k != "utterance"}
        turn_meta.append({"turn": i, **extra})
    return finish(raw, ctx, messages, {"turns"}, {"turns": turn_meta})
