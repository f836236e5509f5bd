"""Final-answer extraction and comparison (GSM8K ``#### N``, "答案：…", "The answer is …", last number).

Numbers compare numerically, so ``40``, ``40.0``, ``40 km/h``, ``$40`` and ``1,000`` vs ``1000`` match;
fractions (``3/4``) and negatives work; non-numeric answers compare as normalised text.
"""

from __future__ import annotations

import re
import unicodedata

_NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
_PATTERNS = [
    re.compile(r"####\s*(.+?)\s*$", re.M),
    re.compile(r"\\boxed\{([^{}]+)\}"),
    re.compile(r"(?:最终答案|答案)\s*(?:是|为|：|:)\s*[:：]?\s*([^\n。；;]+)"),
    re.compile(r"(?:the\s+)?(?:final\s+)?answer\s+is\s*[:：]?\s*([^\n]+?)(?:\.\s|\.$|$)", re.I | re.M),
]
_NUM_RE = re.compile(_NUMBER)
_PUNCT = re.compile(r"[\s\W_]+", re.U)


def extract_answer(text: str) -> str | None:
    """The answer a text states: an explicit marker first, else its last number; None when there is none."""
    if not text:
        return None
    for pattern in _PATTERNS:
        found = pattern.findall(text)
        if found:
            return found[-1].strip().rstrip(".。")
    numbers = _NUM_RE.findall(text)
    return numbers[-1].strip() if numbers else None


def to_number(answer: str | None) -> float | None:
    """The first number in an answer string (commas, units, currency, fractions, minus signs handled)."""
    if answer is None:
        return None
    s = unicodedata.normalize("NFKC", answer).replace("−", "-")
    m = _NUM_RE.search(s)
    if not m:
        return None
    token = m.group(0).replace(",", "").replace(" ", "")
    try:
        if "/" in token:
            num, den = token.split("/")
            return float(num) / float(den) if float(den) else None
        return float(token)
    except ValueError:
        return None


def normalize_text(s: str) -> str:
    """Case-folded text without whitespace or punctuation (for exact match of non-numeric answers)."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", s).casefold())


def is_numeric(answer: str) -> bool:
    """The answer is a number, possibly with currency before it or a unit after it (``$40``, ``40 km/h``)."""
    s = unicodedata.normalize("NFKC", answer).strip().lstrip("$¥€£ ").replace("−", "-")
    m = _NUM_RE.match(s)
    return m is not None and not s[m.end():m.end() + 1].isdigit()


def answers_match(predicted: str | None, reference: str | None) -> bool:
    """True when two answers agree: numerically if the reference is a number, else as normalised text."""
    if predicted is None or reference is None:
        return False
    if is_numeric(reference):
        ref, pred = to_number(reference), to_number(predicted)
        return pred is not None and ref is not None and abs(pred - ref) <= 1e-6 * max(1.0, abs(ref))
    return normalize_text(predicted) == normalize_text(reference)


def exact_match(prediction: str, reference: str) -> bool:
    """The whole reply equals the reference, ignoring case, whitespace and punctuation."""
    return normalize_text(prediction) == normalize_text(reference)
