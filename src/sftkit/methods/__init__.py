"""Training methods: one registry, one small module per family.

``METHODS[name].apply(model, cfg)`` returns the model to train with exactly the intended parameters
trainable. Each entry also carries its own constraints, read by config checks, training and export
instead of name lists scattered over those files:

- ``quantize``: the base weights are loaded in 4-bit NF4 first (QLoRA);
- ``adapter``: the result is a small set of weights kept apart from the base model;
- ``mergeable``: export can fold the adapter into the base weights (the LoRA family, IA3);
- ``virtual_tokens``: learned tokens are prepended per sequence, so rows cannot be packed;
- ``stages``: the training stages the method supports (all by default; virtual tokens and bottleneck
  adapters: ``sft`` and ``rft`` only, since preference and RL trainers need a peft model whose adapter
  can be switched off to act as the reference);
- ``save``: how to save the trained result when ``model.save_pretrained`` is not it (bottleneck adapters).

Starting from a run folder (``model: runs/lora``) is handled once, in ``prepare_start``: see its docstring.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from sftkit.config_rl import STAGE_NAMES
from sftkit.errors import SftkitError

SFT_ONLY = frozenset({"sft", "rft"})  # rft fine-tunes on sampled answers: an SFT run on new data


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable  # (model, SFTConfig) -> model with exactly the intended parameters trainable
    doc: str
    quantize: bool = False
    adapter: bool = False
    mergeable: bool = False
    virtual_tokens: bool = False
    stages: frozenset[str] = field(default_factory=lambda: frozenset(STAGE_NAMES))
    save: Callable | None = None  # (model, folder) -> None; None: model.save_pretrained

    @property
    def packable(self) -> bool:
        """Rows may be packed: nothing is prepended per sequence."""
        return not self.virtual_tokens

    def apply(self, model, cfg):
        """The starting model (possibly a trained run, see ``prepare_start``) made ready to train."""
        model, continued = prepare_start(model, cfg, self)
        return model if continued else self.fn(model, cfg)


METHODS: dict[str, Method] = {}


def note(message: str) -> None:
    """Print on the main process only (rank 0 of a multi-process launch, or the only process)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(message, flush=True)


def register(name: str, doc: str, **constraints):
    """Register ``fn(model, cfg) -> model`` under ``name`` with its constraints (fields of ``Method``)."""

    def deco(fn: Callable) -> Callable:
        METHODS[name] = Method(name, fn, doc, **constraints)
        return fn

    return deco


def method_for_model(model) -> Method | None:
    """The method whose adapter a loaded model carries (None for a plain model).

    Export asks ``method_for_model(model).mergeable`` instead of testing peft types itself."""
    from sftkit.methods.adapter import has_bottleneck

    if has_bottleneck(model):
        return METHODS["adapter"]
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    config = next(iter(configs.values()))
    kind = config.peft_type.value
    if kind == "LORA":
        return METHODS["dora" if getattr(config, "use_dora", False) else "lora"]
    by_type = {"IA3": "ia3", "PROMPT_TUNING": "prompt", "P_TUNING": "p_tuning",
               "PREFIX_TUNING": "prefix" if getattr(config, "prefix_projection", False) else "p_tuning_v2"}
    return METHODS[by_type[kind]] if kind in by_type else None


def _same_adapter(start: Method, method: Method) -> bool:
    """A run trained with ``start`` can go on training as ``method`` (same weights, same shapes)."""
    lora_family = {"lora", "pissa", "qlora"}  # pissa only changes the initialisation; qlora only the base precision
    return start.name == method.name or {start.name, method.name} <= lora_family


def prepare_start(model, cfg, method: Method) -> tuple[object, bool]:
    """Make a trained run usable as the starting model; return (model, whether training continues its adapter).

    - plain model: unchanged;
    - a non-adapter method (full, freeze) from an adapter run: the adapter is merged into the base first
      (peft ``merge_and_unload``), so every parameter is a real base parameter and the run saves a whole model;
      adapters that cannot be merged (virtual tokens, bottleneck adapters) are an error;
    - the same adapter method (lora/pissa/qlora count as one): training continues that adapter, with its
      saved rank and targets (``lora.*`` settings do not apply), from its trained values;
    - another adapter method: an error; ``sftkit export`` the run first and start from the merged folder;
    - a preference or RL stage (not ``sft``) with an adapter method from a mergeable adapter run: the adapter is
      merged and a new one trains on top, so the reference model (adapters switched off) is the start model.
    """
    start = method_for_model(model)
    if start is None:
        return model, False
    where = f"model {cfg.model!r} is a {start.name} run"
    if cfg.stage != "sft" and method.adapter and start.mergeable:  # the reference is the start model itself
        note(f"{where}: its adapter is merged into the base and stage {cfg.stage} trains a new {method.name} "
             "adapter on top (the reference model is the merged start, with the new adapter switched off)")
        return model.merge_and_unload(), False
    if not method.adapter:
        if not start.mergeable:
            raise SftkitError(f"{where}, whose weights cannot be merged into the base; method {method.name!r} "
                              "needs a whole model: start from that run's base model")
        return model.merge_and_unload(), False
    if not _same_adapter(start, method):
        raise SftkitError(f"{where}; method {method.name!r} cannot continue it: start from its base model, or "
                          f"`sftkit export` the run and start {method.name} from the merged folder")
    note(f"{where}: training continues its adapter (its saved settings are kept)")
    return _continue(model, start, method, cfg), True


def _continue(model, start: Method, method: Method, cfg):
    """The loaded adapter's weights trainable, everything else frozen."""
    if start.name == "adapter":
        from sftkit.methods.adapter import mark_trainable

        return mark_trainable(model)
    if method.quantize:
        from peft import prepare_model_for_kbit_training

        prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    for name, p in model.named_parameters():
        p.requires_grad_(any(k in name for k in ("lora_", "ia3_", "prompt_encoder")))
    for config in model.peft_config.values():
        config.inference_mode = False
    return model


from sftkit.methods import adapter, full, lora, prompt  # noqa: E402,F401  (importing registers the methods)
