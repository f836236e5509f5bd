"""Review (issue 8): a chain trained with a relative train.output_dir (as every example writes it) must stay
usable from another working directory: `sftkit chat --model /abs/runs/rlhf` and `sftkit eval --model ...` from
anywhere, or after `cd`. Today pipeline.json's `last`/`run` and the next stage's sftkit.json `base_model`
are stored relative to the cwd of the training command, so loading from elsewhere fails."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from sftkit.config import load_config
from sftkit.models import load_model, load_tokenizer, resolve
from sftkit.train import run_stage
from tests.train.helpers import config


def test_chain_with_relative_output_dir_loads_from_another_cwd(tiny_model_dir, tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    raw = config(tiny_model_dir, "runs/chain", max_steps=1).model_dump()
    raw["stages"] = [{"stage": "sft"}, {"stage": "sft", "train": {"max_steps": 1}}]
    (work / "chain.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.chdir(work)
    run_stage(load_config(work / "chain.yaml"))
    root = work / "runs" / "chain"
    info = json.loads((root / "pipeline.json").read_text())

    monkeypatch.chdir(elsewhere)  # the user opens a new shell somewhere else
    last = Path(resolve(str(root)))
    assert last.exists() and (root / "2-sft" / "final").samefile(last), (info, str(last))
    base = json.loads((root / "2-sft" / "final" / "sftkit.json").read_text())["base_model"]
    assert load_tokenizer(str(root)) is not None, base
    assert load_model(str(root)) is not None, base
