"""Review (issue 8): "a preference record without a rejected reply -> a clear error naming the record or key".
Today such a record is rejected by the loader as a plain conversation: rejects.jsonl says field 'messages',
"needs a non-blank user turn followed by a non-blank assistant turn" (the key `rejected` is never named),
and the one printed data line says "rejected 0" although a record was dropped."""

from __future__ import annotations

import copy
import json

from tests.conftest import write_jsonl
from tests.rl.test_preference import pairs, pref_config


def _data(tmp_path):
    bad = copy.deepcopy(pairs(1)[0])
    del bad["rejected"]
    return write_jsonl(tmp_path / "p.jsonl", [bad, *pairs(8)])


def test_pair_without_rejected_names_the_rejected_key(tmp_path):
    from sftkit.models import load_tokenizer
    from sftkit.train.pref_rows import prepare

    cfg = pref_config(tmp_path, "dpo", data={"datasets": [{"path": str(_data(tmp_path))}], "val_size": 0})
    (tmp_path / "run").mkdir()
    prepare(cfg, load_tokenizer("sftkit-tiny"), tmp_path / "run")
    (rej,) = [json.loads(x) for x in (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()]
    assert rej["line"] == 1
    assert rej["field"] == "rejected" or "rejected" in rej["reason"], rej


def test_printed_data_line_counts_records_the_loader_rejected(tmp_path, capsys):
    from sftkit.train.preference import train

    cfg = pref_config(tmp_path, "dpo", steps=1, data={"datasets": [{"path": str(_data(tmp_path))}], "val_size": 0})
    train(cfg)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("data:"))
    assert "rejected 0" not in line, line


def test_kto_label_that_is_not_a_bool_is_named_with_its_value(tmp_path):
    """A label "false" / "yes" / 1 is moved to meta.label by the loader without a warning, and stage kto then
    says "this conversation has no `label`": the user's label is there, only its type is wrong."""
    from sftkit.models import load_tokenizer
    from sftkit.train.pref_rows import prepare

    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    data = write_jsonl(tmp_path / "k.jsonl", [{"messages": conv, "label": "false"},
                                              {"messages": conv, "label": True}, {"messages": conv, "label": False}])
    cfg = pref_config(tmp_path, "kto", data={"datasets": [{"path": str(data)}], "val_size": 0})
    (tmp_path / "run").mkdir()
    prepare(cfg, load_tokenizer("sftkit-tiny"), tmp_path / "run")
    (rej,) = [json.loads(x) for x in (tmp_path / "run" / "rejects.jsonl").read_text().splitlines()]
    assert "no `label`" not in rej["reason"] and "false" in rej["reason"], rej


def test_grpo_printed_data_line_counts_records_the_loader_rejected(tmp_path, capsys):
    from sftkit.train import grpo
    from sftkit.train.run_dir import release_run_dir
    from tests.rl.test_grpo import config

    data = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "What is 2 plus 3?", "meta": {"final_answer": "5"}},
                                               {"prompt": ["not", "a", "prompt"]},
                                               {"prompt": "What is 1 plus 1?", "meta": {"final_answer": "2"}}])
    _, run_dir, _ = grpo.build(config(data, tmp_path / "run"))
    release_run_dir(run_dir)
    out = capsys.readouterr().out
    lines = (run_dir / "rejects.jsonl").read_text().splitlines()
    assert len(lines) == 1 and f"1 records rejected while reading; all {len(lines)} in" in out, out
