"""Image captioning: ``image_path`` + ``caption`` (+ ``region_annotations`` of ``bbox`` / ``description``).

(``image_path`` + ``conversations`` and LLaMA-Factory's ``messages`` + ``images`` are read by the
ShareGPT converter.) The caption is the reply to a describe-the-image prompt in the caption's
language; region annotations become a second round that lists each region with its box, and are
also kept in meta.
"""

from __future__ import annotations

import json

from sftkit.data.formats.base import Ctx, get_list, get_text, has_cjk, json_type, register, text
from sftkit.data.formats.sharegpt import finish
from sftkit.errors import RecordError


def _regions(raw: dict, ctx: Ctx) -> list[str]:
    lines = []
    for i, reg in enumerate(get_list(raw, "region_annotations", required=False)):
        where = f"region_annotations[{i}]"
        if not isinstance(reg, dict):
            raise RecordError(where, f"expected an object with bbox and description, got a JSON {json_type(reg)}")
        desc = text(reg.get("description"), f"{where}.description", ctx)
        bbox = reg.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox):
            raise RecordError(f"{where}.bbox", "bbox must be a list of 4 numbers")
        lines.append(f"{desc}: {json.dumps(bbox)}")
    return lines


@register("image_caption", detect=lambda r: "caption" in r and ("image_path" in r or "image" in r), priority=30)
def convert_caption(raw: dict, ctx: Ctx) -> dict:
    """Image + caption (+ region boxes) to a describe-the-image conversation."""
    caption = get_text(raw, "caption", ctx)
    zh = has_cjk(caption)
    messages = [{"role": "user", "content": "<image>" + ("请描述这张图片。" if zh else "Describe this image.")},
                {"role": "assistant", "content": caption}]
    regions = _regions(raw, ctx)
    if regions:
        ask = "请列出图中标注的区域及其坐标框。" if zh else "List the annotated regions with their bounding boxes."
        messages += [{"role": "user", "content": ask}, {"role": "assistant", "content": "\n".join(regions)}]
    meta = {"region_annotations": raw["region_annotations"]} if regions else None
    return finish(raw, ctx, messages, {"caption", "region_annotations"}, meta)
