"""Config: typed, validated at load, misspellings named with a suggestion, cross-field mistakes explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from sftkit.config import load_config
from sftkit.errors import SftkitError

REPO = Path(__file__).resolve().parents[2]
BASE = {"data": {"datasets": [{"path": "x.jsonl"}]}}


def _load(raw, overrides=None):
    return load_config(raw=raw, overrides=overrides)


@pytest.mark.parametrize("raw,overrides,message", [
    ({**BASE, "methd": "lora"}, None, "unknown key 'methd' (did you mean 'method'?)"),
    (BASE, ["train.learning_rte=1e-3"], "unknown key 'train.learning_rte' (did you mean 'learning_rate'?)"),
    (BASE, ["data.pakcing=true"], "did you mean 'packing'?"),
    (BASE, ["method=lorra"], "unknown method 'lorra'"),
    (BASE, ["data.val_size=0.1", "data.eval_file=e.jsonl"], "set data.eval_file or data.val_size, not both"),
    (BASE, ["train.eval_steps=10"], "needs evaluation data"),
    (BASE, ["method=prefix", "data.packing=true"], "packing does not work with method 'prefix'"),
    (BASE, ["train.learning_rate=-1"], "train.learning_rate"),
    ({"data": {"datasets": [{"dataset": "identity"}]}}, None, "needs `registry`"),
    ({"method": "lora"}, None, "missing required key 'data'"),
    ({**BASE, "max_samples": 3}, None, "key 'max_samples' exists in several sections; put it under data or eval"),
    (BASE, ["train.max_steps=0"], "max_steps must be > 0, or -1 to use epochs"),
    (BASE, ["train.max_steps=-5"], "max_steps must be > 0, or -1 to use epochs"),
    (BASE, ["method=p_tuning", "data.packing=true"], "packing does not work with method 'p_tuning'"),
    (BASE, ["stage=ppo"], "trl 1.x no longer ships a PPO trainer"),
    (BASE, ["eval.samples=4"], "eval.temperature > 0"),
    (BASE, ["stage=grpo", "rl.rewards=[]"], "needs at least one reward"),
    (BASE, ["stages=[{train: {}}]"], "stages[0]: each entry is a mapping with at least `stage:`"),
    (BASE, ["stages=[{stage: sft}, {stage: dpo, method: prefix}]"], "stages[1], stage dpo"),
    (BASE, ["rl.rewards=[{name: answer_match}, {name: answer_match}]"], "listed twice"),
    (BASE, ["stage=grpo", "rl.rewards=[{name: answer_mach}]"], "rl.rewards[0].name: unknown reward 'answer_mach' "
     "(did you mean 'answer_match'?)"),
    (BASE, ["stage=rft", "rl.rewards=[{name: 'no_such_pkg.mod:fn'}]"], "module 'no_such_pkg.mod' does not import"),
    (BASE, ["stages=[{stage: sft}, {stage: grpo, rl: {rewards: [{name: format, options: {stlye: gsm8k}}]}}]"],
     "has no option 'stlye' (did you mean 'style'?)"),
    (BASE, ["method=ia3", "ia3.feedforward=[up_proj]"], "ia3.feedforward must be a subset of ia3.targets"),
    (BASE, ["adapter.placement=everywhere"], "adapter.placement"),
])
def test_config_errors_say_what_to_change(raw, overrides, message):
    with pytest.raises(SftkitError) as e:
        _load(raw, overrides)
    assert message in str(e.value)


def test_overrides_are_typed():
    cfg = _load(BASE, ["train.learning_rate=1e-3", "data.packing=true", "lora.targets=[q_proj, v_proj]"])
    assert cfg.train.learning_rate == 1e-3 and cfg.data.packing is True and cfg.lora.targets == ["q_proj", "v_proj"]


TRAIN_EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.yaml")  # one per method (stage examples: tests/rl)
                        if "sftkit train" in p.read_text() and "\nstage" not in p.read_text())


@pytest.mark.parametrize("path", TRAIN_EXAMPLES, ids=lambda p: p.stem)
def test_every_example_config_loads(path):
    cfg = load_config(path)
    assert cfg.method == path.stem
    assert all(Path(ds.path).exists() for ds in cfg.data.datasets)


def test_one_example_per_method():
    from sftkit.methods import METHODS

    assert {p.stem for p in TRAIN_EXAMPLES} == set(METHODS)


def test_flat_keys_move_into_their_section_and_rank_alias():
    cfg = _load({"datasets": [{"path": "x.jsonl"}], "resume": "auto", "packing": True, "learning_rate": 1e-3,
                 "lora": {"rank": 8}})
    assert cfg.train.resume == "auto" and cfg.data.packing and cfg.train.learning_rate == 1e-3 and cfg.lora.r == 8
    again = _load(cfg.model_dump())  # the resolved config saved in a run folder loads back
    assert again == cfg


@pytest.mark.parametrize("value", [
    "!!python/object:os.system",  # a python tag: refused, never constructed
    "!!python/object/apply:os.system [echo pwned]",
    "!foo bar",  # an unknown local tag
    "[1, 2",  # malformed flow sequence
    "{a: 1",  # malformed flow mapping
    "'unterminated",
])
def test_override_values_with_yaml_tags_or_errors_are_one_line_errors(value):
    with pytest.raises(SftkitError) as e:
        _load(BASE, [f"train.learning_rate={value}"])
    msg = str(e.value)
    assert msg.startswith("override ") and "train.learning_rate=" in msg and "not plain YAML" in msg
    assert "\n" not in msg


def test_a_broken_config_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: lora\ndata: [oops\n")
    with pytest.raises(SftkitError) as e:
        load_config(bad)
    assert "not valid YAML" in str(e.value) and "line" in str(e.value) and "\n" not in str(e.value)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SftkitError, match="a config is a YAML mapping"):
        load_config(bad)


def test_stages_and_methods_agree():
    """Every stage the config accepts has a recipe with a train function, and every method names known stages."""
    import importlib
    import typing

    from sftkit.config import SFTConfig
    from sftkit.methods import METHODS
    from sftkit.train import STAGES

    literal = set(typing.get_args(SFTConfig.model_fields["stage"].annotation))
    assert literal - {"ppo"} == set(STAGES)  # ppo is refused with a reason (trl ships no PPO trainer)
    assert {"sft", "dpo", "kto", "orpo", "simpo", "grpo", "rloo", "rft"} <= set(STAGES)
    assert _load(BASE).stage == "sft"
    for stage, module in STAGES.items():
        assert callable(importlib.import_module(module).train), stage
    for m in METHODS.values():
        assert m.stages - {"ppo"} <= set(STAGES), m.name
    for name in ("lora", "qlora", "full", "freeze"):  # the methods every stage supports
        assert set(STAGES) <= METHODS[name].stages, name
    described = SFTConfig.model_fields["method"].description
    assert all(name in described for name in METHODS)


def test_every_field_of_the_owned_sections_is_documented():
    from sftkit.config import (
        AdapterConfig,
        FreezeConfig,
        IA3Config,
        LoraConfig,
        PromptConfig,
        SFTConfig,
        TrainArgs,
    )

    for model in (SFTConfig, LoraConfig, IA3Config, AdapterConfig, FreezeConfig, PromptConfig, TrainArgs):
        undocumented = [n for n, f in model.model_fields.items() if not f.description]
        assert not undocumented, (model.__name__, undocumented)


def test_help_config_lists_fields_with_type_default_and_description(capsys):
    from sftkit.cli import main

    assert main(["train", "--help-config"]) == 0
    out = capsys.readouterr().out
    assert "train.max_steps: int = -1\n      optimizer steps to run; -1: use epochs" in out
    assert "lora.targets: list[str] | all-linear = all-linear" in out
    assert "adapter.placement: mlp|both = mlp" in out
    assert "stage: sft|dpo|kto|orpo|simpo|grpo|rloo|ppo|rft = sft" in out and "rl.rewards[].name: str" in out
    assert "data.datasets: list[" in out and "= required" in out
