"""score() against independent recomputation: sacrebleu directly, ROUGE counted by hand, EM and answers by hand."""

from __future__ import annotations

import pytest
import sacrebleu

from sftkit.eval.answers import reference_answer
from sftkit.eval.scoring import score
from tests.eval.test_metrics import MIXED, f1

EXTRA = [
    # (prediction, reference, final answer, hand ROUGE (r1, r2, rL) in every convention: English references)
    # pred the answer is not obvious so 8 (7 tokens), ref 8 (1): shared 1, no reference bigram, LCS 1
    ("The answer is not obvious… So 8.", "#### 8", "8", (f1(1, 7, 1), 0.0, f1(1, 7, 1))),
    ("The cat sat.", "the cat sat", None, (100.0, 100.0, 100.0)),
    ("3.5", "35", "35", (0.0, 0.0, 0.0)),  # tokens 3 5 against 35
]


def _items():
    items = [{"reference": m["ref"], "final_answer": "42" if m["ref"] == "答案是42" else None} for m in MIXED]
    items += [{"reference": ref, "final_answer": final} for _, ref, final, _ in EXTRA]
    preds = [m["pred"] for m in MIXED] + [pred for pred, *_ in EXTRA]
    return items, preds


def test_score_equals_independent_recomputation():
    items, preds = _items()
    metrics, per = score(items, preds)
    refs = [it["reference"] for it in items]
    assert metrics["bleu"] == round(sacrebleu.corpus_bleu(preds, [refs], tokenize="zh").score, 4)
    assert "tok:zh" in metrics["bleu_signature"]
    for convention in ("char", "jieba"):
        hand = [m[convention] for m in MIXED] + [e[3] for e in EXTRA]
        for k, key in enumerate(("rouge1", "rouge2", "rougeL")):
            mean = sum(h[k] for h in hand) / len(hand)
            assert metrics[f"rouge_{convention}"][key] == pytest.approx(mean, abs=1e-3), (convention, key)
    # exact match by hand: only "The cat sat." = "the cat sat" (3.5 is not 35)
    assert metrics["exact_match"] == round(1 / 7, 4)
    # answers by hand: 42 = 42, 8 = 8 ("not obvious" is no answer), 3.5 != 35; four records have none
    assert metrics["answer_samples"] == 3 and metrics["answer_accuracy"] == round(2 / 3, 4)
    assert [p["answer_correct"] for p in per] == [None, True, None, None, True, None, False]
    assert per[4]["predicted_answer"] == "8"


def test_free_text_references_are_left_out_of_answer_accuracy():
    records = [("Paris is the capital of France; it has 2 million people.", {}),
               ("Sleep 8 hours and drink 2 litres of water.", {}),
               ("Each pen costs 2, so 3 pens cost 6.\n#### 6", {}),
               ("Step 1: 4 + 3 = 7.", {"final_answer": "7"})]
    items = [{"reference": ref, "final_answer": reference_answer(ref, meta)} for ref, meta in records]
    preds = ["It has 2 million people.", "Sleep 8 hours.", "The answer is 6.", "The answer is 8."]
    metrics, per = score(items, preds)
    assert metrics["answer_samples"] == 2 and metrics["answer_accuracy"] == 0.5
    assert [p["answer_correct"] for p in per] == [None, None, True, False]


def test_no_final_answer_anywhere_gives_no_accuracy():
    metrics, _ = score([{"reference": "a free reply", "final_answer": None}], ["a free reply"])
    assert metrics["answer_accuracy"] is None and metrics["answer_samples"] == 0 and metrics["exact_match"] == 1.0
