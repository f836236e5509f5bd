"""Every method trains a few steps: the loss falls, the intended parameters change, frozen ones stay bit-identical.

Also: the registry's constraints match what the built model really is, bad targets and module names are one-line
errors, and a trained run folder can be the starting model (merged for full/freeze, continued for its adapter).
"""

from __future__ import annotations

import json

import pytest
import torch

from sftkit.errors import SftkitError
from sftkit.methods import METHODS, method_for_model
from sftkit.methods.adapter import load_adapter_weights, save_adapter_weights
from sftkit.models import load_model
from sftkit.train.sft import build
from tests.train.helpers import batch_loss, config, snapshot

EXPECTED_TRAINABLE = {  # a substring every trainable parameter name has
    "full": "", "freeze": "layers.1.", "lora": "lora_", "dora": "lora_", "pissa": "lora_", "qlora": "lora_",
    "ia3": "ia3_", "adapter": ".bottleneck.",
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
    if method == "full":  # every parameter trains: none is left frozen
        assert trainable == set(before) and all(p.requires_grad for p in model.parameters())
    else:
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


def _ids(tokenizer) -> torch.Tensor:
    return torch.tensor([tokenizer.encode("Hello, who are you? 你好，你是谁？")])


def _logits(model, ids) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def _perturb(model, marker: str) -> None:
    """Give freshly initialised adapter weights (zero in one factor) values that change the output."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if marker in n:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


ADAPTED = {"lora": "lora_", "dora": "lora_", "pissa": "lora_", "ia3": "ia3_", "adapter": ".bottleneck.",
           "prefix": "prompt_encoder", "p_tuning_v2": "prompt_encoder", "prompt": "prompt_encoder",
           "p_tuning": "prompt_encoder"}


@pytest.mark.parametrize("method", sorted(ADAPTED))
def test_registry_constraints_match_the_built_model(tiny_model_dir, tokenizer, tmp_path, method):
    """virtual_tokens/packable = peft builds a prompt-learning model; mergeable = folding the adapter into the
    base weights gives the same logits; method_for_model finds the method back from the model alone."""
    entry = METHODS[method]
    cfg = config(tiny_model_dir, tmp_path, method)
    model = entry.apply(load_model(str(tiny_model_dir), precision="fp32"), cfg)
    _perturb(model, ADAPTED[method])
    peft_config = next(iter(getattr(model, "peft_config", {"": None}).values()))
    assert entry.adapter
    assert entry.virtual_tokens == bool(peft_config and peft_config.is_prompt_learning) == (not entry.packable)
    found = method_for_model(model)
    assert (found.mergeable, found.virtual_tokens, found.adapter) == (entry.mergeable, entry.virtual_tokens, True)
    ids = _ids(tokenizer)
    if entry.mergeable:
        adapted = _logits(model, ids)
        merged = model.merge_and_unload()
        assert method_for_model(merged) is None
        torch.testing.assert_close(_logits(merged, ids), adapted, atol=1e-4, rtol=1e-4)
    else:
        assert not hasattr(model, "merge_and_unload")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_packing_is_refused_exactly_for_methods_that_are_not_packable(method):
    raw = {"method": method, "data": {"datasets": [{"path": "x.jsonl"}], "packing": True}}
    from sftkit.config import load_config

    if METHODS[method].packable:
        assert load_config(raw=raw).data.packing
    else:
        with pytest.raises(SftkitError, match=f"packing does not work with method '{method}'"):
            load_config(raw=raw)


@pytest.mark.parametrize("method,key", [("lora", "lora.targets"), ("ia3", "ia3.targets")])
def test_target_names_that_match_nothing_are_one_line_errors(tiny_model_dir, tmp_path, method, key):
    cfg = config(tiny_model_dir, tmp_path, method)
    section = cfg.lora if method == "lora" else cfg.ia3
    section.targets = ["q_proj", "qq_proj", "attn"]
    if method == "ia3":
        cfg.ia3.feedforward = []
    with pytest.raises(SftkitError) as e:
        METHODS[method].apply(load_model(str(tiny_model_dir), precision="fp32"), cfg)
    msg = str(e.value)
    assert msg.startswith(f"{key}: 'qq_proj', 'attn' match no module") and "\n" not in msg
    assert "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in msg  # the linear layers there are


@pytest.fixture(scope="module")
def tied_model_dir(tmp_path_factory, tokenizer):
    """A tiny Llama whose lm_head is its input embedding (tie_word_embeddings), like the shipped base model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    path = tmp_path_factory.mktemp("tied")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_freeze_lm_head_of_tied_embeddings_trains_the_shared_tensor(tied_model_dir, tmp_path, capsys):
    cfg = config(tied_model_dir, tmp_path, "freeze", learning_rate=1e-2, max_steps=2)
    cfg.freeze.trainable_layers = 0
    cfg.freeze.trainable_modules = ["lm_head"]
    trainer, _, _, _ = build(cfg)
    model = trainer.model
    assert model.lm_head.weight is model.model.embed_tokens.weight  # one tensor, two names
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"model.embed_tokens.weight"}
    assert "lm_head.weight is tied to model.embed_tokens.weight" in capsys.readouterr().out
    before = model.lm_head.weight.detach().clone()
    trainer.train()
    assert not torch.equal(model.lm_head.weight, before)


def test_freeze_module_names_that_match_nothing_are_errors(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, tmp_path, "freeze")
    cfg.freeze.trainable_modules = ["lm_head", "lm_haed"]
    with pytest.raises(SftkitError) as e:
        METHODS["freeze"].apply(load_model(str(tiny_model_dir), precision="fp32"), cfg)
    assert "freeze.trainable_modules: 'lm_haed' match no parameter name" in str(e.value)
    assert "model.layers.N.mlp.down_proj.weight" in str(e.value)


