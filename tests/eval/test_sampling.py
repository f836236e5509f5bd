"""pass@k against brute-force enumeration of k-subsets, majority vote (ties, no-answer samples, numbers that
vote together), and `sftkit eval --samples` end to end on the shipped base."""

from __future__ import annotations

import itertools
import json

import pytest
import yaml

from sftkit.cli import main
from sftkit.eval.answers import answers_match, extract_answer
from sftkit.eval.sampling import k_values, majority_vote, pass_at_k
from sftkit.eval.scoring import score_samples
from tests.conftest import GSM8K, write_jsonl


def brute_pass_at_k(correct: list[bool], k: int) -> float:
    """Share of all k-subsets of the samples that hold at least one correct sample (the definition)."""
    subsets = list(itertools.combinations(correct, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_equals_enumeration_of_subsets(n):
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(correct, k), abs=1e-12)
    assert pass_at_k(n, 1, 1) == pytest.approx(1 / n)


def test_pass_at_k_large_n_is_exact_and_checked():
    assert pass_at_k(200, 0, 100) == 0.0 and pass_at_k(200, 101, 100) == 1.0  # n - c < k: some subset hits
    assert pass_at_k(100, 10, 1) == pytest.approx(0.1)
    for bad in ((4, 5, 1), (4, 2, 0), (4, 2, 5), (4, -1, 1)):
        with pytest.raises(ValueError):
            pass_at_k(*bad)


@pytest.mark.parametrize(
    "n,ks",
    [(1, [1]), (2, [1, 2]), (4, [1, 2, 4]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8]), (10, [1, 2, 4, 8, 10])],
)
def test_k_values(n, ks):
    assert k_values(n) == ks


@pytest.mark.parametrize(
    "answers,winner,votes,tied",
    [
        (["72", "72.0", "70"], "72", 2, False),  # numbers vote together whatever their spelling
        (["70", "$72", "72", "72.0"], "$72", 3, False),  # the winner as its group's first sample wrote it
        (["1,000", "1000", "999"], "1,000", 2, False),
        (["5", "6"], "5", 1, True),  # a tie goes to the answer that appeared first
        (["6", "5", "5", "6"], "6", 2, True),
        ([None, None, "3"], "3", 1, False),  # samples without an answer do not vote
        ([None, "4", None, "4", "5"], "4", 2, False),
        ([None, None], None, 0, False),  # nothing to vote on
        (["是", "yes", "否"], "是", 2, False),  # yes/no words vote by polarity
        (["B", "(b)", "C"], "B", 2, False),
        (["Paris", "paris.", "Rome"], "Paris", 2, False),
    ],
)
def test_majority_vote(answers, winner, votes, tied):
    assert majority_vote(answers) == (winner, votes, tied)


REPLIES = [  # (final answer, four sampled replies)
    ("72", ["#### 72", "The answer is 72.0", "答案：70", "so 72"]),  # 3 correct, majority 72
    ("5", ["#### 6", "#### 6", "#### 5", "#### 5"]),  # tie 6 vs 5: the first group (6) wins -> wrong
    ("18", ["I do not know", "no idea", "#### 18", "still thinking"]),  # one answer, it wins the vote
    ("3", ["#### 4", "#### 4", "#### 4", "#### 4"]),
]


def test_score_samples_against_direct_counts():
    items = [{"final_answer": f} for f, _ in REPLIES] + [{"final_answer": None}]
    samples = [r for _, r in REPLIES] + [["#### 1"] * 4]
    metrics, per = score_samples(items, samples)
    counts = [sum(answers_match(extract_answer(r), f) for r in rs) for f, rs in REPLIES]
    assert counts == [3, 2, 1, 0] and [p["correct_samples"] for p in per[:4]] == counts
    assert metrics["pass@k"]["1"] == pytest.approx(sum(c / 4 for c in counts) / 4, abs=1e-4)
    for k in (2, 4):
        want = sum(brute_pass_at_k([True] * c + [False] * (4 - c), k) for c in counts) / 4
        assert metrics["pass@k"][str(k)] == pytest.approx(want, abs=1e-4)
    assert metrics["maj@4"] == 0.5 and [p["majority_correct"] for p in per[:4]] == [True, False, True, False]
    assert metrics["sampling"] == {
        "samples": 4,
        "answer_samples": 4,
        "no_answer_share": 0.15,
        "tied_votes": 1,
    }
    assert per[4] == {"answers": ["1"] * 4}  # no final answer: answers kept, not scored


