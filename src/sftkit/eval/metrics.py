"""Text metrics with stated conventions, so the numbers can be matched by other tools.

BLEU (sacrebleu): one corpus BLEU over every record with one tokenizer — ``zh`` when any reference is
Chinese, else ``13a``. sacrebleu's ``zh`` tokenizer splits CJK characters and runs the rest through the
same regexp step as ``13a`` (only 13a's HTML-entity unescaping differs), so English records in a mixed
corpus are tokenized as 13a would. Per-tokenizer group BLEUs (each record's tokenizer chosen from its
reference) and sentence BLEUs are extra detail, each with its signature.

ROUGE-1/2/L F1 x100 (rouge-score): the tokenization is decided once per (prediction, reference) pair,
from the reference, and applied to both sides. Non-Chinese pairs use rouge-score's default tokenizer
(lowercased ``[a-z0-9]+`` words). Chinese pairs are scored under two labelled conventions:
``char`` — each CJK character is a token and runs of other letters/digits are whole lowercased words;
``jieba`` — jieba words (latin words and numbers as jieba cuts them), lowercased, punctuation dropped.
"""

from __future__ import annotations

import re

from sftkit.textutil import CJK, is_chinese

_CHAR_TOKENS = re.compile(rf"{CJK.pattern}|(?:(?!{CJK.pattern})[^\W_])+")


def bleu_tokenizer(reference: str) -> str:
    """sacrebleu tokenizer for one record: ``zh`` for a Chinese reference, ``13a`` otherwise."""
    return "zh" if is_chinese(reference) else "13a"


def corpus_tokenizer(references: list[str]) -> str:
    """sacrebleu tokenizer for a whole corpus: ``zh`` when any reference is Chinese, ``13a`` otherwise."""
    return "zh" if any(is_chinese(r) for r in references) else "13a"


def bleu(predictions: list[str], references: list[str]) -> dict:
    """Corpus BLEU with one tokenizer (and its signature), group BLEUs, and sentence BLEU per record."""
    from sacrebleu.metrics import BLEU

    tok = corpus_tokenizer(references)
    corpus = BLEU(tokenize=tok)
    total = corpus.corpus_score(predictions, [references]).score if references else 0.0
    out = {"bleu": round(total, 4), "tokenize": tok, "signature": str(corpus.get_signature()), "groups": {}}
    per_record = [0.0] * len(references)
    per_tok = [bleu_tokenizer(r) for r in references]
    for group in sorted(set(per_tok)):
        idx = [i for i, t in enumerate(per_tok) if t == group]
        metric, sentence = BLEU(tokenize=group), BLEU(tokenize=group, effective_order=True)
        score = metric.corpus_score([predictions[i] for i in idx], [[references[i] for i in idx]])
        for i in idx:
            per_record[i] = sentence.sentence_score(predictions[i], [references[i]]).score
        out["groups"][group] = {"bleu": round(score.score, 4), "n": len(idx), "signature": str(metric.get_signature())}
    out["per_record"] = per_record
    out["tokenizer_per_record"] = per_tok
    return out


def char_tokens(text: str) -> list[str]:
    """Chinese ``char`` convention: CJK characters one by one, other letter/digit runs as lowercased words."""
    return _CHAR_TOKENS.findall(text.casefold())


def jieba_tokens(text: str) -> list[str]:
    """Chinese ``jieba`` convention: jieba words, lowercased, without whitespace and punctuation."""
    import jieba

    return [w.strip().casefold() for w in jieba.lcut(text) if w.strip() and any(c.isalnum() for c in w)]


class _Chinese:
    """A rouge-score tokenizer for Chinese pairs under one convention."""

    def __init__(self, convention: str):
        self.tokenize = char_tokens if convention == "char" else jieba_tokens


def rouge(predictions: list[str], references: list[str]) -> dict:
    """ROUGE-1/2/L F1 (x100) under both Chinese conventions, ``char`` and ``jieba``; tokenization per pair."""
    import logging

    import jieba
    from rouge_score import rouge_scorer

    jieba.setLogLevel(logging.WARNING)
    types = ["rouge1", "rouge2", "rougeL"]
    default = rouge_scorer.RougeScorer(types)
    chinese = [is_chinese(ref) for ref in references]
    out = {"chinese_pairs": sum(chinese)}
    for convention in ("char", "jieba"):
        zh = rouge_scorer.RougeScorer(types, tokenizer=_Chinese(convention))
        scores = [(zh if c else default).score(ref, pred)
                  for pred, ref, c in zip(predictions, references, chinese, strict=True)]
        per = [{k: round(100 * v.fmeasure, 4) for k, v in s.items()} for s in scores]
        n = max(len(per), 1)
        out[convention] = {k: round(sum(p[k] for p in per) / n, 4) for k in types}
        out[convention]["per_record"] = per
    return out
