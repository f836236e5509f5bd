"""Text for continued pre-training: plain ``text``, and long documents ``doc_id`` + ``chunks``."""

from __future__ import annotations

from sftkit.data.formats.base import Ctx, extras, get_list, get_text, json_type, put_meta, register, text
from sftkit.data.formats.sharegpt import media
from sftkit.errors import RecordError
from sftkit.schema import text_record


@register("text", detect=lambda r: "text" in r, priority=90)
def convert_text(raw: dict, ctx: Ctx) -> dict:
    """Plain text record (loss on every token)."""
    key = ctx.options.columns.get("prompt", "text") if ctx.options.registry else "text"
    body = get_text(raw, key, ctx)
    if not body.strip():
        raise RecordError(key, "blank text")
    used = {key}
    found = media(raw, ctx, used)  # image-text pre-training records keep their media (validated like any other)
    return {**text_record(body, extras(raw, used, ctx=ctx)), **found}


@register("document", detect=lambda r: "chunks" in r, priority=10)
def convert_document(raw: dict, ctx: Ctx) -> list[dict]:
    """A long document's chunks -> one text record per chunk, positions and doc id in meta."""
    chunks = get_list(raw, "chunks")
    if not chunks:
        raise RecordError("chunks", "document has no chunks")
    base = extras(raw, {"chunks"}, ctx=ctx)
    out = []
    for i, chunk in enumerate(chunks):
        where = f"chunks[{i}]"
        if isinstance(chunk, str):
            chunk = {"text": chunk}
        if not isinstance(chunk, dict):
            raise RecordError(where, f"expected a chunk object with text, got a JSON {json_type(chunk)}")
        body = text(chunk.get("text"), f"{where}.text", ctx)
        if not body.strip():
            raise RecordError(f"{where}.text", "blank text")
        meta = dict(base)
        for k, v in [("chunk", i), *((k, v) for k, v in chunk.items() if k != "text")]:
            put_meta(meta, k, v, ctx)
        out.append(text_record(body, meta))
    return out
