"""A small real training setup: the tiny Llama from conftest, identity data with the name filled in."""

from __future__ import annotations

import torch

from sftkit.config import load_config
from sftkit.tokenize.packing import PaddedCollator
from tests.conftest import LF


def config(model_dir, out_dir, method="lora", **train):
    raw = {
        "model": str(model_dir), "method": method,
        "data": {"datasets": [{"path": str(LF / "identity.json"),
                               "replace": {"{{name}}": "Aurora", "{{author}}": "Team Dawn"}}],
                 "max_length": 128, "max_samples": 32},
        "train": {"output_dir": str(out_dir), "max_steps": 10, "batch_size": 8, "learning_rate": 1e-2,
                  "lr_scheduler": "constant", "logging_steps": 5, "save_steps": 1000, **train},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "freeze": {"trainable_layers": 1}, "prompt": {"num_virtual_tokens": 4, "encoder_hidden_size": 16},
    }
    return load_config(raw=raw)


def batch_loss(model, rows, pad_id: int) -> float:
    """Mean loss of the model on fixed rows (eval mode, no grad)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        loss = model(**PaddedCollator(pad_id)(rows)).loss.item()
    model.train(was)
    return loss


def value(p) -> torch.Tensor:
    """A parameter's values; 4-bit (QLoRA) weights are compared dequantized, since bitsandbytes may
    re-pack their storage for its CPU kernels without changing a value."""
    if type(p).__name__ == "Params4bit":
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(p.data, p.quant_state).clone()
    return p.detach().clone()


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: value(p) for n, p in model.named_parameters()}
