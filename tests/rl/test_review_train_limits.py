"""Review (issue 8): train.max_time and train.early_stopping_patience are wired in the sft recipe (and rft, which
fine-tunes through it); the preference and online stages stop at max_steps / epochs, so they refuse these
fields with the reason instead of silently ignoring them."""

from __future__ import annotations

import json

import pytest

from sftkit.errors import SftkitError
from tests.conftest import write_jsonl
from tests.rl.test_grpo import QUESTIONS, config
from tests.rl.test_preference import pref_config


def _steps(run_dir) -> int:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(x["step"] for x in lines if "loss" in x)


def test_grpo_refuses_train_max_time(tmp_path):
    data = write_jsonl(tmp_path / "q.jsonl", [{"prompt": q, "meta": {"final_answer": a}} for q, a in QUESTIONS])
    with pytest.raises(SftkitError, match="apply to stages sft and rft; stage 'grpo'"):
        config(data, tmp_path / "run", max_steps=6, max_time=0.001)


def test_dpo_refuses_train_max_time(tmp_path):
    with pytest.raises(SftkitError, match="apply to stages sft and rft; stage 'dpo'"):
        pref_config(tmp_path, "dpo", steps=6, train={"max_time": 0.001, "logging_steps": 1})


def test_sft_honours_train_max_time_control(tiny_model_dir, tmp_path):
    """Control: stage sft stops after the step that crosses the limit."""
    from sftkit.train import sft
    from tests.train.helpers import config as sft_config

    sft.train(sft_config(tiny_model_dir, tmp_path / "run", max_steps=6, max_time=0.001, logging_steps=1))
    assert _steps(tmp_path / "run") == 1
