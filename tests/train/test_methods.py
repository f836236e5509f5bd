"""Every method trains a few steps: the loss falls, the intended parameters change, frozen ones stay bit-identical."""

from __future__ import annotations

import pytest
import torch

from sftkit.methods import METHODS
from sftkit.train.sft import build
from tests.train.helpers import batch_loss, config, snapshot

EXPECTED_TRAINABLE = {  # a substring every trainable parameter name has
    "full": "", "freeze": "layers.1.", "lora": "lora_", "dora": "lora_", "pissa": "lora_", "qlora": "lora_",
    "prefix": "prompt_encoder", "p_tuning_v2": "prompt_encoder", "prompt": "prompt_encoder", "p_tuning": "prompt_encoder",
}


def test_registry_lists_every_method():
    assert set(METHODS) == set(EXPECTED_TRAINABLE)


@pytest.mark.parametrize("method", sorted(EXPECTED_TRAINABLE))
def test_method_trains_exactly_its_parameters(tiny_model_dir, tmp_path, method):
    lr = 3e-3 if method in ("full", "freeze") else 1e-2
    cfg = config(tiny_model_dir, tmp_path / method, method, learning_rate=lr)
    trainer, _, tok, _ = build(cfg)
    model = trainer.model
    rows = trainer.train_dataset.rows[:8]
    before_loss = batch_loss(model, rows, tok.pad_token_id)
    before = snapshot(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing trainable"
    marker = EXPECTED_TRAINABLE[method]
    assert all(marker in n for n in trainable), sorted(trainable)[:5]
    if method != "full":
        assert len(trainable) < len(before)

    if method == "qlora":
        with model.disable_adapter():
            base_before = batch_loss(model, rows, tok.pad_token_id)

    trainer.train()

    after = snapshot(model)
    changed = {n for n, t in before.items() if not torch.equal(t, after[n])}
    if method == "qlora":
        # bitsandbytes re-packs 4-bit storage for its CPU kernels, so the frozen base is checked by what it
        # computes: with the adapters switched off, the model gives the same loss as before training
        quantized = {n for n, p in model.named_parameters() if type(p).__name__ == "Params4bit"}
        assert quantized and not quantized & trainable
        changed -= quantized
        with model.disable_adapter():
            assert abs(batch_loss(model, rows, tok.pad_token_id) - base_before) < 1e-4  # kernel layout: bf16 vs fp32 math
    # exactly the trainable parameters changed: every frozen one is bit-identical
    assert changed == trainable, sorted(changed ^ trainable)[:5]
    assert batch_loss(model, rows, tok.pad_token_id) < before_loss
