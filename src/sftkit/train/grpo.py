"""RL with verifiable rewards, top to bottom: config -> questions -> model + method -> trl's GRPO (or RLOO)
trainer with rollouts through ``sftkit.generation`` -> saved run.

The stages ``grpo`` and ``rloo`` share this recipe; trl's ``GRPOTrainer`` / ``RLOOTrainer`` compute the
losses. What sftkit adds around them:

- **Questions**: the one loader (``load_records``); SFT records (the ReFT recipe: RL on the SFT warm-up's
  questions, the demonstration ignored) and prompt-only records both work: the prompt is
  ``rewards.split_prompt(record)[0]``. With ``answer_match`` among the rewards, a record without a final
  answer cannot be scored: it is not used, but written to ``rejects.jsonl`` (file, line, field, reason)
  and counted in one printed line naming the first. Prompts are rendered by sftkit's ``Renderer`` (the
  template SFT trained with); one longer than ``data.max_length`` tokens is rejected the same way.
  Records held out by ``data.val_size`` / ``data.eval_file`` are not trained on; held-out accuracy during
  training comes from ``eval.every_steps`` + ``eval.data`` (greedy, the eval callback).
- **Order**: ``rl.curriculum`` (``curriculum.py``) sorts the questions easy before hard and turns trl's
  shuffling off, so training meets them in that order.
- **Batch**: ``train.batch_size`` counts questions per device and step; trl counts completions, so its
  ``per_device_train_batch_size`` is ``batch_size * rl.num_generations``. One rollout batch is generated per
  optimizer step (``batch_size * grad_accum`` questions) and used ``rl.iterations`` times.
- **Reference**: ``rl.kl_coef`` is trl's ``beta``. With an adapter method the reference is the start model
  with the new adapter switched off (no copy; trl's extra "ref" copy of a fresh adapter is removed; PiSSA
  keeps it, since PiSSA changes the base weights). Full and freeze keep trl's second model, set to the
  start weights (a start merged from an adapter run is not what trl would load from disk).
- **Rollouts** (``rollout.py``): GRPO's ``rollout_func`` hook; trl's ``RLOOTrainer`` has no such hook, so
  the RLOO trainer here overrides its prompt tokenizing and generation steps to call the same function.
- **Logs**: ``metrics.jsonl`` gets trl's logs (``reward``, ``rewards/<name>/mean`` and ``/std``, ``kl``,
  completion lengths, ...) and a ``{"step", "completions"}`` line with ``rl.log_completions`` samples.

The run folder is ``sft.py``'s: lock, ``config.yaml``, ``data_report.json``, ``rejects.jsonl``,
``lineage.jsonl``, ``metrics.jsonl``, checkpoints marked complete, resume, ``final/``.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch
import yaml
from transformers import Trainer
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from sftkit.config import SFTConfig
from sftkit.errors import SftkitError
from sftkit.generation import GenerationOptions, prompt_ids
from sftkit.methods import METHODS
from sftkit.models import load_model, load_tokenizer
from sftkit.rewards import final_answer, load_rewards, split_prompt
from sftkit.tokenize.render import Renderer, RenderOptions
from sftkit.train.callbacks import MarkComplete, MetricsJsonl
from sftkit.train.curriculum import levels, order
from sftkit.train.data import load_records
from sftkit.train.rollout import CompletionLog, Rollouts, trl_reward
from sftkit.train.run_dir import (
    atomic_write_text,
    guarded_run,
    is_main_process,
    lock_run_dir,
)
from sftkit.train.sft import _precision, _prepare_run_dir, _resume_from, save_final


def train(cfg: SFTConfig) -> Path:
    """Run one GRPO or RLOO job; return the run folder.

    Raises:
        SftkitError: bad options, rewards or data, the folder is in use, or the disk is full.
    """
    run_dir = Path(cfg.train.output_dir)
    with guarded_run(run_dir):
        trainer, run_dir, tokenizer = build(cfg)
        result = trainer.train(resume_from_checkpoint=_resume_from(cfg, run_dir))
        model = trainer.accelerator.unwrap_model(trainer.model)
        if "ref" in (getattr(model, "peft_config", None) or {}):
            model.delete_adapter("ref")  # PiSSA's reference copy is not part of the result
        if is_main_process():
            save_final(model, tokenizer, cfg, run_dir / "final", dict(result.metrics))
    return run_dir


def build(cfg: SFTConfig):
    """Everything up to the first step: (trainer, run folder, tokenizer). Takes the run folder's lock."""
    run_dir = Path(cfg.train.output_dir)
    main = is_main_process()
    rewards = load_rewards(cfg.rl.rewards)  # a reward that does not load fails before anything is written
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)
        _prepare_run_dir(cfg, run_dir)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(), allow_unicode=True, sort_keys=False))
    torch.manual_seed(cfg.train.seed)

    # 1. questions: canonical records -> prompts rendered with the SFT template, in curriculum order
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    renderer = Renderer(tokenizer, cfg.template, RenderOptions(max_length=cfg.data.max_length))
    records, prompts = questions(cfg, renderer, run_dir, write=main)
    dataset = _dataset(records, prompts)

    # 2. model + method (the registry decides what trains)
    method = METHODS[cfg.method]
    model = load_model(cfg.model, precision=cfg.train.precision, quantize=method.quantize,
                       trust_remote_code=cfg.trust_remote_code)
    model = method.apply(model, cfg)

    # 3. trainer: trl's, with sftkit's rollouts and rewards
    rl = cfg.rl
    options = GenerationOptions(max_new_tokens=rl.max_completion_length, temperature=rl.temperature,
                                top_p=rl.top_p, top_k=rl.top_k)
    rollouts = Rollouts(tokenizer, renderer, prompts, options)
    funcs = [trl_reward(name, fn, rollouts) for name, _, fn in rewards]
    shown = {p: _last_user(c) for p, (c, _, _) in prompts.items()}
    log = CompletionLog(rollouts, shown, run_dir / "metrics.jsonl", rl.log_completions)
    callbacks = [MetricsJsonl(run_dir / "metrics.jsonl"), log, MarkComplete(cfg.train.save_total_limit)]
    args = _args(cfg, [w for _, w, _ in rewards])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*rollout_func.*experimental")
        if cfg.stage == "rloo":
            trainer = _RLOO(model=model, reward_funcs=funcs, args=args, train_dataset=dataset,
                            processing_class=tokenizer, callbacks=callbacks)
            trainer.rollouts = rollouts
        else:
            trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=dataset,
                                  processing_class=tokenizer, callbacks=callbacks, rollout_func=rollouts)
    _reference(trainer, cfg)
    log.trainer = trainer
    if cfg.eval.every_steps:  # held-out accuracy, logged as its own line (not mixed into trl's reward window)
        from sftkit.eval.callback import GenerationEval

        gen_eval = GenerationEval(cfg, tokenizer, renderer)
        gen_eval.trainer = _PlainLog(trainer)
        trainer.add_callback(gen_eval)
    return trainer, run_dir, tokenizer


