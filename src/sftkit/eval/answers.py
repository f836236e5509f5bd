"""Final answers: extract them from replies, find them in references, compare them.

Extraction (``extract_answer``), in this order, the last match of the first marker that gives one:
GSM8K ``#### N``; ``\\boxed{…}``; ``答案：…`` / ``答案是…`` / ``最终答案为…``; "The answer is …" /
"Final answer: …". The two phrase markers only count when what follows looks like an answer: a number
(``$40``, ``about 3.5``), a choice letter (``B``, ``(b)``), a yes/no word (``否``, ``不是``, ``no``) or a
short phrase with no hedging word — "The answer is not obvious… So 8." gives ``8``, not "not obvious".
Without a marker, the last number; without one, a reply that is nothing but a choice letter (``(B)``,
``B.``) or a yes/no word (``是``, ``Yes.``) is that answer.

References (``reference_answer``): only an explicit answer counts — ``meta.final_answer`` or one of the
markers above in the reference. A free-text reference has no final answer (never its last number), so
its record is left out of answer accuracy.

Numbers: ``.75``, ``-.5``, ``0.75``, ``1,000.5`` (commas only in groups of three), ``3/4``, ``\\frac{3}{4}``,
``−2`` (Unicode minus) and full-width ``１２`` parse; a dotted run such as ``1.2.3`` (a version, a date) is
no number at all rather than 1.2 or 123.

Comparison:
- ``answers_match``: when the reference answer is a number (currency before it or a unit after it
  allowed: ``$40``, ``40 km/h``), the first number of the predicted answer must equal it: exactly when
  the reference is a whole number (``1000001`` is not ``1000000``), else within a relative tolerance of
  1e-6 (absolute below 1): ``40`` = ``40.0`` = ``$40`` = ``40 km/h``, ``0.75`` = ``3/4``,
  ``1,000`` = ``1000``. When both are yes/no words they compare by polarity: 是 = 对 = 正确 = yes =
  true = correct; 否 = 不是 = 不对 = 错 = 错误 = no = false = incorrect. Otherwise both compare as
  normalised text (so a choice ``(B)`` = ``B``).
- ``exact_match``: the whole reply equals the reference as normalised text, no numeric tolerance.
- Normalised text: NFKC, case-folded, whitespace and punctuation removed, except the punctuation that
  makes a number (a leading minus, a decimal point or fraction slash between digits), so ``Paris.`` =
  ``paris`` and ``1,000`` = ``1000`` but ``3.5`` ≠ ``35`` and ``-3`` ≠ ``3``.
"""

from __future__ import annotations

import re
import unicodedata

_NUMBER = r"""
    (?<![\d.])                              # not the tail of a longer number (1.2.3)
    (?:[-−](?=\.?\d))?                       # a minus sign directly before the number
    (?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)   # 1,000.5 / 12 / 0.75 / .75
    (?:\s*/\s*\d+(?:\.\d+)?)?                # a fraction: 3/4
    (?!\.?\d)                                # not the head of a longer number (1.2.3)
"""
_NUM_RE = re.compile(_NUMBER, re.X)
_SIGNED_CURRENCY = re.compile(r"-\s*[$¥€£]\s*(?=\.?\d)")  # -$5 is -5
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")

_GSM8K = re.compile(r"####\s*(.+?)\s*$", re.M)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_ZH = re.compile(r"(?:最终答案|答案)\s*(?:是|为|：|:)\s*[:：]?\s*([^\n。；;]+)")
_EN = re.compile(r"\banswer\s*(?:is\b|:|：)\s*[:：]?\s*([^\n]+?)\s*(?:\.\s|\.$|$)", re.I | re.M)

_CLAUSE_END = re.compile(r",\s|[;；，]")  # a phrase answer ends at the first clause break
_LEADS_WITH_NUMBER = re.compile(
    r"(?:(?:approximately|about|around|roughly|exactly|=|≈|~)\s*)?[$¥€£]?\s*[-−]?\.?\d", re.I)
_CHOICE = re.compile(r"\(([A-Ja-j])\)|([A-J])(?=$|[.,:;)）]|\s+(?![a-z]))")
_HEDGES = {"not", "unclear", "unknown", "uncertain", "obvious", "clear", "simple", "easy", "straightforward",
           "tricky", "hard", "difficult", "complicated", "maybe", "perhaps", "probably", "possibly", "likely",
           "depends", "either", "following", "below", "above", "that", "this", "to", "because", "as", "given",
           "what", "how", "which", "we", "i", "it", "in", "if", "when", "there"}
_ZH_HEDGES = ("不确定", "不明", "不知道", "无法", "可能", "也许", "大概", "或许", "取决", "如下", "不是")
_MAX_PHRASE_WORDS, _MAX_PHRASE_CHARS = 5, 40
_POLARITY = {**dict.fromkeys(("是", "是的", "对", "对的", "正确", "yes", "true", "correct"), True),
             **dict.fromkeys(("否", "不是", "不对", "错", "错误", "不正确", "no", "false", "incorrect"), False)}
_BARE_CHOICE = re.compile(r"\(?([A-Ja-j])[).:]?")  # a whole reply that is one choice letter
_NORM_TOKEN = re.compile(r"(?<![^\W_])-?\d+(?:[./]\d+)*|[^\W_]+")


