"""Curr-ReFT curriculum: records ordered easy before hard, and trl's sampler hands them to training in that order."""

from __future__ import annotations

import json

import pytest

from sftkit.config_rl import CurriculumConfig
from sftkit.errors import SftkitError
from sftkit.train import grpo
from sftkit.train.curriculum import levels, order
from sftkit.train.run_dir import release_run_dir
from tests.conftest import write_jsonl
from tests.rl.test_grpo import config


def rec(i, **meta):
    return {"messages": [{"role": "user", "content": f"q{i}"}], "meta": meta,
            "origin": {"file": "d.jsonl", "line": i + 1, "index": i}}


def test_difficulty_ascending_and_stable():
    recs = [rec(0, difficulty=3), rec(1, difficulty=1), rec(2, difficulty=2.5), rec(3, difficulty=1), rec(4, difficulty=0)]
    out = order(recs, CurriculumConfig(by="difficulty"))
    assert [r["messages"][0]["content"] for r in out] == ["q4", "q1", "q3", "q2", "q0"]  # ties keep their order
    assert levels(out, CurriculumConfig(by="difficulty")) == {"0": 1, "1": 2, "2.5": 1, "3": 1}


def test_difficulty_in_another_field():
    recs = [rec(0, level=2), rec(1, level=1)]
    assert [r["meta"]["level"] for r in order(recs, CurriculumConfig(by="difficulty", field="level"))] == [1, 2]


@pytest.mark.parametrize("bad", [None, "hard", True])
def test_missing_or_non_numeric_difficulty_is_an_error_naming_the_record(bad):
    recs = [rec(0, difficulty=1), rec(1, difficulty=bad) if bad is not None else rec(1), rec(2)]
    with pytest.raises(SftkitError, match=r"d\.jsonl:2 has meta\.difficulty = .*not a number \(2 of 3 records\)"):
        order(recs, CurriculumConfig(by="difficulty"))


def test_formats_in_stage_order_others_last():
    recs = [rec(0, task="open"), rec(1, task="yes_no"), rec(2, task="essay"), rec(3, task="multiple_choice"),
            rec(4), rec(5, task="yes_no")]
    cur = CurriculumConfig(by="format", field="task")
    out = order(recs, cur)
    assert [r["meta"].get("task") for r in out] == ["yes_no", "yes_no", "multiple_choice", "open", "essay", None]
    assert levels(out, cur) == {"yes_no": 2, "multiple_choice": 1, "open": 1, "other": 2}


def test_none_keeps_the_order():
    recs = [rec(0, difficulty=3), rec(1, difficulty=1)]
    assert order(recs, CurriculumConfig()) == recs


def _trained_order(trainer) -> list[float]:
    """The difficulty of each question in the order trl's dataloader hands them to training."""
    seen = []
    for batch in trainer.get_train_dataloader():
        seen += [json.loads(row["record"])["meta"]["difficulty"] for row in batch]
    return seen


def test_training_follows_the_curriculum(tmp_path):
    diffs = [5, 2, 7, 1, 3, 8, 4, 6]
    data = write_jsonl(tmp_path / "q.jsonl", [{"prompt": f"What is {d} plus 1?", "meta": {"final_answer": str(d + 1),
                                                                                        "difficulty": d}}
                                               for d in diffs])
    cfg = config(data, tmp_path / "run", rl={"curriculum": {"by": "difficulty"}})
    trainer, run_dir, _ = grpo.build(cfg)
    release_run_dir(run_dir)
    seen = _trained_order(trainer)
    assert seen == [d for d in sorted(diffs) for _ in range(cfg.rl.num_generations)]  # each question once per completion
    report = json.loads((run_dir / "data_report.json").read_text())
    assert list(report["curriculum"]) == [str(d) for d in sorted(diffs)]

    shuffled = config(data, tmp_path / "run2")
    trainer, run_dir, _ = grpo.build(shuffled)
    release_run_dir(run_dir)
    assert _trained_order(trainer) != seen  # without a curriculum trl shuffles (seeded)
