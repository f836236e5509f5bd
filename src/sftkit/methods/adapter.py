"""Bottleneck adapters (Houlsby / Pfeiffer, as AdapterHub trains them), in plain torch.

After the feed-forward block (``placement: mlp``, Pfeiffer) and also after the attention block
(``placement: both``, Houlsby) of every decoder layer, the block's output ``h`` becomes
``h + up(act(down(h)))``. ``up`` starts at zero, so training starts from exactly the base model. The
adapters are submodules named ``bottleneck`` inside the wrapped blocks, applied by a forward hook, so no
module of the base model is replaced or renamed. (The ``adapters`` package pins transformers 4.x.)

A trained run saves only the adapter weights (``bottleneck.safetensors``) and their settings
(``bottleneck.json``); ``load_adapter_weights(base_model, folder)`` puts them back for inference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from sftkit.errors import SftkitError
from sftkit.methods import SFT_ONLY, register

WEIGHTS, SETTINGS = "bottleneck.safetensors", "bottleneck.json"
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
_BLOCK = r"\.(?:layers|h|blocks)\.\d+\."  # a decoder layer: Llama/Qwen/Mistral (layers), GPT-2 (h)
BLOCKS = {"mlp": re.compile(_BLOCK + r"(?:mlp|feed_forward|ffn)$"),
          "attention": re.compile(_BLOCK + r"(?:self_attn|attn|attention)$")}


class Bottleneck(nn.Module):
    """``h -> h + up(act(down(h)))``, computed in fp32 whatever the block's dtype."""

    def __init__(self, hidden: int, size: int, non_linearity: str):
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)  # AdapterHub's init; up = 0 makes the adapter an identity
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h.float()))).to(h.dtype)


def _after_block(module: nn.Module, args, output):
    """Forward hook: the adapter rewrites the block's output (attention blocks return a tuple)."""
    if isinstance(output, tuple):
        return (module.bottleneck(output[0]), *output[1:])
    return module.bottleneck(output)


def settings_of(cfg) -> dict:
    """The adapter's shape from ``cfg.adapter``: bottleneck width, non-linearity, placement."""
    ac = cfg.adapter
    return {"size": ac.size, "reduction_factor": ac.reduction_factor, "non_linearity": ac.non_linearity,
            "placement": ac.placement}


def inject(model, settings: dict) -> nn.Module:
    """Add a zero-initialised bottleneck after the chosen blocks of every decoder layer."""
    if has_bottleneck(model):
        raise SftkitError("the model already has bottleneck adapters")
    hidden = model.config.hidden_size
    size = settings["size"] or max(1, hidden // settings["reduction_factor"])
    kinds = ["mlp"] if settings["placement"] == "mlp" else ["mlp", "attention"]
    blocks = [m for name, m in model.named_modules() if any(BLOCKS[k].search(name) for k in kinds)]
    if not blocks:
        raise SftkitError(f"adapter: found no decoder layer blocks ({' or '.join(kinds)}) in {type(model).__name__}")
    device = next(model.parameters()).device
    for block in blocks:
        block.bottleneck = Bottleneck(hidden, size, settings["non_linearity"]).to(device)
        block.register_forward_hook(_after_block)
    model._sftkit_bottleneck = {**settings, "size": size}
    return model


def has_bottleneck(model) -> bool:
    return hasattr(model, "_sftkit_bottleneck")


def mark_trainable(model) -> nn.Module:
    """Only the adapter weights train."""
    for name, p in model.named_parameters():
        p.requires_grad_(".bottleneck." in name)
    return model


def adapter_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if ".bottleneck." in n}


def save_adapter_weights(model, out: str | Path) -> None:
    """Write the adapter weights (safetensors) and settings (JSON) to ``out``; the base model is not copied."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({n: t.cpu() for n, t in adapter_state(model).items()}, out / WEIGHTS)
    (out / SETTINGS).write_text(json.dumps(model._sftkit_bottleneck, indent=2))


def is_adapter_folder(path: str | Path) -> bool:
    """A folder written by ``save_adapter_weights``."""
    return (Path(path) / SETTINGS).exists()


def load_adapter_weights(model, path: str | Path) -> nn.Module:
    """Put the adapters saved in ``path`` onto ``model`` (its base): same blocks, same weights, or an error."""
    from safetensors.torch import load_file

    path = Path(path)
    if not is_adapter_folder(path):
        raise SftkitError(f"{path}: no {SETTINGS} (not a bottleneck adapter run)")
    inject(model, json.loads((path / SETTINGS).read_text()))
    saved = load_file(path / WEIGHTS)
    params = dict(model.named_parameters())
    missing = sorted(set(adapter_state(model)) - set(saved))
    extra = sorted(set(saved) - set(params))
    if missing or extra:
        raise SftkitError(f"{path}: adapter weights do not fit this base model (missing {missing[:3]}, "
                          f"unexpected {extra[:3]})")
    with torch.no_grad():
        for name, t in saved.items():
            if params[name].shape != t.shape:
                raise SftkitError(f"{path}: {name} has shape {tuple(t.shape)}, the model {tuple(params[name].shape)}")
            params[name].copy_(t)
    return model


@register("adapter", "bottleneck adapters (Houlsby/Pfeiffer) after each decoder layer's blocks", adapter=True,
          save=save_adapter_weights, stages=SFT_ONLY)
def apply_adapter(model, cfg):
    return mark_trainable(inject(model, settings_of(cfg)))
