"""Small text helpers shared by every stage: CJK detection and JSON type names (one of each)."""

from __future__ import annotations

import re
from typing import Any

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # CJK ideographs (unified, ext. A, compatibility)


def has_cjk(text: str) -> bool:
    """True when the text contains any CJK ideograph."""
    return CJK.search(text) is not None


def is_chinese(text: str) -> bool:
    """Chinese when CJK characters make up at least a fifth of the letters."""
    cjk = len(CJK.findall(text))
    letters = sum(ch.isalpha() for ch in text)
    return cjk > 0 and cjk >= 0.2 * letters


def json_type(value: Any) -> str:
    """JSON name of a Python value's type, for messages ("object", "array", "number", ...)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(type(value), type(value).__name__)
