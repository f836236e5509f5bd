"""Full fine-tuning and freeze tuning (only the last N layers and named modules train)."""

from __future__ import annotations

import re

from sftkit.errors import SftkitError
from sftkit.methods import note, register


@register("full", "every parameter trains")
def apply_full(model, cfg):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _aliases(model) -> dict[int, list[str]]:
    """Every name of every parameter: a tied tensor (lm_head.weight is embed_tokens.weight) has several,
    while ``named_parameters()`` yields it once, under its first name only."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return names


@register("freeze", "only the last N decoder layers (and named modules) train")
def apply_freeze(model, cfg):
    n_layers = model.config.num_hidden_layers
    keep = cfg.freeze.trainable_layers
    if keep > n_layers:
        raise SftkitError(f"freeze.trainable_layers={keep} but the model has {n_layers} layers")
    trainable_layers = set(range(n_layers - keep, n_layers))
    layer_re = re.compile(r"\.layers\.(\d+)\.")
    wanted = cfg.freeze.trainable_modules
    aliases = _aliases(model)
    used: set[str] = set()
    for name, p in model.named_parameters():
        m = layer_re.search(name)
        in_layer = m is not None and int(m.group(1)) in trainable_layers
        hits = {k for k in wanted for alias in aliases[id(p)] if k in alias}
        used |= hits
        p.requires_grad_(in_layer or bool(hits))
        shared = [a for a in aliases[id(p)][1:] if any(k in a for k in hits) and not any(k in name for k in hits)]
        if shared:
            note(f"freeze: {', '.join(shared)} is tied to {name} (one shared tensor); training it trains both")
    unknown = [k for k in wanted if k not in used]
    if unknown:
        shapes = sorted({re.sub(r"\.\d+\.", ".N.", a) for names in aliases.values() for a in names})
        raise SftkitError(f"freeze.trainable_modules: {', '.join(map(repr, unknown))} match no parameter name; "
                          f"the model has: {', '.join(shapes[:40])}")
    if not any(p.requires_grad for p in model.parameters()):
        raise SftkitError("freeze: nothing is trainable; raise freeze.trainable_layers or list freeze.trainable_modules")
    return model
