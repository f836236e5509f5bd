"""Training methods: one registry, one small module per family.

``METHODS[name].apply(model, cfg)`` returns the model to train with exactly the intended parameters
trainable; ``quantize`` says the base weights must be loaded in 4-bit (QLoRA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    apply: Callable  # (model, SFTConfig) -> model
    doc: str
    quantize: bool = False  # load the base model in 4-bit NF4 first
    adapter: bool = False  # the result is a peft adapter (merged on export)


METHODS: dict[str, Method] = {}


def register(name: str, doc: str, quantize: bool = False, adapter: bool = False):
    """Register ``apply(model, cfg) -> model`` under ``name``."""

    def deco(fn: Callable) -> Callable:
        METHODS[name] = Method(name, fn, doc, quantize, adapter)
        return fn

    return deco


from sftkit.methods import full, lora, prompt  # noqa: E402,F401  (importing registers the methods)
