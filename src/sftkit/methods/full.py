"""Full fine-tuning and freeze tuning (only the last N layers and named modules train)."""

from __future__ import annotations

import re

from sftkit.errors import SftkitError
from sftkit.methods import register


@register("full", "every parameter trains")
def apply_full(model, cfg):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


@register("freeze", "only the last N decoder layers (and named modules) train")
def apply_freeze(model, cfg):
    n_layers = model.config.num_hidden_layers
    keep = cfg.freeze.trainable_layers
    if keep > n_layers:
        raise SftkitError(f"freeze.trainable_layers={keep} but the model has {n_layers} layers")
    trainable_layers = set(range(n_layers - keep, n_layers))
    layer_re = re.compile(r"\.layers\.(\d+)\.")
    for name, p in model.named_parameters():
        m = layer_re.search(name)
        in_layer = m is not None and int(m.group(1)) in trainable_layers
        named = any(k in name for k in cfg.freeze.trainable_modules)
        p.requires_grad_(in_layer or named)
    if not any(p.requires_grad for p in model.parameters()):
        raise SftkitError("freeze: nothing is trainable; raise freeze.trainable_layers or list freeze.trainable_modules")
    return model
