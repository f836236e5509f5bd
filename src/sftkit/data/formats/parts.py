"""OpenAI-style content-part arrays flattened to canonical text plus media entries.

``[{"type": "text", "text": "What is"}, {"type": "image_url", "image_url": {"url": "a.jpg"}}]`` becomes the
content ``"What is<image>"`` with ``"a.jpg"`` appended to ``ctx.media["images"]``: each media part leaves its
placeholder where the part stood, so placeholders and entries keep one order. Reasoning parts
(``{"type": "reasoning" | "thinking"}``) go to the message's ``reasoning_content``; tool-call parts
(``{"type": "tool_call", "value": "{\"name\": ..., \"arguments\": ...}"}``, LLaMA-Factory's v1 files) to its
``tool_calls``; media parts may give their path as ``value`` too. Media entries are
checked later, with the record's other media (``validate.resolve_media``): a path, a ``file://`` URL or an
inline ``data:`` URI; OpenAI ``input_audio`` (base64 ``data`` + ``format``) becomes a ``data:audio/...`` URI.
"""

from __future__ import annotations

import re
from typing import Any

from sftkit.data.formats.base import Ctx, json_type, text
from sftkit.errors import RecordError
from sftkit.schema import MEDIA_KINDS

_TEXT_TYPES = ("text", "input_text", "output_text")
_REASONING_TYPES = ("reasoning", "thinking")
_MEDIA_TYPES = {"image": "images", "image_url": "images", "input_image": "images", "video": "videos",
                "video_url": "videos", "audio": "audios", "audio_url": "audios", "input_audio": "audios"}
_AUDIO_FORMAT = re.compile(r"^[A-Za-z0-9.+-]{1,20}$")


def is_parts(value: Any) -> bool:
    """True for a non-empty list of objects, the shape of an OpenAI content-part array."""
    return isinstance(value, list) and bool(value) and all(isinstance(p, dict) for p in value)


def content_parts(parts: list[dict], field: str, role: str, ctx: Ctx, reasoning: list[str],
                  calls: list | None = None) -> str:
    """Flatten content parts to text with placeholders; media go to ``ctx.media``, reasoning to ``reasoning``,
    ``{"type": "tool_call", "value": ...}`` parts (LLaMA-Factory's v1 files) to ``calls``."""
    out = []
    for j, part in enumerate(parts):
        where = f"{field}[{j}]"
        kind = part.get("type")
        if not isinstance(kind, str):
            raise RecordError(f"{where}.type", "content part needs a 'type' (text, image_url, image, video, "
                              "input_audio, audio or reasoning)")
        if kind in _TEXT_TYPES:
            out.append(_part_text(part, ("text", "value"), where, ctx))
        elif kind in _REASONING_TYPES:
            if role != "assistant":
                raise RecordError(where, f"only assistant turns carry reasoning, not {role}")
            reasoning.append(_part_text(part, ("text", kind, "reasoning", "thinking", "value"), where, ctx))
        elif kind in ("tool_call", "function_call") and calls is not None:
            if role != "assistant":
                raise RecordError(where, f"only assistant turns make tool calls, not {role}")
            key = next((k for k in ("value", kind, "function") if k in part), None)
            if key is None:
                raise RecordError(where, f"{kind} part has no call ('value')")
            calls.append((part[key], f"{where}.{key}"))
        elif kind in _MEDIA_TYPES:
            media = _MEDIA_TYPES[kind]
            ctx.media.setdefault(media, []).append(_audio_data(part, where) if kind == "input_audio"
                                                   else _locator(part, kind, media, where))
            out.append(MEDIA_KINDS[media])
        else:
            raise RecordError(f"{where}.type", f"unknown content part type {kind!r}")
    return "".join(out)


def _part_text(part: dict, keys: tuple[str, ...], where: str, ctx: Ctx) -> str:
    key = next((k for k in keys if k in part), None)
    if key is None:
        raise RecordError(where, f"{part['type']} part has no text ({' or '.join(repr(k) for k in keys[:2])})")
    return text(part[key], f"{where}.{key}", ctx)


def _locator(part: dict, kind: str, media: str, where: str) -> str:
    """The path / URL / data URI of a media part: ``{kind: str | {"url": ...}}``, or ``url`` / ``path``."""
    singular = media[:-1]
    for key in (kind, f"{singular}_url", singular, "url", "path", "value"):
        value = part.get(key)
        if isinstance(value, dict):
            value = value.get("url", value.get("path"))
            key = f"{key}.url"
        if isinstance(value, str) and value.strip():
            return value
        if value is not None:
            raise RecordError(f"{where}.{key}", f"expected a file path or URL, got a JSON {json_type(value)}")
    raise RecordError(where, f"{kind} part has no path or URL ({kind!r}, 'url', 'path' or 'value')")


def _audio_data(part: dict, where: str) -> str:
    """OpenAI ``input_audio`` ({"data": base64, "format": "wav"}) as a ``data:audio/<format>;base64,`` URI."""
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str) or not audio["data"]:
        raise RecordError(f"{where}.input_audio", "input_audio needs {'data': base64 text, 'format': 'wav' | 'mp3'}")
    fmt = audio.get("format", "wav")
    if not isinstance(fmt, str) or not _AUDIO_FORMAT.match(fmt):
        raise RecordError(f"{where}.input_audio.format", "audio format must be a short name such as wav or mp3")
    return f"data:audio/{fmt};base64,{audio['data']}"
