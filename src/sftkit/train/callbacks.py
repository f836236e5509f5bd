"""Trainer callbacks: metrics as JSONL in the run folder, and checkpoints marked complete, then rotated."""

from __future__ import annotations

import json
import math
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
