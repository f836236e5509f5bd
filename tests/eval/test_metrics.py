"""Metrics against independently known values: sacrebleu itself, ROUGE by hand, answer extraction cases."""

from __future__ import annotations

import pytest
import sacrebleu

from sftkit.eval.answers import answers_match, extract_answer, to_number
from sftkit.eval.metrics import bleu, bleu_tokenizer, rouge


def test_bleu_equals_sacrebleu_per_tokenizer_group():
    preds = ["今天天气很好", "the cat sat on the mat", "我喜欢吃苹果", "a quick brown fox"]
    refs = ["今天天气不错", "the cat is on the mat", "我爱吃苹果", "the quick brown fox"]
    out = bleu(preds, refs)
    zh = sacrebleu.corpus_bleu([preds[0], preds[2]], [[refs[0], refs[2]]], tokenize="zh")
    en = sacrebleu.corpus_bleu([preds[1], preds[3]], [[refs[1], refs[3]]], tokenize="13a")
    assert out["groups"]["zh"]["bleu"] == round(zh.score, 4)
    assert out["groups"]["13a"]["bleu"] == round(en.score, 4)
    assert "tok:zh" in out["groups"]["zh"]["signature"] and "tok:13a" in out["groups"]["13a"]["signature"]
    assert out["tokenizer_per_record"] == ["zh", "13a", "zh", "13a"]
    assert out["per_record"][1] == pytest.approx(
        sacrebleu.sentence_bleu(preds[1], [refs[1]], tokenize="13a").score)


def test_bleu_tokenizer_choice():
    assert bleu_tokenizer("这是中文。") == "zh" and bleu_tokenizer("English only") == "13a"


def test_rouge_on_a_chinese_pair_computed_by_hand():
    import jieba

    ref, pred = "我爱北京天安门", "我爱北京"
    assert jieba.lcut(ref) == ["我", "爱", "北京", "天安门"]
    r = rouge([pred], [ref])
    # characters: 4 of 7 reference unigrams matched, precision 1 -> F1 = 2 * 1 * 4/7 / (1 + 4/7) = 8/11
    assert r["char"]["rouge1"] == pytest.approx(100 * 8 / 11, abs=1e-3)
    # bigrams: 3 of 6 matched, precision 1 -> F1 = 2/3; LCS = 4 chars -> same as unigrams
    assert r["char"]["rouge2"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert r["char"]["rougeL"] == pytest.approx(100 * 8 / 11, abs=1e-3)
    # jieba words: 3 of 4 matched, precision 1 -> F1 = 6/7
    assert r["jieba"]["rouge1"] == pytest.approx(100 * 6 / 7, abs=1e-3)


def test_rouge_is_not_zero_for_chinese_and_english_unchanged():
    r = rouge(["猫坐在垫子上", "the cat sat"], ["猫坐在垫子上", "the cat sat"])
    assert r["char"]["rouge1"] == 100 and r["jieba"]["rougeL"] == 100


@pytest.mark.parametrize("text,answer", [
    ("She sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("所以一共是 15 个。\n答案：15", "15"),
    ("答案是 40千米/小时。", "40千米/小时"),
    ("The answer is 1,250.", "1,250"),
    ("Therefore, the answer is -3.", "-3"),
    ("so x = \\boxed{3/4}", "3/4"),
    ("He has 5 apples, then 7, finally 12", "12"),
    ("no number here", None),
])
def test_answer_extraction(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize("pred,ref,ok", [
    ("40", "40", True), ("40.0", "40", True), ("40 km/h", "40", True), ("$40", "40", True),
    ("1,000", "1000", True), ("-3", "-3", True), ("3", "-3", False), ("0.75", "3/4", True),
    ("3/4", "0.75", True), ("40千米/小时", "40", True), ("41", "40", False), ("Paris", "paris.", True),
    (None, "40", False), ("forty", "40", False),
])
def test_answers_compare_numerically(pred, ref, ok):
    assert answers_match(pred, ref) is ok


def test_to_number_handles_unicode_minus_and_commas():
    assert to_number("−12") == -12 and to_number("12,345.5 元") == 12345.5
