"""Low-rank and rescaling adapters through peft: lora, dora, pissa initialisation, qlora (4-bit NF4 base +
LoRA), and IA3 (learned rescaling of keys, values and feed-forward activations)."""

from __future__ import annotations

from peft import IA3Config, LoraConfig, get_peft_model, prepare_model_for_kbit_training
from torch import nn

from sftkit.errors import SftkitError
from sftkit.methods import register


def linear_names(model) -> list[str]:
    """The short names of the model's linear layers (what ``lora.targets`` may list), lm_head excluded."""
    from transformers.pytorch_utils import Conv1D

    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                   if isinstance(m, nn.Linear | Conv1D) and name != "lm_head" and not name.endswith(".lm_head")})


def check_targets(model, targets, key: str) -> None:
    """Every target names a module of the model (peft matches a name or a dotted suffix), or a one-line error."""
    if isinstance(targets, str):  # all-linear
        return
    names = [n for n, _ in model.named_modules()]
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        raise SftkitError(f"{key}: {', '.join(map(repr, unknown))} match no module of the model; its linear "
                          f"layers are: {', '.join(linear_names(model))}")


def _lora(model, cfg, **extra):
    lc = cfg.lora
    check_targets(model, lc.targets, "lora.targets")
    init = "pissa" if lc.init == "pissa" else True
    config = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.targets,
                        init_lora_weights=init, task_type="CAUSAL_LM", **extra)
    return get_peft_model(model, config)


LORA = {"adapter": True, "mergeable": True}


@register("lora", "low-rank adapters on the target linear layers", **LORA)
def apply_lora(model, cfg):
    return _lora(model, cfg)


@register("dora", "weight-decomposed low-rank adapters", **LORA)
def apply_dora(model, cfg):
    return _lora(model, cfg, use_dora=True)


@register("pissa", "LoRA initialised from the principal singular vectors of each weight", **LORA)
def apply_pissa(model, cfg):
    return _lora(model, cfg)  # config validation sets lora.init = pissa


@register("qlora", "LoRA on a 4-bit NF4 quantised base (bitsandbytes)", quantize=True, **LORA)
def apply_qlora(model, cfg):
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    return _lora(model, cfg)


@register("ia3", "IA3: learned vectors rescaling keys, values and feed-forward activations", **LORA)
def apply_ia3(model, cfg):
    ic = cfg.ia3
    check_targets(model, ic.targets, "ia3.targets")
    config = IA3Config(task_type="CAUSAL_LM", target_modules=ic.targets, feedforward_modules=ic.feedforward)
    return get_peft_model(model, config)