def questions(cfg: SFTConfig, renderer, run_dir: Path, write: bool = True):
    """(usable records in training order, {prompt text: (conversation, tools, prompt ids)}).

    Writes ``data_report.json`` and appends unusable records to ``rejects.jsonl`` (when ``write``)."""
    train_recs, eval_recs, loaded = load_records(cfg, run_dir if write else None, purpose="prompts")
    need_answer = any(s.name == "answer_match" for s in cfg.rl.rewards)
    kept, rejects = [], []
    for rec in train_recs:
        if not any(m.get("role") == "user" for m in rec.get("messages") or []):
            rejects.append((rec, "messages", "no user turn to use as the prompt"))
        elif need_answer and final_answer(rec) is None:
            rejects.append((rec, "meta.final_answer", "no final answer (answer_match cannot score it): set "
                            "meta.final_answer or end the reply with an answer marker such as '#### 42'"))
        else:
            kept.append(rec)
    convs = [split_prompt(r)[0] for r in kept]
    tools = [r.get("tools") or None for r in kept]
    texts = [renderer.prompt_text(c, t) for c, t in zip(convs, tools, strict=True)]
    ids = prompt_ids(renderer, convs, tools)
    usable, prompts = [], {}
    for rec, c, t, text, i in zip(kept, convs, tools, texts, ids, strict=True):
        if len(i) > cfg.data.max_length:
            rejects.append((rec, "messages", f"prompt of {len(i)} tokens is longer than data.max_length "
                            f"({cfg.data.max_length})"))
            continue
        usable.append({**rec, "_prompt": text})
        prompts[text] = (c, t, i)
    usable = order(usable, cfg.rl.curriculum)
    if write:
        _write_rejects(run_dir / "rejects.jsonl", rejects, cfg.stage)
        report = {**loaded, "train_records": len(train_recs), "questions": len(usable),
                  "rejected": dict(Counter(r for _, _, r in rejects)), "curriculum": levels(usable, cfg.rl.curriculum),
                  "eval_records_not_trained": len(eval_recs)}
        atomic_write_text(run_dir / "data_report.json", json.dumps(report, indent=2, ensure_ascii=False, default=str))
        atomic_write_text(run_dir / "lineage.jsonl", "".join(
            json.dumps({"row": k, "origins": [r.get("origin")]}, ensure_ascii=False) + "\n"
            for k, r in enumerate(usable)))
    first = f"first: {_where(rejects[0][0])}, {rejects[0][2]}" if rejects else ""
    if not usable:
        raise SftkitError(f"no usable question for stage {cfg.stage}: {len(rejects)} of {len(train_recs)} "
                          f"records not usable ({first})" if rejects else f"no records for stage {cfg.stage}")
    n_read = loaded["conversion"]["rejected"]  # refused while reading: also lines of rejects.jsonl
    if (rejects or n_read) and write:
        said = [f"{len(rejects)} of {len(train_recs)} records not used ({first})"] if rejects else []
        said += [f"{n_read} records rejected while reading"] if n_read else []
        print(f"data: {'; '.join(said)}; all {n_read + len(rejects)} in {run_dir / 'rejects.jsonl'}", flush=True)
    if write:
        print(f"data: {len(usable)} questions, {cfg.rl.num_generations} completions each per step"
              + (f", curriculum by {cfg.rl.curriculum.by}" if cfg.rl.curriculum.by != "none" else ""), flush=True)
    return usable, prompts


