"""Metrics against independently known values: sacrebleu itself, ROUGE by hand, answer extraction cases."""

from __future__ import annotations

from fractions import Fraction

import pytest
import sacrebleu

from sftkit.eval.answers import (
    answers_match,
    exact_match,
    extract_answer,
    is_numeric,
    reference_answer,
    to_number,
)
from sftkit.eval.metrics import bleu, bleu_tokenizer, char_tokens, rouge


def f1(overlap: int, n_pred: int, n_ref: int) -> float:
    """ROUGE F1 x100 from counts done by hand."""
    if not overlap:
        return 0.0
    p, r = Fraction(overlap, n_pred), Fraction(overlap, n_ref)
    return float(100 * 2 * p * r / (p + r))


# Mixed zh/en pairs, tokens and overlaps counted by hand (LCS written out).
MIXED = [
    {  # char: ref 我 喜 欢 python 编 程 (6), pred i like python 编 程 (5)
        "pred": "I like Python编程", "ref": "我喜欢Python编程",
        # unigrams: python 编 程 = 3; bigrams: ref 5, pred 4, shared "python 编", "编 程" = 2; LCS python 编 程 = 3
        "char": (f1(3, 5, 6), f1(2, 4, 5), f1(3, 5, 6)),
        # jieba: ref 我 喜欢 python 编程 (4), pred i like python 编程 (4): shared 2; bigrams 3 vs 3, shared 1
        "jieba": (f1(2, 4, 4), f1(1, 3, 3), f1(2, 4, 4)),
    },
    {  # char: ref 答 案 是 42 (4), pred the answer is 42 (4): shared 42; no bigram; LCS 1
        "pred": "The answer is 42", "ref": "答案是42",
        "char": (f1(1, 4, 4), 0.0, f1(1, 4, 4)),
        # jieba: ref 答案 是 42 (3), pred the answer is 42 (4)
        "jieba": (f1(1, 4, 3), 0.0, f1(1, 4, 3)),
    },
    {  # English reference: rouge-score's own tokens on both sides; the Chinese words are not tokens there
        # pred the cat the mat (4), ref the cat sat on the mat (6): unigrams the x2, cat, mat = 4;
        # bigrams "the cat", "the mat" = 2 of 3 / 5; LCS the cat the mat = 4
        "pred": "the cat 坐在 the mat", "ref": "the cat sat on the mat",
        "char": (f1(4, 4, 6), f1(2, 3, 5), f1(4, 4, 6)),
        "jieba": (f1(4, 4, 6), f1(2, 3, 5), f1(4, 4, 6)),
    },
    {  # char: ref 使 用 gpu 训 练 (5), pred 用 gpu 训 练 模 型 (6): shared 4; bigrams 用gpu gpu训 训练 = 3 of 5 / 4
        "pred": "用 gpu 训练模型", "ref": "使用GPU训练",
        "char": (f1(4, 6, 5), f1(3, 5, 4), f1(4, 6, 5)),
        # jieba: ref 使用 gpu 训练 (3), pred 用 gpu 训练 模型 (4): shared 2; bigrams "gpu 训练" 1 of 3 / 2
        "jieba": (f1(2, 4, 3), f1(1, 3, 2), f1(2, 4, 3)),
    },
]


def test_bleu_is_one_corpus_bleu_over_a_mixed_set():
    preds = ["今天天气很好", "the cat sat on the mat", "我喜欢吃苹果", "a quick brown fox", "I like Python编程"]
    refs = ["今天天气不错", "the cat is on the mat", "我爱吃苹果", "the quick brown fox", "我喜欢Python编程"]
    out = bleu(preds, refs)
    corpus = sacrebleu.corpus_bleu(preds, [refs], tokenize="zh")
    assert out["bleu"] == round(corpus.score, 4) and out["tokenize"] == "zh"
    assert "tok:zh" in out["signature"]
    en_preds, en_refs = [preds[1], preds[3]], [refs[1], refs[3]]
    english = bleu(en_preds, en_refs)
    assert english["bleu"] == round(sacrebleu.corpus_bleu(en_preds, [en_refs], tokenize="13a").score, 4)
    assert english["tokenize"] == "13a"


