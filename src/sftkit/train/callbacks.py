"""Trainer callbacks: metrics as JSONL in the run folder, checkpoints marked complete, then rotated; early
stopping on a logged metric (keeping the best weights) and a wall-time limit."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback

from sftkit.train.run_dir import (  # noqa: F401  (COMPLETE, last_complete_checkpoint: re-exported)
    COMPLETE,
    discard,
    is_main_process,
    last_complete_checkpoint,
    mark_complete,
    prune_checkpoints,
    wait_for_everyone,
    whole_run_train_loss,
)


class MetricsJsonl(TrainerCallback):
    """Append every log (loss, learning rate, eval loss, ...) to ``metrics.jsonl``."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if is_main_process() and logs:
            if "train_loss" in logs:  # the Trainer's figure covers only the steps since a resume
                whole = whole_run_train_loss(state.log_history, state.global_step)
                logs = {**logs, "train_loss": whole if whole is not None else logs["train_loss"]}
            rec = {"step": state.global_step, "epoch": state.epoch, **{k: _json(v) for k, v in logs.items()}}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, default=str) + "\n")


def _json(value):
    """NaN/Infinity are not JSON: a diverged loss is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MarkComplete(TrainerCallback):
    """Checkpoints that can always be resumed: the Trainer writes ``checkpoint-N``, this callback fsyncs and marks
    it, and only then deletes older ones beyond ``keep`` (the Trainer's own rotation must be off). Each save step is
    also a logging step, so the logged losses cover the run up to every checkpoint (whole-run train loss after a
    resume, exact ``metrics.jsonl`` truncation)."""

    def __init__(self, keep: int):
        self.keep = keep

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            control.should_log = True
            if is_main_process():  # a folder of that name left by an earlier run must not be written into
                discard(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            wait_for_everyone()

    def on_save(self, args, state, control, **kwargs):
        wait_for_everyone()  # every process has written its part (its RNG state) before the folder is marked
        if is_main_process():
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                mark_complete(ckpt)
                prune_checkpoints(Path(args.output_dir), self.keep)


def greater_is_better(metric: str) -> bool:
    """Losses and perplexities fall as a model gets better; every other metric rises."""
    return not any(k in metric for k in ("loss", "perplexity"))


class EarlyStop(TrainerCallback):
    """Stop when ``metric`` (any logged value: ``eval_loss``, ``eval_gen_answer_accuracy``, ...) has not improved
    for ``patience`` evaluations in a row, and keep a copy of the trainable parameters (on the CPU) at the best
    one, so the run can save the best evaluation's model (``restore``). The copy lives in memory: a run resumed
    after a kill tracks the best from the resume on."""

    def __init__(self, metric: str, patience: int):
        self.metric, self.patience, self.greater = metric, patience, greater_is_better(metric)
        self.best: float | None = None
        self.best_step: int | None = None
        self.since = 0
        self.weights: dict | None = None

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(value) or model is None:
            return
        if self.best is None or (value > self.best if self.greater else value < self.best):
            self.best, self.best_step, self.since = value, state.global_step, 0
            self.weights = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
        else:
            self.since += 1
            if self.since >= self.patience:
                control.should_training_stop = True

    def restore(self, model) -> bool:
        """Put the best evaluation's trainable parameters back; False when there is nothing to restore."""
        if self.weights is None:
            return False
        import torch

        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in self.weights:
                    p.copy_(self.weights[n].to(p.device))
        return True


class TimeLimit(TrainerCallback):
    """End training after the first step that finishes ``seconds`` after training began (then save as usual)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.start is not None and time.monotonic() - self.start >= self.seconds:
            control.should_training_stop = True
