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
])
def test_config_errors_say_what_to_change(raw, overrides, message):
    with pytest.raises(SftkitError) as e:
        _load(raw, overrides)
    assert message in str(e.value)


def test_overrides_are_typed():
    cfg = _load(BASE, ["train.learning_rate=1e-3", "data.packing=true", "lora.targets=[q_proj, v_proj]"])
    assert cfg.train.learning_rate == 1e-3 and cfg.data.packing is True and cfg.lora.targets == ["q_proj", "v_proj"]


TRAIN_EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.yaml") if "sftkit train" in p.read_text())


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