def test_bleu_groups_and_sentences_equal_sacrebleu():
    preds = ["今天天气很好", "the cat sat on the mat", "我喜欢吃苹果", "a quick brown fox"]
    refs = ["今天天气不错", "the cat is on the mat", "我爱吃苹果", "the quick brown fox"]
    out = bleu(preds, refs)
    zh = sacrebleu.corpus_bleu([preds[0], preds[2]], [[refs[0], refs[2]]], tokenize="zh")
    en = sacrebleu.corpus_bleu([preds[1], preds[3]], [[refs[1], refs[3]]], tokenize="13a")
    assert out["groups"]["zh"]["bleu"] == round(zh.score, 4)
    assert out["groups"]["13a"]["bleu"] == round(en.score, 4)
    assert "tok:zh" in out["groups"]["zh"]["signature"] and "tok:13a" in out["groups"]["13a"]["signature"]
    assert out["tokenizer_per_record"] == ["zh", "13a", "zh", "13a"]
    assert out["per_record"][1] == pytest.approx(sacrebleu.sentence_bleu(preds[1], [refs[1]], tokenize="13a").score)


def test_bleu_tokenizer_choice():
    assert bleu_tokenizer("这是中文。") == "zh" and bleu_tokenizer("English only") == "13a"


def test_rouge_on_a_chinese_pair_computed_by_hand():
    import jieba

    ref, pred = "我爱北京天安门", "我爱北京"
    assert jieba.lcut(ref) == ["我", "爱", "北京", "天安门"]
    r = rouge([pred], [ref])
    # characters: 4 of 7 reference unigrams matched, precision 1 -> F1 = 8/11; bigrams 3 of 6 -> 2/3; LCS 4
    assert r["char"]["rouge1"] == pytest.approx(100 * 8 / 11, abs=1e-3)
    assert r["char"]["rouge2"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert r["char"]["rougeL"] == pytest.approx(100 * 8 / 11, abs=1e-3)
    # jieba words: 3 of 4 matched, precision 1 -> F1 = 6/7
    assert r["jieba"]["rouge1"] == pytest.approx(100 * 6 / 7, abs=1e-3)


def test_rouge_mixed_pairs_tokenized_once_per_pair_by_hand():
    import jieba

    # the jieba cuts the hand counts rely on
    assert jieba.lcut("我喜欢Python编程") == ["我", "喜欢", "Python", "编程"]
    assert jieba.lcut("答案是42") == ["答案", "是", "42"]
    assert [w for w in jieba.lcut("用 gpu 训练模型") if w.strip()] == ["用", "gpu", "训练", "模型"]
    assert jieba.lcut("使用GPU训练") == ["使用", "GPU", "训练"]
    assert char_tokens("我喜欢Python编程") == ["我", "喜", "欢", "python", "编", "程"]
    r = rouge([m["pred"] for m in MIXED], [m["ref"] for m in MIXED])
    for i, m in enumerate(MIXED):
        for convention in ("char", "jieba"):
            got = r[convention]["per_record"][i]
            assert (got["rouge1"], got["rouge2"], got["rougeL"]) == pytest.approx(m[convention], abs=1e-3), (i, convention)
    assert r["char"]["rouge1"] == pytest.approx(sum(m["char"][0] for m in MIXED) / len(MIXED), abs=1e-3)


def test_rouge_is_not_zero_for_chinese_and_english_unchanged():
    r = rouge(["猫坐在垫子上", "the cat sat"], ["猫坐在垫子上", "the cat sat"])
    assert r["char"]["rouge1"] == 100 and r["jieba"]["rougeL"] == 100


# Realistic model outputs: GSM8K-style English, Chinese 答案：, boxed, multiple choice.
OUTPUTS = [
    ("She sold 48/2 = 24 clips in May.\nAltogether she sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("Natalia sold 48 + 24 = 72 clips.\n#### $1,080", "$1,080"),
    ("所以一共是 15 个。\n答案：15", "15"),
    ("答案是 40千米/小时。", "40千米/小时"),
    ("小明先有 3 个苹果，又买了 5 个。所以最终答案为 8，对吗", "8"),
    ("所以答案是不确定的，可能是 8", "8"),
    ("最终答案为：B", "B"),
    ("答案：北京", "北京"),
    ("答案是１２。", "１２"),
    ("The answer is 1,250.", "1,250"),
    ("Therefore, the answer is -3.", "-3"),
    ("The answer is not obvious… So 8.", "8"),
    ("The answer is not obvious at first. Each box holds 4, so 2 boxes hold 4 * 2 = 8.", "8"),
    ("The answer is probably 7, but let me check: 2 + 5 = 7.", "7"),
    ("The answer is that we need 5 more apples. So 5", "5"),
    ("Let me think. The answer is **42**.", "42"),
    ("Each ticket is $6, so 3 tickets cost $18.\nFinal answer: $18", "$18"),
    ("Option B fits because 3 > 2. The answer is (B).", "B"),
    ("Only C satisfies all constraints.\nAnswer: C", "C"),
    ("The answer is Paris, the capital of France.", "Paris"),
    ("The answer is 8. Wait, the answer is not clear.", "8"),
    ("So x = \\boxed{3/4}", "3/4"),
    ("Therefore $x = \\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}"),
    ("Half of the cake is .5 and half of that is .25, so she ate .75", ".75"),
    ("The temperature fell to -.5 degrees", "-.5"),
    ("He has 5 apples, then 7, finally 12", "12"),
    ("Upgrade from version 1.2.3 to 2.0.1", None),
    ("no number here", None),
]


@pytest.mark.parametrize("text,answer", OUTPUTS)
def test_answer_extraction(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize("reference,meta,answer", [
    ("She sold 24 clips.\n#### 72", {}, "72"),
    ("Paris was founded around 250 BC and has 2 million people.", {}, None),  # free text: no final answer
    ("Sure! Here are 5 tips for better sleep: ...", {}, None),
    ("I have 3 cats.", {"final_answer": "3"}, "3"),
    ("Step 1 ... step 2 ...", {"final_answer": 7}, "7"),
    ("所以一共 15 个。答案：15", {}, "15"),
    ("x = \\boxed{5}", {}, "5"),
    ("Adding them up, the answer is 42.", {}, "42"),
    ("The answer is not obvious; it depends on 3 factors.", {}, None),
    ("#### 9", {"final_answer": ""}, "9"),
    ("no answer", {"final_answer": True}, None),
])
def test_reference_answer_only_when_explicit(reference, meta, answer):
    assert reference_answer(reference, meta) == answer


@pytest.mark.parametrize("text,value", [
    (".75", 0.75), ("-.5", -0.5), ("0.75", 0.75), ("1,000.5", 1000.5), ("3/4", 0.75), ("−2", -2.0),
    ("１２", 12.0), ("12,345.5 元", 12345.5), ("$40", 40.0), ("-$5", -5.0), ("\\frac{3}{4}", 0.75),
    ("40 km/h", 40.0), ("1.2.3", None), ("forty", None), (None, None),
])
def test_to_number(text, value):
    assert to_number(text) == value


def test_dotted_runs_are_not_numbers():
    assert not is_numeric("1.2.3") and answers_match("1.2.3", "1.2.3") and not answers_match("1.2", "1.2.3")


@pytest.mark.parametrize("pred,ref,ok", [
    ("40", "40", True), ("40.0", "40", True), ("40 km/h", "40", True), ("$40", "40", True),
    ("1,000", "1000", True), ("-3", "-3", True), ("3", "-3", False), ("0.75", "3/4", True),
    ("3/4", "0.75", True), (".75", "0.75", True), ("75", ".75", False), ("40千米/小时", "40", True),
    ("41", "40", False), ("Paris", "paris.", True), (None, "40", False), ("forty", "40", False),
    ("1000002", "1000000", False), ("1000000.5", "1000000", False), ("0.3333333", "1/3", True),
])
def test_answers_compare_numerically(pred, ref, ok):
    assert answers_match(pred, ref) is ok


@pytest.mark.parametrize("pred,ref,ok", [
    ("The cat sat.", "the cat sat", True), ("Paris!", "paris", True), ("1,000", "1000", True),
    ("3.5", "35", False), ("-3", "3", False), ("40.0", "40", False),
])
def test_exact_match_keeps_number_punctuation_and_has_no_tolerance(pred, ref, ok):
    assert exact_match(pred, ref) is ok


def test_whole_number_answers_compare_exactly():
    from sftkit.eval.answers import answers_match

    assert not answers_match("1000001", "1000000") and not answers_match("999999", "1000000")
    assert answers_match("1000000.0", "1,000,000") and answers_match("40 km/h", "40")
    assert answers_match("0.3333333", "0.33333333")  # fractional references keep the relative tolerance


def test_nested_answer_markers_give_the_innermost_answer():
    from sftkit.eval.answers import extract_answer

    assert extract_answer("Final Answer: The final answer is 5. I hope it is correct.") == "5"  # MATH / Minerva
    assert extract_answer("Answer: the answer is Paris") == "Paris"
    assert extract_answer("The answer is 12.") == "12"
