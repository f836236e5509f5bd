"""Text metrics with stated conventions: BLEU (sacrebleu, zh or 13a per record), ROUGE-1/2/L F1
(Chinese by characters and by jieba words, both labelled)."""

from __future__ import annotations

from sftkit.textutil import CJK as _CJK
from sftkit.textutil import is_chinese


def bleu_tokenizer(reference: str) -> str:
    """sacrebleu tokenizer for a record: ``zh`` for Chinese references, ``13a`` otherwise."""
    return "zh" if is_chinese(reference) else "13a"


def bleu(predictions: list[str], references: list[str]) -> dict:
    """Corpus BLEU per tokenizer group, sentence BLEU per record, and sacrebleu signatures."""
    from sacrebleu.metrics import BLEU

    groups: dict[str, list[int]] = {}
    for i, ref in enumerate(references):
        groups.setdefault(bleu_tokenizer(ref), []).append(i)
    per_record = [0.0] * len(references)
    out = {"groups": {}}
    for tok, idx in groups.items():
        corpus = BLEU(tokenize=tok)
        score = corpus.corpus_score([predictions[i] for i in idx], [[references[i] for i in idx]])
        sentence = BLEU(tokenize=tok, effective_order=True)
        for i in idx:
            per_record[i] = sentence.sentence_score(predictions[i], [references[i]]).score
        out["groups"][tok] = {"bleu": round(score.score, 4), "n": len(idx), "signature": str(corpus.get_signature())}
    total = sum(len(v) for v in groups.values())
    out["bleu"] = round(sum(g["bleu"] * g["n"] for g in out["groups"].values()) / total, 4) if total else 0.0
    out["per_record"] = per_record
    out["tokenizer_per_record"] = [bleu_tokenizer(r) for r in references]
    return out


class _Tokenizer:
    """rouge-score tokenizer: Chinese by characters or jieba words; other text as rouge-score does."""

    def __init__(self, chinese: str):
        from rouge_score import tokenize

        self.chinese = chinese
        self.default = tokenize.tokenize

    def tokenize(self, text: str) -> list[str]:
        if not is_chinese(text):
            return self.default(text, None)
        if self.chinese == "char":
            return [ch for ch in text if not ch.isspace() and (ch.isalnum() or _CJK.match(ch))]
        import jieba

        return [w for w in jieba.lcut(text) if w.strip() and any(c.isalnum() for c in w)]


def rouge(predictions: list[str], references: list[str]) -> dict:
    """ROUGE-1/2/L F1 (x100) under both Chinese conventions: ``char`` and ``jieba`` words."""
    import logging

    import jieba
    from rouge_score import rouge_scorer

    jieba.setLogLevel(logging.WARNING)
    out = {}
    for convention in ("char", "jieba"):
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tokenizer(convention))
        scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references, strict=True)]
        per = [{k: round(100 * v.fmeasure, 4) for k, v in s.items()} for s in scores]
        n = max(len(per), 1)
        out[convention] = {k: round(sum(p[k] for p in per) / n, 4) for k in ("rouge1", "rouge2", "rougeL")}
        out[convention]["per_record"] = per
    return out
