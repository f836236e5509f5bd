"""Early stopping on a logged metric keeps the best evaluation's weights; a time limit ends training early."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from sftkit.config import load_config
from sftkit.train import run_stage
from tests.train.helpers import config


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_early_stopping_saves_the_best_evaluation_and_stops_after_patience(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    raw = config(tiny_model_dir, run, method="full", learning_rate=0.05, max_steps=30, save_steps=1,
                 save_total_limit=40, logging_steps=1).model_dump()
    raw["data"]["val_size"] = 0.25
    raw["train"].update(eval_steps=1, early_stopping_patience=2)
    cfg = load_config(raw=raw)
    run_stage(cfg)
    evals = [(m["step"], m["eval_loss"]) for m in _metrics(run) if "eval_loss" in m]
    best_step, best = min(evals, key=lambda e: e[1])
    # stopped exactly `patience` evaluations after the best one (the loss diverges at this learning rate)
    assert max(s for s, _ in evals) == best_step + 2 < 30
    info = json.loads((run / "final" / "sftkit.json").read_text())
    assert info["metrics"]["best_step"] == best_step and abs(info["metrics"]["best_eval_loss"] - best) < 1e-9
    # final/ holds the weights the Trainer checkpointed at the best step, not the last ones
    final = load_file(run / "final" / "model.safetensors")
    at_best = load_file(run / f"checkpoint-{best_step}" / "model.safetensors")
    last = load_file(run / f"checkpoint-{best_step + 2}" / "model.safetensors")
    assert all(torch.equal(final[k], at_best[k]) for k in final)
    assert any(not torch.equal(final[k], last[k]) for k in final)
    assert abs(info["metrics"]["eval_loss"] - best) < 1e-4  # the final evaluation is the best model's


def test_time_limit_ends_training_after_the_step_that_crosses_it(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    cfg = config(tiny_model_dir, run, max_steps=50, max_time=1e-3)
    run_stage(cfg)
    assert json.loads((run / "final" / "sftkit.json").read_text())["metrics"]["train_runtime"] < 60
    steps = [m["step"] for m in _metrics(run)]
    assert max(steps) == 1