def _where(rec: dict) -> str:
    o = rec.get("origin") or {}
    return f"{o.get('file')}:{o['line']}" if o.get("line") else f"{o.get('file')}[{o.get('index')}]"


def _write_rejects(path: Path, rejects: list, stage: str) -> None:
    if not rejects:
        return
    with open(path, "a", encoding="utf-8") as fh:
        for rec, field, reason in rejects:
            o = rec.get("origin") or {}
            fh.write(json.dumps({"source": o.get("file"), "line": o.get("line"), "index": o.get("index"),
                                 "field": field, "reason": reason, "stage": stage}, ensure_ascii=False) + "\n")


def _last_user(conv: list[dict]) -> str:
    content = next(m.get("content") for m in reversed(conv) if m.get("role") == "user")
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def _dataset(records: list[dict], prompts: dict):
    """trl's rows: the rendered prompt text (trl hands it to the rollout) and the canonical record (JSON, for
    the rewards); the record's own ``_prompt`` key is dropped."""
    from datasets import Dataset

    clean = [{k: v for k, v in r.items() if k != "_prompt"} for r in records]
    return Dataset.from_dict({"prompt": [r["_prompt"] for r in records],
                              "record": [json.dumps(r, ensure_ascii=False, default=str) for r in clean]})


def _args(cfg: SFTConfig, weights: list[float]):
    """trl's GRPOConfig / RLOOConfig from sftkit's config (bf16 and gradient checkpointing only when asked)."""
    rl, t = cfg.rl, cfg.train
    common = dict(
        output_dir=t.output_dir, learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio, num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size * rl.num_generations, gradient_accumulation_steps=t.grad_accum,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, logging_steps=t.logging_steps,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=None, seed=t.seed, data_seed=t.seed,
        report_to=["tensorboard"] if t.tensorboard else [], dataloader_num_workers=t.num_workers,
        remove_unused_columns=False, use_cpu=not torch.cuda.is_available(), disable_tqdm=not sys.stderr.isatty(),
        save_only_model=False, gradient_checkpointing=t.gradient_checkpointing, eval_strategy="no",
        beta=rl.kl_coef, num_generations=rl.num_generations, max_completion_length=rl.max_completion_length,
        temperature=rl.temperature, top_p=rl.top_p, top_k=rl.top_k or 0, epsilon=rl.epsilon,
        num_iterations=rl.iterations, reward_weights=weights, shuffle_dataset=rl.curriculum.by == "none",
        log_completions=False, **_precision(cfg),
    )
    if cfg.stage == "rloo":
        return RLOOConfig(**common)
    return GRPOConfig(**common, loss_type=rl.loss_type, scale_rewards="group" if rl.scale_rewards else "none")


def _reference(trainer, cfg: SFTConfig) -> None:
    """The reference is the start model. A fresh adapter is the identity, so switching it off gives the start
    model: trl's "ref" copy of it is dropped. Full/freeze: trl loaded its reference from disk by name, which is
    not the start when that was merged from an adapter run, so it takes the start's weights."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in (getattr(model, "peft_config", None) or {}) and cfg.lora.init != "pissa":
        model.delete_adapter("ref")
    if trainer.ref_model is not None:
        trainer.ref_model.load_state_dict(model.state_dict())


class _PlainLog:
    """The eval callback logs through transformers' own ``Trainer.log``: trl's ``log`` would fold its pending
    reward window into the eval line. Logging resets ``control.should_log``; it is restored, so a training
    log due at the same step is still written."""

    def __init__(self, trainer):
        self.trainer = trainer

    def log(self, logs: dict) -> None:
        due = self.trainer.control.should_log
        Trainer.log(self.trainer, logs)
        self.trainer.control.should_log = due


class _RLOO(RLOOTrainer):
    """trl's RLOO with sftkit's rollouts: it has no ``rollout_func``, so its two generation steps call them."""

    rollouts: Rollouts | None = None

    def _tokenize_prompts(self, prompts: list):
        self._rollout = self.rollouts(prompts, self)
        return self._rollout["prompt_ids"], None, {}

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields):
        return self._rollout["completion_ids"]
