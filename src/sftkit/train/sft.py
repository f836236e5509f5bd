"""Supervised fine-tuning, top to bottom: config -> data -> model + method -> Trainer -> saved run.

A run folder holds ``config.yaml`` (resolved), ``data_report.json``, ``metrics.jsonl``,
``checkpoint-N/`` (the last K, each marked complete when fully written) and ``final/`` (the model or
adapter, its tokenizer and ``sftkit.json``). How the folder survives kills, full disks and a second
training started into it is in ``train/run_dir.py``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml
from transformers import Trainer, TrainingArguments

from sftkit.config import SFTConfig
from sftkit.errors import SftkitError
from sftkit.methods import METHODS
from sftkit.models import load_model, load_tokenizer
from sftkit.tokenize.packing import ATTENTION, PackedCollator, PaddedCollator
from sftkit.tokenize.templates import get_template
from sftkit.train.callbacks import EarlyStop, MarkComplete, MetricsJsonl, TimeLimit
from sftkit.train.data import prepare
from sftkit.train.run_dir import (
    COMPLETE,
    PARTIAL_FINAL,
    atomic_write_text,
    checkpoints,
    clean_interrupted,
    discard,
    fsync_dir,
    fsync_tree,
    guarded_run,
    is_complete,
    is_main_process,
    last_complete_checkpoint,
    lock_run_dir,
    truncate_metrics,
    whole_run_train_loss,
)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _precision(cfg: SFTConfig) -> dict:
    p = cfg.train.precision
    if p == "auto":
        p = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if p in ("bf16", "fp16") and not torch.cuda.is_available():
        raise SftkitError(f"train.precision={p} needs a GPU; use fp32 (or auto) on CPU")
    return {"bf16": p == "bf16", "fp16": p == "fp16"}


def _resume_from(cfg: SFTConfig, run_dir: Path) -> str | None:
    resume = cfg.train.resume
    if resume in (None, "", "none", "false"):
        return None
    if resume == "auto":
        return last_complete_checkpoint(run_dir)
    ckpt = Path(resume)
    if not ckpt.is_dir():
        raise SftkitError(f"train.resume: checkpoint {resume!r} not found")
    if ((ckpt / COMPLETE).exists() or ckpt.resolve().parent == run_dir.resolve()) and not is_complete(ckpt):
        raise SftkitError(f"train.resume: checkpoint {resume!r} is incomplete (interrupted while being saved or "
                          "deleted); use train.resume=auto to continue from the last complete one")
    return resume


def _prepare_run_dir(cfg: SFTConfig, run_dir: Path) -> None:
    """A resumed run drops what the interruption left and the metrics logged after its checkpoint; a fresh run
    must not mix with checkpoints or metrics of an earlier run in its folder."""
    resume = _resume_from(cfg, run_dir)
    if resume is not None:
        clean_interrupted(run_dir)
        state = json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))
        truncate_metrics(run_dir / "metrics.jsonl", int(state.get("global_step", 0)))
        return
    old = checkpoints(run_dir)
    if old and not cfg.train.overwrite and cfg.train.resume != "auto":  # auto: none is complete, none can be used
        raise SftkitError(f"{run_dir} holds checkpoints of an earlier run ({old[-1].name}, ...) and this run does "
                          "not resume; set train.resume=auto to continue it, train.overwrite=true to start over, "
                          "or another output_dir")
    for d in old:
        discard(d)
    clean_interrupted(run_dir)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)


def train(cfg: SFTConfig) -> Path:
    """Run one fine-tuning job; return the run folder.

    Raises:
        SftkitError: bad options or data, the folder is in use by another training, or the disk is full.
    """
    run_dir = Path(cfg.train.output_dir)
    with guarded_run(run_dir):
        trainer, run_dir, tokenizer, has_eval = build(cfg)

        # 4. train (resuming from the last complete checkpoint when asked), evaluate, save
        result = trainer.train(resume_from_checkpoint=_resume_from(cfg, run_dir))
        metrics = dict(result.metrics)
        early = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EarlyStop)), None)
        restored = early is not None and early.restore(trainer.model)  # final/: the best evaluation's model
        if restored:
            metrics.update({"best_step": early.best_step, f"best_{early.metric}": early.best})
        whole = whole_run_train_loss(trainer.state.log_history, trainer.state.global_step)
        if whole is not None:  # the Trainer's own figure covers only the steps since a resume
            metrics["train_loss"] = whole
        if has_eval:  # the Trainer may have just evaluated at the last step: reuse it rather than log it twice
            done = [h for h in trainer.state.log_history
                    if "eval_loss" in h and h.get("step") == trainer.state.global_step]
            ev = ({k: v for k, v in done[-1].items() if k.startswith("eval_")} if done and not restored
                  else trainer.evaluate())
            metrics.update(ev)
            if "eval_loss" in ev:
                metrics["eval_perplexity"] = math.exp(min(ev["eval_loss"], 50))
        if is_main_process():
            save_final(trainer.model, tokenizer, cfg, run_dir / "final", metrics)
    return run_dir


def build(cfg: SFTConfig):
    """Everything up to the first step: (trainer, run folder, tokenizer, has eval data).

    Takes the run folder's lock (held until ``train`` ends, or the process does).
    """
    if cfg.train.max_steps == 0 or cfg.train.max_steps < -1:
        raise SftkitError(f"train.max_steps={cfg.train.max_steps}: max_steps must be > 0 (or -1 for epochs)")
    run_dir = Path(cfg.train.output_dir)
    main = is_main_process()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)
        _prepare_run_dir(cfg, run_dir)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(), allow_unicode=True, sort_keys=False))
    torch.manual_seed(cfg.train.seed)

    # 1. data: canonical records -> rendered rows (masks) -> packed rows
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    train_rows, eval_rows, renderer = prepare(cfg, tokenizer, run_dir, write=main)
    stats = renderer.stats
    dropped = ", ".join(f"{k} {v}" for k, v in stats.dropped.items()) or "none"
    if main:
        print(f"data: {len(train_rows)} training rows{' (packed)' if cfg.data.packing else ''}, {len(eval_rows)} eval rows; "
              f"truncated {stats.truncated}, dropped: {dropped} (details in {run_dir / 'data_report.json'})", flush=True)

    # 2. model + method (the registry decides what trains)
    method = METHODS[cfg.method]
    model = load_model(cfg.model, precision=cfg.train.precision, quantize=method.quantize,
                       trust_remote_code=cfg.trust_remote_code)
    if cfg.data.packing:
        model.set_attn_implementation(ATTENTION)
    model = method.apply(model, cfg)
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()

    # 3. trainer
    has_eval = bool(eval_rows)
    args = TrainingArguments(
        output_dir=str(run_dir), learning_rate=cfg.train.learning_rate, lr_scheduler_type=cfg.train.lr_scheduler,
        warmup_steps=cfg.train.warmup_ratio, num_train_epochs=cfg.train.epochs, max_steps=cfg.train.max_steps,
        per_device_train_batch_size=cfg.train.batch_size, per_device_eval_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum, weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm, logging_steps=cfg.train.logging_steps,
        eval_strategy=("steps" if cfg.train.eval_steps else "epoch") if has_eval else "no",
        eval_steps=cfg.train.eval_steps, save_strategy="steps", save_steps=cfg.train.save_steps,
        save_total_limit=None, seed=cfg.train.seed, data_seed=cfg.train.seed,
        neftune_noise_alpha=cfg.train.neftune_alpha, report_to=["tensorboard"] if cfg.train.tensorboard else [],
        dataloader_num_workers=cfg.train.num_workers, remove_unused_columns=False, use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not sys.stderr.isatty(), save_only_model=False, **_precision(cfg),
    )
    collator = PackedCollator() if cfg.data.packing else PaddedCollator(tokenizer.pad_token_id)
    trainer = Trainer(model=model, args=args, train_dataset=_Rows(train_rows), eval_dataset=_Rows(eval_rows) if has_eval else None,
                      data_collator=collator, processing_class=tokenizer,
                      callbacks=[MetricsJsonl(run_dir / "metrics.jsonl"), MarkComplete(cfg.train.save_total_limit)])
    if cfg.train.early_stopping_patience:
        trainer.add_callback(EarlyStop(cfg.train.best_metric, cfg.train.early_stopping_patience))
    if cfg.train.max_time:
        trainer.add_callback(TimeLimit(cfg.train.max_time))
    if cfg.eval.every_steps:  # generation metrics logged with the loss
        from sftkit.eval.callback import GenerationEval

        gen_eval = GenerationEval(cfg, tokenizer, renderer)
        gen_eval.trainer = trainer
        trainer.add_callback(gen_eval)
    return trainer, run_dir, tokenizer, has_eval


def _root_base(model: str) -> str:
    """The base model an adapter applies to: a run folder that holds an adapter names its own base."""
    from sftkit.models import resolve, run_info

    info = run_info(resolve(model))
    return info["base_model"] if info.get("adapter") and info.get("base_model") else model


def save_final(model, tokenizer, cfg: SFTConfig, out: Path, metrics: dict) -> None:
    """Save the trained model (or adapter) with its tokenizer and what produced it.

    The folder is written beside ``out`` and renamed into place, so a kill or a full disk leaves no partial
    ``final/``. A method that is not an adapter method saves full weights, merged if the model it trained
    carries an adapter (a full run started from a LoRA run folder); ``sftkit.json`` says what was saved.
    """
    if getattr(model.config, "_attn_implementation", None) == ATTENTION:
        model.set_attn_implementation("sdpa")
    method = METHODS[cfg.method]
    if not method.adapter and hasattr(model, "peft_config") and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    save = getattr(method, "save", None) if method.adapter else None  # e.g. bottleneck adapters: their own files
    partial = out.parent / PARTIAL_FINAL
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        if save is not None:
            save(model, partial)
        else:
            model.save_pretrained(partial, safe_serialization=True)
        if cfg.template:  # plain transformers then renders prompts exactly as training did
            tokenizer.chat_template = get_template(cfg.template).jinja()
        tokenizer.save_pretrained(partial)
        adapter = not any(partial.glob("model*.safetensors"))  # what was saved
        # an sft adapter continued from an adapter run applies to that run's base; other stages merged the start
        base = _root_base(cfg.model) if adapter and cfg.stage == "sft" else cfg.model
        if Path(base).is_dir():  # a local folder: absolute, so the run loads from any working directory
            base = str(Path(base).resolve())
        info = {"base_model": base, "stage": cfg.stage, "method": cfg.method,
                "template": cfg.template, "adapter": adapter, "metrics": metrics}
        atomic_write_text(partial / "sftkit.json", json.dumps(info, indent=2, default=str))
        fsync_tree(partial)
        discard(out)
        os.replace(partial, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