@pytest.fixture(scope="module")
def sampled_eval(tmp_path_factory):
    d = tmp_path_factory.mktemp("sampled")
    rows = [json.loads(line) for line in (GSM8K / "test.jsonl").read_text(encoding="utf-8").splitlines()[:3]]
    data = write_jsonl(d / "gsm8k3.jsonl", rows)
    code = main(
        [
            "eval",
            "--model",
            "sftkit-tiny",
            "--data",
            str(data),
            "--samples",
            "4",
            "--temperature",
            "1.0",
            "--max-new-tokens",
            "32",
            "-o",
            str(d / "out"),
        ]
    )
    assert code == 0
    metrics = json.loads((d / "out" / "metrics.json").read_text())
    preds = [json.loads(line) for line in (d / "out" / "predictions.jsonl").read_text().splitlines()]
    return d / "out", metrics, preds


def test_eval_with_samples_reports_pass_at_k_and_majority(sampled_eval):
    out, metrics, preds = sampled_eval
    assert set(metrics["pass@k"]) == {"1", "2", "4"} and "maj@4" in metrics
    assert metrics["sampling"]["samples"] == 4 and metrics["sampling"]["answer_samples"] == 3
    assert metrics["generation"]["n"] == 4 and metrics["generation"]["temperature"] == 1.0
    assert len(preds) == 3 and all(len(p["samples"]) == 4 for p in preds)
    assert all(p["prediction"] == p["samples"][0]["prediction"] for p in preds)  # usual metrics: first sample
    assert len({s["prediction"] for p in preds for s in p["samples"]}) > 3  # they really are samples
    # recomputed from the stored sample texts: pass@1 is the mean share of correct samples per item
    shares = [
        sum(answers_match(extract_answer(s["prediction"]), p["final_answer"]) for s in p["samples"]) / 4
        for p in preds
    ]
    assert metrics["pass@k"]["1"] == pytest.approx(sum(shares) / len(shares), abs=1e-4)
    assert metrics["pass@k"]["4"] == pytest.approx(sum(s > 0 for s in shares) / len(shares), abs=1e-4)
    report = (out / "report.md").read_text()
    assert "| maj@4 |" in report and "C(n-c, k)" in report and "tie goes to" in report


def test_eval_config_sampling_and_errors(tmp_path, capsys):
    data = str(GSM8K / "test.jsonl")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": "sftkit-tiny",
                "eval": {
                    "data": data,
                    "max_samples": 2,
                    "max_new_tokens": 6,
                    "samples": 2,
                    "temperature": 0.7,
                    "top_p": 0.9,
                },
            }
        )
    )
    assert main(["eval", "--config", str(cfg), "-o", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["generation"]["n"] == 2 and (m["generation"]["temperature"], m["generation"]["top_p"]) == (
        0.7,
        0.9,
    )
    assert set(m["pass@k"]) == {"1", "2"} and "maj@2" in m
    capsys.readouterr()
    assert main(["eval", "--model", "sftkit-tiny", "--data", data, "--samples", "3"]) == 2  # greedy samples
    err = capsys.readouterr().err.strip()
    assert "3 samples per prompt need a temperature above 0" in err and "\n" not in err
    assert (
        main(["eval", "--config", str(cfg), "--temperature", "0", "-o", str(tmp_path / "o2")]) == 2
    )  # flag wins
    assert "temperature above 0" in capsys.readouterr().err