def _phrase_answer(raw: str) -> str | None:
    """What follows "answer is" / 答案：, when it looks like an answer; None when it does not."""
    text = raw.strip().strip("*`").strip()
    if _LEADS_WITH_NUMBER.match(text):
        return _CLAUSE_END.split(text, maxsplit=1)[0].strip().rstrip(".。").strip("*` ")
    if m := _CHOICE.match(text):
        return (m.group(1) or m.group(2)).upper()
    phrase = _CLAUSE_END.split(text, maxsplit=1)[0].strip().rstrip(".。!！").strip("*` ")
    if polarity(phrase) is not None:  # 不是 is an answer here, not a hedge
        return phrase
    words = re.findall(r"[^\W_]+", phrase.casefold())
    if not words or len(phrase.split()) > _MAX_PHRASE_WORDS or len(phrase) > _MAX_PHRASE_CHARS:
        return None
    if _HEDGES.intersection(words) or phrase.startswith("不") or any(h in phrase for h in _ZH_HEDGES):
        return None
    return phrase


def marked_answer(text: str) -> str | None:
    """The answer a text states with an explicit marker (``####``, ``\\boxed{}``, 答案：, "the answer is")."""
    if not text:
        return None
    for pattern, clean in ((_GSM8K, str.strip), (_BOXED, str.strip), (_ZH, _phrase_answer), (_EN, _phrase_answer)):
        for raw in reversed(pattern.findall(text)):
            inner = pattern.findall(raw)  # "Final Answer: The final answer is 5": the innermost statement
            while inner and len(inner[-1]) < len(raw):
                raw = inner[-1]
                inner = pattern.findall(raw)
            answer = clean(raw)
            if answer:
                return answer.rstrip(".。")
    return None


def last_number(text: str) -> str | None:
    """The last number written in a text (``.75``, ``1,000``, ``3/4``), as written; None when there is none."""
    numbers = _NUM_RE.findall(text or "")
    return numbers[-1].strip() if numbers else None


def polarity(answer: str | None) -> bool | None:
    """True / False for a yes/no word (是, 否, yes, no, true, false, ...), None for anything else."""
    return _POLARITY.get(normalize_text(answer)) if answer else None


def bare_answer(text: str) -> str | None:
    """A reply that is nothing but a choice letter (``(B)``, ``b.``) or a yes/no word (``是``, ``No.``)."""
    s = (text or "").strip().strip("*`").strip().rstrip(".。!！").strip()
    if m := _BARE_CHOICE.fullmatch(s):
        return m.group(1).upper()
    return s if polarity(s) is not None else None


def extract_answer(text: str) -> str | None:
    """The answer a reply states: an explicit marker first, else its last number, else a bare choice letter
    or yes/no word; None when there is none."""
    return marked_answer(text) or last_number(text) or bare_answer(text)


def reference_answer(reference: str, meta: dict | None = None) -> str | None:
    """A record's final answer: ``meta.final_answer``, else a marker in the reference; never a bare last number."""
    final = (meta or {}).get("final_answer")
    if isinstance(final, str | int | float) and not isinstance(final, bool) and str(final).strip():
        return str(final).strip()
    return marked_answer(reference)


def to_number(answer: str | None) -> float | None:
    """The first number in an answer string (commas, units, currency, fractions, minus signs handled)."""
    if answer is None:
        return None
    s = _FRAC.sub(r"\1/\2", unicodedata.normalize("NFKC", answer).replace("−", "-"))
    m = _NUM_RE.search(_SIGNED_CURRENCY.sub("-", s))
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
    """Case-folded text without whitespace or punctuation, keeping what makes a number (``-3``, ``3.5``)."""
    return "".join(_NORM_TOKEN.findall(unicodedata.normalize("NFKC", s).casefold().replace("−", "-")))


def is_numeric(answer: str) -> bool:
    """The answer is a number, possibly with currency before it or a unit after it (``$40``, ``40 km/h``)."""
    s = _FRAC.sub(r"\1/\2", unicodedata.normalize("NFKC", answer).strip().lstrip("$¥€£ ").replace("−", "-"))
    return _NUM_RE.match(s) is not None


def answers_match(predicted: str | None, reference: str | None) -> bool:
    """True when two answers agree: numerically if the reference is a number, else as normalised text."""
    if predicted is None or reference is None:
        return False
    if is_numeric(reference):
        ref, pred = to_number(reference), to_number(predicted)
        if pred is None or ref is None:
            return False
        if ref.is_integer() and abs(ref) < 2**53:  # whole-number answers (counts, GSM8K) compare exactly
            return pred == ref
        return abs(pred - ref) <= 1e-6 * max(1.0, abs(ref))
    if (ref_polarity := polarity(reference)) is not None and polarity(predicted) is not None:
        return polarity(predicted) == ref_polarity
    return normalize_text(predicted) == normalize_text(reference)


def exact_match(prediction: str, reference: str) -> bool:
    """The whole reply equals the reference as normalised text (no numeric tolerance)."""
    return normalize_text(prediction) == normalize_text(reference)
