"""Preference training, top to bottom: config -> preference rows -> model + method -> trl's trainer -> saved run.

Stages and their engines (trl's trainers; their losses are not rewritten here):

- ``dpo``: ``trl.DPOTrainer`` (loss ``rl.dpo_loss``, ``rl.beta``, ``rl.label_smoothing``; with
  ``rl.dpo_sft_weight`` > 0 trl adds its ``"sft"`` loss, the chosen reply's mean token NLL, at that weight: RPO);
- ``kto``: ``trl.KTOTrainer`` (promoted to ``trl.trainer`` in trl 1.x; ``rl.beta``, ``rl.kto_*_weight``);
- ``orpo``: ``trl.experimental.orpo.ORPOTrainer`` (``rl.beta`` is the odds-ratio weight, lambda);
- ``simpo``: ``trl.experimental.cpo.CPOTrainer`` with ``loss_type="simpo"``, ``cpo_alpha=0`` (``rl.beta``,
  ``rl.simpo_gamma``).

Rows come pre-tokenized from ``pref_rows`` (sftkit's renderer, the SFT masks); trl's own tokenization is skipped:
its DPO and KTO trainers tokenize in ``_prepare_dataset`` whatever they are given, so the engines below replace
that method with a pass-through (KTO keeps trl's one later step, the mismatched completions of its KL estimate);
CPO/ORPO call ``tokenize_row`` per row, replaced by one that lays out the rendered ids in trl's columns.

Reference model (dpo, kto; orpo and simpo have none): with an adapter method the reference is the start model
with the adapter switched off, no copy. trl, given a peft model, copies the fresh adapter into a frozen ``ref``
adapter; since a fresh LoRA/DoRA/IA3 adapter is the identity, that copy is deleted and trl then disables the
adapters for the reference. PiSSA moves the principal part of each weight into its adapter, so there the copy is
kept (the base alone is not the start model) and deleted after training. With full or freeze the reference is
a frozen copy of the start model in memory (trl would reload ``config._name_or_path``, which for a start merged
from an adapter run is the wrong model).

The run folder is the one of ``train/sft.py``: lock, ``config.yaml``, ``data_report.json``, ``rejects.jsonl``,
``metrics.jsonl`` (trl's ``rewards/*`` and ``logps/*`` included), checkpoints marked complete, resume, ``final/``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import yaml

from sftkit.config import SFTConfig
from sftkit.config_rl import PREFERENCE_STAGES
from sftkit.errors import SftkitError
from sftkit.methods import METHODS
from sftkit.models import load_model, load_tokenizer
from sftkit.tokenize.render import IGNORE
from sftkit.train import pref_rows
from sftkit.train.callbacks import MarkComplete, MetricsJsonl
from sftkit.train.run_dir import (
    atomic_write_text,
    guarded_run,
    is_main_process,
    lock_run_dir,
    whole_run_train_loss,
)
from sftkit.train.sft import _precision, _prepare_run_dir, _resume_from, save_final

REF_ADAPTER = "ref"  # the adapter copy trl makes as the reference of a peft model


def train(cfg: SFTConfig) -> Path:
    """Run one preference stage (dpo, kto, orpo, simpo); return the run folder.

    Raises:
        SftkitError: bad options or data, the folder is in use by another training, or the disk is full.
    """
    run_dir = Path(cfg.train.output_dir)
    with guarded_run(run_dir):
        trainer, run_dir, tokenizer, has_eval = build(cfg)

        result = trainer.train(resume_from_checkpoint=_resume_from(cfg, run_dir))
        metrics = dict(result.metrics)
        whole = whole_run_train_loss(trainer.state.log_history, trainer.state.global_step)
        if whole is not None:  # the Trainer's own figure covers only the steps since a resume
            metrics["train_loss"] = whole
        if has_eval:  # held-out preference accuracy (eval_rewards/accuracies), reused if just logged
            done = [h for h in trainer.state.log_history
                    if "eval_loss" in h and h.get("step") == trainer.state.global_step]
            metrics.update({k: v for k, v in done[-1].items() if k.startswith("eval_")} if done
                           else trainer.evaluate())
        model = trainer.accelerator.unwrap_model(trainer.model)
        if REF_ADAPTER in (getattr(model, "peft_config", None) or {}):
            model.delete_adapter(REF_ADAPTER)  # the reference is not part of the result
        if is_main_process():
            save_final(model, tokenizer, cfg, run_dir / "final", metrics)
    return run_dir


def build(cfg: SFTConfig):
    """Everything up to the first step: (trainer, run folder, tokenizer, has eval data).

    Takes the run folder's lock (held until ``train`` ends, or the process does).
    """
    _check(cfg)
    run_dir = Path(cfg.train.output_dir)
    main = is_main_process()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)
        _prepare_run_dir(cfg, run_dir)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(), allow_unicode=True, sort_keys=False))
    torch.manual_seed(cfg.train.seed)

    # 1. data: canonical records -> rendered preference rows (the SFT masks of each reply)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    train_rows, eval_rows, report = pref_rows.prepare(cfg, tokenizer, run_dir, write=main)
    if main:
        rej = report["rejected"]
        print(f"data: {len(train_rows)} {cfg.stage} rows, {len(eval_rows)} eval rows; truncated "
              f"{report['render']['train'].get('truncated', 0)}, rejected {rej['reading'] + rej['stage']} "
              f"({rej['reading']} while reading, {rej['stage']} for the stage; details in "
              f"{run_dir / 'data_report.json'})", flush=True)

    # 2. model + method (the registry decides what trains); the reference, where the method needs a copy
    method = METHODS[cfg.method]
    model = load_model(cfg.model, precision=cfg.train.precision, quantize=method.quantize,
                       trust_remote_code=cfg.trust_remote_code)
    model = method.apply(model, cfg)
    ref = None
    if cfg.stage in ("dpo", "kto") and not method.adapter:
        ref = copy.deepcopy(model).eval().requires_grad_(False)

    # 3. trainer: trl's engine for the stage, fed the rendered rows
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # trl's per-row maps over a few rows only clutter the log
    has_eval = bool(eval_rows)
    args = _args(cfg, run_dir, has_eval)
    engine = _engine(cfg.stage)
    kwargs = {"ref_model": ref} if cfg.stage in ("dpo", "kto") else {}
    trainer = engine(model=model, args=args, train_dataset=Dataset.from_list(_strip(train_rows)),
                     eval_dataset=Dataset.from_list(_strip(eval_rows)) if has_eval else None,
                     processing_class=tokenizer,
                     callbacks=[MetricsJsonl(run_dir / "metrics.jsonl"), MarkComplete(cfg.train.save_total_limit)],
                     **kwargs)
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    if REF_ADAPTER in (getattr(peft_model, "peft_config", None) or {}) and cfg.lora.init != "pissa":
        peft_model.delete_adapter(REF_ADAPTER)  # a fresh adapter is the identity: reference = adapters off
    if cfg.eval.every_steps:  # generation metrics logged with the loss
        from sftkit.eval.callback import GenerationEval
        from sftkit.tokenize.render import Renderer

        gen_eval = GenerationEval(cfg, tokenizer, Renderer(tokenizer, cfg.template))
        gen_eval.trainer = trainer
        trainer.add_callback(gen_eval)
    return trainer, run_dir, tokenizer, has_eval


def _check(cfg: SFTConfig) -> None:
    if cfg.stage not in PREFERENCE_STAGES:
        raise SftkitError(f"stage {cfg.stage!r} is not a preference stage ({', '.join(sorted(PREFERENCE_STAGES))})")
    if cfg.train.max_steps == 0 or cfg.train.max_steps < -1:
        raise SftkitError(f"train.max_steps={cfg.train.max_steps}: max_steps must be > 0 (or -1 for epochs)")
    if cfg.data.packing:
        raise SftkitError(f"data.packing: stage {cfg.stage} trains on (prompt, reply) pairs, which are not packed; "
                          "set data.packing: false")
    if cfg.stage == "kto" and cfg.train.batch_size < 2:
        raise SftkitError("train.batch_size: kto estimates its KL term from the other examples of a batch, so it "
                          "needs batch_size >= 2")


def _strip(rows: list[dict]) -> list[dict]:
    """Rows as trl reads them (lineage stays in ``lineage.jsonl``)."""
    return [{k: v for k, v in r.items() if k != "origin"} for r in rows]


def _args(cfg: SFTConfig, run_dir: Path, has_eval: bool):
    """trl's config for the stage: the run's optimisation settings (as ``sft.build`` sets them) + the ``rl:`` ones."""
    t, rl = cfg.train, cfg.rl
    common = dict(
        output_dir=str(run_dir), learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio, num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps, eval_strategy=("steps" if t.eval_steps else "epoch") if has_eval else "no",
        eval_steps=t.eval_steps, save_strategy="steps", save_steps=t.save_steps, save_total_limit=None,
        seed=t.seed, data_seed=t.seed, neftune_noise_alpha=t.neftune_alpha,
        report_to=["tensorboard"] if t.tensorboard else [], dataloader_num_workers=t.num_workers,
        remove_unused_columns=False, use_cpu=not torch.cuda.is_available(), disable_tqdm=not sys.stderr.isatty(),
        save_only_model=False, gradient_checkpointing=t.gradient_checkpointing,  # trl's default is on
        gradient_checkpointing_kwargs={"use_reentrant": False}, max_length=cfg.data.max_length, **_precision(cfg),
    )
    if cfg.stage == "dpo":
        from trl import DPOConfig

        # rl.dpo_sft_weight > 0: trl's own combination of its DPO loss and its "sft" term (RPO)
        losses = dict(loss_type=[rl.dpo_loss, "sft"], loss_weights=[1.0, rl.dpo_sft_weight]) \
            if rl.dpo_sft_weight > 0 else dict(loss_type=[rl.dpo_loss])
        return DPOConfig(**common, beta=rl.beta, label_smoothing=rl.label_smoothing, **losses)
    if cfg.stage == "kto":
        from trl import KTOConfig

        return KTOConfig(**common, beta=rl.beta, desirable_weight=rl.kto_desirable_weight,
                         undesirable_weight=rl.kto_undesirable_weight)
    if cfg.stage == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(**common, beta=rl.beta)
    from trl.experimental.cpo import CPOConfig

    return CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0, beta=rl.beta, simpo_gamma=rl.simpo_gamma)


def _cpo_columns(feature: dict, model=None) -> dict:
    """The columns trl's CPO/ORPO ``tokenize_row`` returns, laid out from a rendered row (prompt masked)."""
    p = feature["prompt_ids"]
    out = {"prompt_input_ids": p, "prompt_attention_mask": [1] * len(p)}
    for name in ("chosen", "rejected"):
        reply = feature[f"{name}_ids"]
        out[f"{name}_input_ids"] = p + reply
        out[f"{name}_attention_mask"] = [1] * (len(p) + len(reply))
        out[f"{name}_labels"] = [IGNORE] * len(p) + reply
    return out


