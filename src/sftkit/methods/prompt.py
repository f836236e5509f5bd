"""Virtual-token methods through peft: prefix tuning, prompt tuning, p-tuning, p-tuning v2."""

from __future__ import annotations

from peft import (
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)

from sftkit.methods import SFT_ONLY, register

VIRTUAL = {"adapter": True, "virtual_tokens": True, "stages": SFT_ONLY}  # prepended per sequence: no packing, nothing to merge


@register("prefix", "learned key/value prefixes at every layer, re-parameterised by an MLP", **VIRTUAL)
def apply_prefix(model, cfg):
    pc = cfg.prompt
    return get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=pc.num_virtual_tokens,
                                                    prefix_projection=pc.prefix_projection,
                                                    encoder_hidden_size=pc.encoder_hidden_size))


@register("p_tuning_v2", "deep prompts: learned key/value prefixes at every layer, no MLP", **VIRTUAL)
def apply_p_tuning_v2(model, cfg):
    return get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.prompt.num_virtual_tokens,
                                                    prefix_projection=False))


@register("prompt", "learned soft-prompt embeddings before the input", **VIRTUAL)
def apply_prompt(model, cfg):
    return get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.prompt.num_virtual_tokens))


@register("p_tuning", "soft prompt produced by a prompt encoder (MLP)", **VIRTUAL)
def apply_p_tuning(model, cfg):
    pc = cfg.prompt
    return get_peft_model(model, PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=pc.num_virtual_tokens,
                                                     encoder_hidden_size=pc.encoder_hidden_size))
