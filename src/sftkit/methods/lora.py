"""LoRA family through peft: lora, dora, pissa initialisation, and qlora (4-bit NF4 base + LoRA)."""

from __future__ import annotations

from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

from sftkit.methods import register


def _lora(model, cfg, **extra):
    lc = cfg.lora
    init = "pissa" if lc.init == "pissa" else True
    config = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.targets,
                        init_lora_weights=init, task_type="CAUSAL_LM", **extra)
    return get_peft_model(model, config)


@register("lora", "low-rank adapters on the target linear layers", adapter=True)
def apply_lora(model, cfg):
    return _lora(model, cfg)


@register("dora", "weight-decomposed low-rank adapters", adapter=True)
def apply_dora(model, cfg):
    return _lora(model, cfg, use_dora=True)


@register("pissa", "LoRA initialised from the principal singular vectors of each weight", adapter=True)
def apply_pissa(model, cfg):
    return _lora(model, cfg)  # config validation sets lora.init = pissa


@register("qlora", "LoRA on a 4-bit NF4 quantised base (bitsandbytes)", quantize=True, adapter=True)
def apply_qlora(model, cfg):
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    return _lora(model, cfg)
