"""sftkit's own output read back as it is: converting a canonical file again gives the same bytes.

Recognised by a ``meta`` object plus either a valid ``origin`` or ``messages`` (role / content objects)
beside ``images`` or ``tools``, shapes plain OpenAI or LLaMA-Factory files do not have. Turns, tools,
media, preference and KTO fields go through the same code as every other format, which maps canonical
input onto itself. ``sftkit data convert`` writes media paths relative to the data root (``--data-root``, by
default the output's folder); reading resolves a relative path against the file's folder, then the data root
(as for every format), and every path must lie under the data root.
"""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, get_list, register
from sftkit.data.formats.sharegpt import finish
from sftkit.data.formats.text import convert_text
from sftkit.data.formats.turns import parse_turns
from sftkit.schema import valid_origin


def looks_canonical(r: dict) -> bool:
    """True for a record sftkit wrote (see the module docstring); never for a plain OpenAI record."""
    if not isinstance(r.get("meta"), dict) or ("messages" not in r and "text" not in r):
        return False
    if valid_origin(r.get("origin")):
        return True
    msgs = r.get("messages")
    return (isinstance(msgs, list) and bool(msgs) and ("images" in r or "tools" in r)
            and all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs))


@register("canonical", detect=looks_canonical, priority=4)
def convert_canonical(raw: dict, ctx: Ctx) -> dict:
    """sftkit's own records (messages or text, meta, origin), read as they are (a fixed point)."""
    if "messages" not in raw and "text" in raw:
        return convert_text(raw, ctx)
    messages, turn_meta = parse_turns(get_list(raw, "messages"), "messages", ctx)
    return finish(raw, ctx, messages, {"messages"}, {"turns": turn_meta} if turn_meta else None)
