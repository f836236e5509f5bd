"""Resume: an interrupted run continued with resume: auto ends with the same weights as an unbroken run.

Kills of a real process and injected faults (full disk, kills while rotating) are in test_faults.py."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import TrainerCallback

from sftkit.train.callbacks import COMPLETE, last_complete_checkpoint
from sftkit.train.sft import build, train
from tests.train.helpers import config


class Crash(TrainerCallback):
    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated crash")


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_interrupted_run_resumes_to_identical_weights(tiny_model_dir, tmp_path):
    common = {"max_steps": 12, "save_steps": 4, "learning_rate": 1e-3, "lr_scheduler": "cosine", "save_total_limit": 2}
    # the unbroken run
    trainer, _, _, _ = build(config(tiny_model_dir, tmp_path / "a", "full", **common))
    trainer.train()
    unbroken = _weights(trainer.model)

    # the same run, crashing at step 6 (checkpoint-4 is complete) ...
    cfg = config(tiny_model_dir, tmp_path / "b", "full", **common)
    trainer, run_dir, _, _ = build(cfg)
    trainer.add_callback(Crash(6))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    # ... leaving a half-written checkpoint behind, which must be ignored
    (run_dir / "checkpoint-8").mkdir()
    (run_dir / "checkpoint-8" / "trainer_state.json").write_text("{}")
    assert (run_dir / "checkpoint-4" / COMPLETE).exists()
    assert last_complete_checkpoint(run_dir).endswith("checkpoint-4")

    cfg.train.resume = "auto"
    trainer, _, _, _ = build(cfg)
    assert not (run_dir / "checkpoint-8").exists()  # the interrupted checkpoint is cleaned away
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(run_dir))
    resumed = _weights(trainer.model)
    assert trainer.state.global_step == 12
    for name, value in unbroken.items():
        assert torch.equal(value, resumed[name]), name  # bit for bit
    logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logs if "loss" in m] == [4, 5, 8, 10, 12]  # step 5 logged once, not twice


def test_explicit_resume_from_an_incomplete_checkpoint_is_refused(tiny_model_dir, tmp_path):
    from sftkit.errors import SftkitError

    cfg = config(tiny_model_dir, tmp_path / "run", "lora", max_steps=2, save_steps=1, logging_steps=1)
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoint-1"
    (ckpt / "adapter_model.safetensors").unlink()
    cfg.train.resume = str(ckpt)
    with pytest.raises(SftkitError, match="is incomplete"):
        build(cfg)


def test_resume_auto_with_nothing_complete_starts_over(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, tmp_path / "run", "lora", max_steps=2, save_steps=1, logging_steps=1, resume="auto")
    (tmp_path / "run" / "checkpoint-1").mkdir(parents=True)  # killed while writing its first checkpoint
    (tmp_path / "run" / "checkpoint-1" / "optimizer.pt").write_bytes(b"\0")
    run = train(cfg)
    assert (run / "final" / "adapter_config.json").exists()
    assert sorted(d.name for d in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (run / "checkpoint-1" / "adapter_model.safetensors").exists()


def test_train_writes_run_folder(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, tmp_path / "run", "lora", max_steps=4, save_steps=2, logging_steps=2)
    cfg.data.val_size = 0.25
    run = train(cfg)
    assert (run / "config.yaml").exists() and (run / "final" / "adapter_config.json").exists()
    report = json.loads((run / "data_report.json").read_text())
    assert report["train_rows"] > 0 and report["eval_records"] == 23  # 91 identity records * 0.25
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in m for m in metrics) and any("eval_loss" in m for m in metrics)
    info = json.loads((run / "final" / "sftkit.json").read_text())
    assert info["method"] == "lora" and "eval_perplexity" in info["metrics"]
    assert len(list(run.glob("checkpoint-*"))) <= 2


def test_packed_training_learns(tiny_model_dir, tmp_path):
    from tests.train.helpers import batch_loss

    cfg = config(tiny_model_dir, tmp_path / "packed", "full", max_steps=8, learning_rate=3e-3)
    cfg.data.packing = True
    trainer, run_dir, tok, _ = build(cfg)
    rows = trainer.train_dataset.rows
    assert all(sum(r["lengths"]) <= cfg.data.max_length for r in rows) and sum(len(r["lengths"]) for r in rows) == 32
    probe = [{"input_ids": r["input_ids"][:n], "labels": r["labels"][:n]} for r in rows[:4] for n in r["lengths"][:1]]
    model = trainer.model
    model.set_attn_implementation("sdpa")
    before = batch_loss(model, probe, tok.pad_token_id)
    from sftkit.tokenize.packing import ATTENTION

    model.set_attn_implementation(ATTENTION)
    trainer.train()
    model.set_attn_implementation("sdpa")
    assert batch_loss(model, probe, tok.pad_token_id) < before
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["packed_rows"] == len(rows) < 32


def test_fresh_run_refuses_an_earlier_runs_checkpoints(tiny_model_dir, tmp_path):
    from sftkit.errors import SftkitError

    cfg = config(tiny_model_dir, tmp_path / "run", "lora", max_steps=2, save_steps=1, logging_steps=1)
    train(cfg)
    with pytest.raises(SftkitError, match="holds checkpoints of an earlier run"):
        build(cfg)
    cfg.train.overwrite = True
    train(cfg)
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logs if "loss" in m] == [1, 2]  # the earlier run's metrics are gone
