"""Trainer callbacks: metrics as JSONL in the run folder, and a marker that a checkpoint is complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import TrainerCallback

COMPLETE = "SFTKIT_COMPLETE"  # written last: a checkpoint without it was interrupted and is never resumed from


class MetricsJsonl(TrainerCallback):
    """Append every log (loss, learning rate, eval loss, ...) to ``metrics.jsonl``."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


class MarkComplete(TrainerCallback):
    """After the Trainer has written a checkpoint, mark it complete (atomically, by rename)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                tmp = ckpt / (COMPLETE + ".tmp")
                tmp.write_text(str(state.global_step))
                os.replace(tmp, ckpt / COMPLETE)


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint folder that was completely written, or None."""
    found = []
    for d in Path(output_dir).glob("checkpoint-*"):
        suffix = d.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (d / COMPLETE).exists() and (d / "trainer_state.json").exists():
            found.append((int(suffix), d))
    return str(max(found)[1]) if found else None
