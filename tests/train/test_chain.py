"""Stages chained in one run folder: each starts from the previous stage's model; a finished stage is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftkit.config import load_config
from sftkit.errors import SftkitError
from sftkit.models import load_model, resolve
from sftkit.train import run_stage
from tests.train.helpers import config, snapshot


def _chain(model_dir, out, stages, tmp_path) -> object:
    raw = config(model_dir, out).model_dump()
    raw["stages"] = stages
    path = tmp_path / "chain.yaml"
    import yaml

    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(path)


def test_stages_expand_with_overrides_folders_and_start_models(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    cfg = _chain(tiny_model_dir, out, [{"stage": "sft", "train": {"max_steps": 3}},
                                       {"stage": "sft", "method": "full", "train": {"learning_rate": 1e-4}}], tmp_path)
    first, second = cfg._stage_configs
    assert first.train.output_dir == str(out / "1-sft") and second.train.output_dir == str(out / "2-sft")
    assert first.model == str(tiny_model_dir) and second.model == first.train.output_dir
    assert (first.train.max_steps, first.train.learning_rate) == (3, 1e-2)  # merged key by key
    assert (second.method, second.train.learning_rate, second.train.max_steps) == ("full", 1e-4, 10)
    assert second.data.datasets == first.data.datasets


def test_a_bad_later_stage_fails_before_anything_trains(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SftkitError, match=r"stages\[1\], stage dpo.*method 'prefix' does not support stage 'dpo'"):
        _chain(tiny_model_dir, out, [{"stage": "sft"}, {"stage": "dpo", "method": "prefix"}], tmp_path)
    assert not out.exists()


def test_chain_trains_each_stage_from_the_last_and_resolves_to_the_last(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = _chain(tiny_model_dir, out, [{"stage": "sft", "train": {"max_steps": 4}},
                                       {"stage": "sft", "method": "full", "train": {"max_steps": 3,
                                                                                    "learning_rate": 1e-3}}], tmp_path)
    assert run_stage(cfg) == out
    info = json.loads((out / "pipeline.json").read_text())
    assert [s["stage"] for s in info["stages"]] == ["sft", "sft"] and info["last"] == "2-sft"
    assert resolve(str(out)) == str(out / "2-sft" / "final")
    first = json.loads((out / "1-sft" / "final" / "sftkit.json").read_text())
    second = json.loads((out / "2-sft" / "final" / "sftkit.json").read_text())
    assert first["adapter"] and not second["adapter"] and second["base_model"] == str(out / "1-sft")
    # stage 2 started from stage 1's model: the full run saved the LoRA-merged weights, then trained them further
    merged = snapshot(load_model(str(out / "1-sft")).merge_and_unload())
    base = snapshot(load_model(str(tiny_model_dir)))
    final = snapshot(load_model(str(out)))
    moved = [n for n in base if not (merged[n] == base[n]).all()]
    assert moved  # the LoRA stage changed some weights
    assert all(not (final[n] == base[n]).all() for n in moved[:3])
    # a second start keeps both finished stages and trains nothing
    capsys.readouterr()
    run_stage(cfg)
    said = capsys.readouterr().out
    assert said.count("already trained") == 2 and "data:" not in said


def test_rl_stage_after_an_adapter_run_merges_it_and_trains_a_new_adapter(tiny_model_dir, tmp_path):
    """The reference of a preference/RL stage is its start model: the SFT adapter is merged, a new one trains."""
    from sftkit.methods import METHODS

    sft = config(tiny_model_dir, tmp_path / "sft", max_steps=2)
    run_stage(sft)
    cfg = config(tmp_path / "sft", tmp_path / "dpo").model_copy(update={"stage": "dpo"})
    start = load_model(cfg.model)
    merged = snapshot(load_model(cfg.model).merge_and_unload())
    model = METHODS["lora"].apply(start, cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with model.disable_adapter():  # the reference: the merged SFT model itself
        ref = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in
               model.named_parameters() if "lora_" not in n}
    assert all((ref[n] == merged[n]).all() for n in merged)
    assert Path(cfg.model).is_dir()
