"""Quality report of canonical records: sizes, duplicates, noise flags, language mix.

Per record it measures prompt / reply lengths (characters, and tokens with a tokenizer), the
character entropy and repeated n-gram ratio of the reply, and its script mix; across records it finds
exact duplicates (normalised text) and near-duplicates (MinHash LSH, see :mod:`sftkit.data.dedup`).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable

from sftkit.data.dedup import Deduper, normalize, record_text
from sftkit.schema import prompt_and_reply, record_kind
from sftkit.textutil import CJK as _CJK

EXAMPLES = 5  # examples kept per finding
SHORT_REPLY = 5  # characters; shorter non-empty replies are flagged
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z]")
_VOWELS = re.compile(r"[aeiouyAEIOUY]")
_PLAIN = re.compile(r"[\w\s.,;:!?'\"()\[\]{}<>/\\\-+=，。！？；：、“”‘’（）《》【】…—·]")  # letters, digits, punctuation, code
_MOJIBAKE = ("\ufffd", "锟斤拷", "Ã©", "Ã¨", "â€")


def entropy(text: str) -> float:
    """Shannon entropy of the character distribution, in bits per character."""
    n = len(text)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def repeated_ngram_ratio(text: str, n: int = 4) -> float:
    """Share of character n-grams (whitespace removed) that repeat an earlier one: 0 = none, near 1 = loops."""
    s = "".join(text.split())
    total = len(s) - n + 1
    if total <= 1:
        return 0.0
    return 1 - len({s[i:i + n] for i in range(total)}) / total


def language(text: str) -> str:
    """zh, en or other, from the script of the letters in the text."""
    cjk, other_east = len(_CJK.findall(text)), len(_KANA_HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    if other_east > cjk * 0.2 and other_east > 0:
        return "other"
    letters = sum(ch.isalpha() for ch in text) if cjk + latin == 0 else cjk + latin
    if cjk and cjk >= 0.2 * (cjk + latin):
        return "zh"
    if latin and latin >= 0.5 * letters:
        return "en"
    return "other"


def summary(values: list[float]) -> dict:
    """min / median / p95 / max / mean of a list of numbers (empty -> zeros)."""
    if not values:
        return {"min": 0, "median": 0, "p95": 0, "max": 0, "mean": 0}
    s = sorted(values)
    return {"min": s[0], "median": statistics.median(s), "p95": s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)],
            "max": s[-1], "mean": round(sum(s) / len(s), 2)}


def _noise(prompt: str, reply: str) -> list[str]:
    flags = []
    stripped = reply.strip()
    if not stripped:
        return ["empty_reply"]
    if len(stripped) < SHORT_REPLY:
        flags.append("short_reply")
    if prompt.strip() and normalize(prompt) == normalize(reply):
        flags.append("reply_equals_prompt")
    h = entropy(stripped)
    if (len(stripped) >= 5 and h < 1.0) or (len(stripped) >= 20 and h < 2.5):
        flags.append("low_entropy")
    if len(stripped) >= 20:
        if repeated_ngram_ratio(stripped) > 0.5:
            flags.append("repeated_ngrams")
        plain = len(_PLAIN.findall(stripped)) + len(_CJK.findall(stripped))
        latin = _LATIN.findall(stripped)
        latin_text = len(latin) >= 20 and len(latin) > 0.5 * sum(ch.isalpha() for ch in stripped)
        if plain < 0.7 * len(stripped) or (latin_text and len(_VOWELS.findall(stripped)) < 0.12 * len(latin)):
            flags.append("garbage")
    if any(m in reply for m in _MOJIBAKE):
        flags.append("mojibake")
    return flags


def _snippet(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class QualityStats:
    """Accumulates the quality report one record at a time (``add``), then ``result()``."""

    def __init__(self, tokenizer=None, near_threshold: float = 0.7):
        self.tokenizer = tokenizer
        self.kinds: Counter = Counter()
        self.langs: Counter = Counter()
        self.turns: list[int] = []
        self.chars = {"prompt": [], "reply": [], "total": []}
        self.tokens = {"prompt": [], "reply": [], "total": []}
        self.flags: Counter = Counter()
        self.flag_examples: dict[str, list] = {}
        self.entropies: list[tuple[float, str, str, str]] = []  # (bits, group, where, snippet)
        self.exact = Deduper("exact")
        self.near = Deduper("near", near_threshold)
        self.dups = {"exact": 0, "near": 0}
        self.dup_examples: dict[str, list] = {"exact": [], "near": []}

    def add(self, rec: dict, where: str) -> None:
        """Measure one canonical record found at ``where`` (file:line)."""
        kind = record_kind(rec)
        self.kinds[kind] += 1
        prompt, reply = prompt_and_reply(rec)
        if kind != "text":
            self.turns.append(sum(m["role"] == "assistant" for m in rec["messages"]) + (kind == "preference"))
        for key, value in (("prompt", len(prompt)), ("reply", len(reply)), ("total", len(prompt) + len(reply))):
            self.chars[key].append(value)
        if self.tokenizer is not None:
            p, r = (len(ids) for ids in self.tokenizer([prompt, reply]))
            for key, value in (("prompt", p), ("reply", r), ("total", p + r)):
                self.tokens[key].append(value)
        lang = language(prompt + reply)
        self.langs[lang] += 1
        for flag in _noise(prompt, reply):
            self.flags[flag] += 1
            ex = self.flag_examples.setdefault(flag, [])
            if len(ex) < EXAMPLES:
                ex.append({"where": where, "reply": _snippet(reply)})
        body = reply.strip()
        if len(body) >= 20:  # compared with replies of the same language and length scale
            group = f"{language(body)}/{int(math.log2(len(body)))}"
            self.entropies.append((entropy(body), group, where, _snippet(reply)))
        self._duplicates(rec, where)

    def _duplicates(self, rec: dict, where: str) -> None:
        for mode, finder in (("exact", self.exact), ("near", self.near)):
            first = finder.check([rec], where)
            if first:
                self.dups[mode] += 1
                if len(self.dup_examples[mode]) < EXAMPLES:
                    self.dup_examples[mode].append({"where": where, "duplicate_of": first,
                                                    "text": _snippet(record_text(rec).replace("\x1f", " | "))})
                if mode == "exact":
                    return  # an exact duplicate is not counted again as a near one

    def _entropy_outliers(self) -> None:
        """Flag replies whose entropy is far from replies of the same language and length scale."""
        by_lang: dict[str, list] = {}
        for e in self.entropies:
            by_lang.setdefault(e[1], []).append(e)
        for group in by_lang.values():
            if len(group) < 20:
                continue
            med = statistics.median(e[0] for e in group)
            mad = statistics.median(abs(e[0] - med) for e in group) or 0.05
            limit = max(3.5 * mad / 0.6745, 1.0)  # robust z > 3.5, and at least 1 bit/char off
            for bits, _, where, snip in group:
                if abs(bits - med) > limit:
                    flag = "entropy_outlier_high" if bits > med else "entropy_outlier_low"
                    self.flags[flag] += 1
                    ex = self.flag_examples.setdefault(flag, [])
                    if len(ex) < EXAMPLES:
                        ex.append({"where": where, "reply": snip, "bits_per_char": round(bits, 2)})

    def result(self) -> dict:
        """The report as a JSON-serialisable dict."""
        self._entropy_outliers()
        n = sum(self.kinds.values())
        return {
            "records": n, "kinds": dict(self.kinds),
            "turns_per_conversation": summary(self.turns),
            "chars": {k: summary(v) for k, v in self.chars.items()},
            "tokens": {k: summary(v) for k, v in self.tokens.items()} if self.tokenizer is not None else None,
            "duplicates": {"exact": self.dups["exact"], "near": self.dups["near"], "examples": self.dup_examples},
            "noise": {"counts": dict(self.flags), "examples": self.flag_examples},
            "languages": {k: {"count": v, "share": round(v / n, 4)} for k, v in self.langs.most_common()} if n else {},
        }


def quality_report(records: Iterable[tuple[dict, str]], tokenizer=None) -> dict:
    """Quality report of ``(record, where)`` pairs; ``tokenizer(list[str]) -> list[ids]`` adds token lengths."""
    stats = QualityStats(tokenizer)
    for rec, where in records:
        stats.add(rec, where)
    return stats.result()