def _kl_completions(batch: dict) -> dict:
    """trl's KTO step after tokenization: the completions rotated within the batch become the KL partners.

    trl rotates by one; here by the smallest shift that pairs no prompt with a reply it has in the batch (its own,
    or the same text given to another prompt; one when no shift does), so the KL term is estimated from
    mismatched pairs, made of the batch's own completions."""
    prompts, replies = [tuple(p) for p in batch["prompt_ids"]], [tuple(c) for c in batch["completion_ids"]]
    n, real = len(replies), set(zip(prompts, replies, strict=True))
    shift = next((s for s in range(1, n) if all((prompts[i], replies[i - s]) not in real for i in range(n))), 1)
    replies = batch["completion_ids"]
    batch["KL_completion_ids"] = replies[-shift:] + replies[:-shift] if n else []
    return batch


def _engine(stage: str):
    """trl's trainer class for the stage, taking sftkit's rendered rows as they are."""
    if stage == "dpo":
        from trl import DPOTrainer

        class DPO(DPOTrainer):
            def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
                return dataset

        return DPO
    if stage == "kto":
        from trl import KTOTrainer

        class KTO(KTOTrainer):
            def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
                if self.calculate_KL:
                    dataset = dataset.map(_kl_completions, batched=True, batch_size=args.per_device_train_batch_size)
                return dataset

        return KTO
    if stage == "orpo":
        from trl.experimental.orpo import ORPOTrainer as base
    else:
        from trl.experimental.cpo import CPOTrainer as base

    class PairTrainer(base):
        def tokenize_row(self, feature, model=None):
            return _cpo_columns(feature, model)

    return PairTrainer
