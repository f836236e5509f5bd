"""Score predictions against references: corpus metrics and per-sample scores (pure, no model).

Conventions are those of ``eval.metrics`` (BLEU, ROUGE) and ``eval.answers`` (exact match, answers).
Answer accuracy counts only the items with a final answer (``item["final_answer"]`` not None, see
``answers.reference_answer``); ``answer_samples`` says how many that was. With several answers per prompt, ``score_samples`` adds
pass@k and majority vote over the same items (``eval.sampling``).
"""

from __future__ import annotations

from sftkit.eval.answers import answers_match, exact_match, extract_answer
from sftkit.eval.metrics import bleu, rouge
from sftkit.eval.sampling import corpus_sampling, item_sampling


def score(items: list[dict], predictions: list[str]) -> tuple[dict, list[dict]]:
    """Corpus metrics and per-sample scores of predictions against the items' references and final answers."""
    refs = [it["reference"] for it in items]
    b, r = bleu(predictions, refs), rouge(predictions, refs)
    per = []
    for i, (it, pred) in enumerate(zip(items, predictions, strict=True)):
        final = it.get("final_answer")
        final = str(final).strip() if final is not None and str(final).strip() else None
        answer = extract_answer(pred)
        per.append({"bleu": round(b["per_record"][i], 4), "bleu_tokenize": b["tokenizer_per_record"][i],
                    "rouge_char": r["char"]["per_record"][i], "rouge_jieba": r["jieba"]["per_record"][i],
                    "exact_match": exact_match(pred, it["reference"]), "predicted_answer": answer,
                    "answer_correct": answers_match(answer, final) if final is not None else None})
    with_answer = [p["answer_correct"] for p in per if p["answer_correct"] is not None]
    metrics = {
        "samples": len(items), "bleu": b["bleu"], "bleu_tokenize": b["tokenize"], "bleu_signature": b["signature"],
        "bleu_groups": b["groups"],
        "rouge_char": {k: v for k, v in r["char"].items() if k != "per_record"},
        "rouge_jieba": {k: v for k, v in r["jieba"].items() if k != "per_record"},
        "rouge_chinese_pairs": r["chinese_pairs"],
        "exact_match": round(sum(p["exact_match"] for p in per) / len(per), 4) if per else None,
        "answer_accuracy": round(sum(with_answer) / len(with_answer), 4) if with_answer else None,
        "answer_samples": len(with_answer),
    }
    return metrics, per


def score_samples(items: list[dict], samples: list[list[str]]) -> tuple[dict, list[dict]]:
    """pass@k and maj@n of n sampled replies per item, over the items with a final answer; per item the
    extracted answers, which were correct, pass@k and the vote (items without a final answer: answers only)."""
    n = len(samples[0]) if samples else 1
    per, scored = [], []
    for it, replies in zip(items, samples, strict=True):
        answers = [extract_answer(r) for r in replies]
        final = it.get("final_answer")
        final = str(final).strip() if final is not None and str(final).strip() else None
        one = {"answers": answers, **(item_sampling(answers, final) if final is not None else {})}
        per.append(one)
        if final is not None:
            scored.append(one)
    answers = [a for p in per for a in p["answers"]]
    metrics = {**corpus_sampling(scored, n), "sampling": {
        "samples": n, "answer_samples": len(scored),
        "no_answer_share": round(sum(a is None for a in answers) / len(answers), 4) if answers else None,
        "tied_votes": sum(p["majority_tied"] for p in scored)}}
    return metrics, per