def test_bottleneck_adapter_starts_as_the_base_and_saves_only_its_weights(tiny_model_dir, tokenizer, tmp_path):
    cfg = config(tiny_model_dir, tmp_path, "adapter")
    cfg.adapter.placement, cfg.adapter.size = "both", 8
    ids = _ids(tokenizer)
    base = load_model(str(tiny_model_dir), precision="fp32")
    reference = _logits(base, ids)
    model = METHODS["adapter"].apply(base, cfg)
    blocks = sorted(n for n, _ in model.named_modules() if n.endswith(".bottleneck"))
    layers = model.config.num_hidden_layers
    assert blocks == sorted([f"model.layers.{i}.mlp.bottleneck" for i in range(layers)]
                            + [f"model.layers.{i}.self_attn.bottleneck" for i in range(layers)])
    assert model.model.layers[0].mlp.bottleneck.down.out_features == 8
    assert torch.equal(_logits(model, ids), reference)  # the up-projection starts at zero

    _perturb(model, ".bottleneck.")
    adapted = _logits(model, ids)
    assert not torch.allclose(adapted, reference)
    save_adapter_weights(model, tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["bottleneck.json", "bottleneck.safetensors"]
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "saved" / "bottleneck.safetensors")
    assert len(saved) == 4 * len(blocks) and all(".bottleneck." in k for k in saved)  # no base weight copied

    fresh = load_adapter_weights(load_model(str(tiny_model_dir), precision="fp32"), tmp_path / "saved")
    assert torch.equal(_logits(fresh, ids), adapted)
    other = load_model(str(tiny_model_dir), precision="fp32")
    other.model.layers = other.model.layers[:1]
    with pytest.raises(SftkitError, match="do not fit this base model"):
        load_adapter_weights(other, tmp_path / "saved")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir, tokenizer):
    """A LoRA run folder (final/: adapter, tokenizer, sftkit.json) with a non-trivial adapter; and its logits."""
    from peft import LoraConfig, get_peft_model

    run = tmp_path_factory.mktemp("lora_run")
    model = get_peft_model(load_model(str(tiny_model_dir), precision="fp32"),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    _perturb(model, "lora_B")
    model.save_pretrained(run / "final")
    tokenizer.save_pretrained(run / "final")
    info = {"base_model": str(tiny_model_dir), "method": "lora", "adapter": True}
    (run / "final" / "sftkit.json").write_text(json.dumps(info))
    return run, _logits(model, _ids(tokenizer))


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_full_or_freeze_from_a_lora_run_trains_the_merged_base(tiny_model_dir, tokenizer, lora_run, tmp_path, method):
    run, reference = lora_run
    cfg = config(run, tmp_path / method, method, learning_rate=3e-3, max_steps=3)
    trainer, _, _, _ = build(cfg)
    model = trainer.model
    assert method_for_model(model) is None  # a plain model: the adapter is folded into the base weights
    base_names = {n for n, _ in load_model(str(tiny_model_dir), precision="fp32").named_parameters()}
    assert {n for n, _ in model.named_parameters()} == base_names
    torch.testing.assert_close(_logits(model, _ids(tokenizer)), reference, atol=1e-4, rtol=1e-4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    assert {n for n in before if not torch.equal(before[n], after[n])} == trainable
    assert trainable == (base_names if method == "full" else {n for n in base_names if "layers.1." in n})


def test_lora_from_a_lora_run_continues_its_adapter(tokenizer, lora_run, tmp_path, capsys):
    run, reference = lora_run
    cfg = config(run, tmp_path / "more", "lora", max_steps=3)  # lora.r=4 in the config: the run's r=2 is kept
    trainer, _, _, _ = build(cfg)
    model = trainer.model
    assert "training continues its adapter" in capsys.readouterr().out
    torch.testing.assert_close(_logits(model, _ids(tokenizer)), reference)  # starts from the trained adapter
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 2 * 2 * 2 and all("lora_" in n for n in trainable)  # q,v x 2 layers x A,B
    assert all(p.shape[0] == 2 for n, p in model.named_parameters() if "lora_A" in n)
    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    assert {n for n in before if not torch.equal(before[n], after[n])} == trainable


def test_another_adapter_method_from_a_lora_run_says_what_to_do(lora_run, tmp_path):
    run, _ = lora_run
    cfg = config(run, tmp_path / "ia3", "ia3")
    with pytest.raises(SftkitError, match="cannot continue it: start from its base model, or `sftkit export`"):
        METHODS["ia3"].apply(load_model(str(run), precision="fp32"), cfg)


def test_full_from_a_virtual_token_run_is_refused(tmp_path, tiny_model_dir, tokenizer):
    from peft import PrefixTuningConfig, get_peft_model

    run = tmp_path / "prefix_run"
    model = get_peft_model(load_model(str(tiny_model_dir), precision="fp32"),
                           PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2, prefix_projection=False))
    model.save_pretrained(run / "final")
    (run / "final" / "sftkit.json").write_text(json.dumps({"base_model": str(tiny_model_dir), "method": "p_tuning_v2"}))
    cfg = config(run, tmp_path / "full", "full")
    with pytest.raises(SftkitError, match="is a p_tuning_v2 run, whose weights cannot be merged into the base"):
        METHODS["full"].apply(load_model(str(run), precision="fp32"), cfg)
