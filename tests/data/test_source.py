"""The one data source description and loader: train, eval, mix and generate read the same records the same way."""

from __future__ import annotations

import json
import random

import pytest
from pydantic import ValidationError

from sftkit.config import load_config
from sftkit.data.source import DataSource, load, weighted, weighted_counts
from sftkit.errors import SftkitError
from tests.conftest import LF, write_jsonl


def _alpaca(n, tag):
    return [{"instruction": f"{tag} q{i}", "output": f"{tag} a{i}"} for i in range(n)]


def test_source_needs_exactly_one_origin_and_a_valid_split():
    with pytest.raises(ValidationError, match="either `path` or `registry`"):
        DataSource()
    with pytest.raises(ValidationError, match="needs `registry`"):
        DataSource(dataset="x")
    with pytest.raises(ValidationError, match="split"):
        DataSource(path="a.jsonl", split="test[:3]")
    with pytest.raises(ValidationError, match="speaker_map roles"):
        DataSource(path="a.jsonl", speaker_map={"A": "narrator"})


def test_weight_is_a_multiplier_and_size_rescales_it():
    assert weighted_counts({"a": 100, "b": 10}, {"a": 1, "b": 1}) == {"a": 100, "b": 10}
    assert weighted_counts({"a": 100, "b": 10}, {"a": 0.5, "b": 3}) == {"a": 50, "b": 30}
    assert weighted_counts({"a": 100, "b": 10}, {"a": 0.5, "b": 3}, size=40) == {"a": 25, "b": 15}
    rng = random.Random(0)
    pools = {"a": list(range(100)), "b": list(range(100, 110))}
    chosen, counts, resampled = weighted(pools, {"a": 1, "b": 2}, rng)
    assert counts == {"a": 100, "b": 20} and len(chosen) == 120
    assert sorted(set(chosen)) == list(range(110))  # every record at least once before any repeat
    assert resampled == {"b": {"available": 10, "needed": 20, "drawn_with_replacement": 10}}


def test_load_keeps_origin_and_streams_rejects(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [*_alpaca(3, "x"), "{broken", {"instruction": "no output"}])
    rejects = tmp_path / "rej.jsonl"
    (pool,) = load([DataSource(path=str(path), replace={"x ": "X "})], rejects=rejects)
    assert [r["origin"]["line"] for r in pool.records] == [1, 2, 3]
    assert all(r["origin"]["file"] == str(path) for r in pool.records)
    assert pool.records[0]["messages"][0]["content"] == "X q0"
    assert pool.read == 5 and pool.rejected == 2
    rej = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rej] == [(4, ""), (5, "output")]


def test_a_source_with_no_usable_record_is_an_error_naming_it(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["{", "{"])
    with pytest.raises(SftkitError, match=r"data source bad.jsonl: no usable records \(2 read, 2 rejected\)"):
        load([DataSource(path=str(path))])


def test_split_slices_the_converted_records(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", _alpaca(10, "x"))
    (pool,) = load([DataSource(path=str(path), split="train[2:5]")])
    assert [r["origin"]["line"] for r in pool.records] == [3, 4, 5]
    (pool,) = load([DataSource(path=str(path), split="train[-20%:]")])
    assert [r["origin"]["line"] for r in pool.records] == [9, 10]


def test_registry_source_reads_the_entry(tmp_path):
    (pool,) = load([DataSource(registry=str(LF / "dataset_info.json"), dataset="alpaca_zh_demo")])
    assert len(pool.records) > 100 and pool.records[0]["origin"]["file"].endswith("alpaca_zh_demo.json")


def test_train_eval_and_generate_read_a_file_the_same_way(tmp_path):
    """The prompts eval and generate reply to are the conversations training learns from, minus the reply."""
    from sftkit.eval.run import load_eval_records
    from sftkit.infer import read_prompts

    path = LF / "alpaca_en_demo.json"
    (pool,) = load([DataSource(path=str(path))])
    evals = load_eval_records(str(path))
    prompts, skipped = read_prompts(str(path))
    assert not skipped and len(pool.records) == len(evals) == len(prompts)
    for rec, ev, pr in zip(pool.records, evals, prompts, strict=True):
        assert ev["prompt"] == pr["messages"] == rec["messages"][:-1]
        assert ev["reference"] == pr["reference"] == rec["messages"][-1]["content"]
        assert ev["origin"] == pr["origin"] == rec["origin"]


def test_generate_reads_prompt_only_records(tmp_path):
    from sftkit.infer import read_prompts

    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "hi", "reference": "yo"}, {"instruction": "a", "input": "b"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}],
         "tools": [{"name": "f", "parameters": {}}]},
        {"question": "q", "answer": "#### 4"}, {"text": "plain"}, {"nothing": 1},
        {"messages": [{"role": "user", "content": "see"}], "images": ["missing.png"]}])
    items, skipped = read_prompts(str(path))
    got = [(it["messages"][-1]["content"], it["reference"]) for it in items]
    assert got == [("hi", "yo"), ("a\nb", None), ("x", None), ("q", "#### 4"), ("plain", None)]
    assert items[2]["tools"][0]["function"]["name"] == "f" and items[2]["messages"][0]["role"] == "system"
    assert [s["where"].split(":")[-1] for s in skipped] == ["6 (index 5)", "7 (index 6)"]
    assert "no prompt to reply to" in skipped[0]["reason"] and "not found" in skipped[1]["reason"]


def test_training_refuses_prompt_only_records_as_before(tmp_path):
    from tests.data.helpers import reject

    rej = reject(tmp_path, {"instruction": "only a question"})
    assert rej["field"] == "output" and "missing" in rej["reason"]


def test_train_config_sources_resolve_from_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "d.jsonl", _alpaca(4, "x"))
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text("data:\n  datasets:\n    - path: sub/d.jsonl\n      columns: {prompt: q}\n      weight: 2\n"
                        "  eval_file: {path: sub/d.jsonl, split: 'train[:2]'}\n")
    cfg = load_config(cfg_path)
    assert cfg.data.datasets[0].path == str(tmp_path / "sub" / "d.jsonl")
    assert cfg.data.eval_file.path == str(tmp_path / "sub" / "d.jsonl")
    with pytest.raises(SftkitError, match="max_samples"):
        load_config(raw={"data": {"datasets": [{"path": "x"}], "max_samples": 0}})


def test_run_data_report_counts_per_source_and_rows_keep_origin(tmp_path, tokenizer):
    from sftkit.train.data import prepare

    a = write_jsonl(tmp_path / "a.jsonl", [*_alpaca(6, "a"), "{bad"])
    b = write_jsonl(tmp_path / "b.jsonl", _alpaca(3, "b"))
    cfg = load_config(raw={"template": "chatml", "data": {
        "datasets": [{"path": str(a), "weight": 0.5}, {"path": str(b), "weight": 2}], "max_length": 64,
        "packing": True}})
    run = tmp_path / "run"
    run.mkdir()
    rows, _, _ = prepare(cfg, tokenizer, run)
    report = json.loads((run / "data_report.json").read_text())
    assert report["sources"]["a.jsonl"] == {"read": 7, "rejected": 1, "records": 6, "eval": 0, "weight": 0.5}
    assert report["drawn"] == {"a.jsonl": 3, "b.jsonl": 6}
    assert report["train_rows_per_file"] == {str(a): 3, str(b): 6}
    assert json.loads((run / "rejects.jsonl").read_text())["line"] == 7
    origins = [o for r in rows for o in r["origins"]]  # packed rows keep every sample's origin
    lineage = [json.loads(line) for line in (run / "lineage.jsonl").read_text().splitlines()]
    assert [x["origins"] for x in lineage] == [r["origins"] for r in rows]
    assert sorted((o["file"], o["line"]) for o in origins if o["file"] == str(b)) == \
        sorted([(str(b), i) for i in (1, 2, 3)] * 2)


def test_no_training_rows_error_points_at_a_written_report(tmp_path, tokenizer):
    from sftkit.train.data import prepare

    a = write_jsonl(tmp_path / "a.jsonl", _alpaca(3, "a"))
    cfg = load_config(raw={"template": "chatml", "data": {"datasets": [{"path": str(a)}], "max_length": 8,
                                                          "overflow": "drop"}})
    with pytest.raises(SftkitError, match="no training rows") as e:
        prepare(cfg, tokenizer, tmp_path)
    assert str(tmp_path / "data_report.json") in str(e.value)
    assert json.loads((tmp_path / "data_report.json").read_text())["render"]["dropped"] == {"too_long": 3}


def test_media_records_are_refused_in_a_text_only_run(tmp_path, tokenizer):
    from PIL import Image

    from sftkit.train.data import prepare

    Image.new("RGB", (4, 4)).save(tmp_path / "img.png")
    a = write_jsonl(tmp_path / "a.jsonl", [*_alpaca(2, "a"), {"messages": [
        {"role": "user", "content": "<image>what?"}, {"role": "assistant", "content": "a cat"}],
        "images": ["img.png"]}])
    cfg = load_config(raw={"template": "chatml", "data": {"datasets": [{"path": str(a)}], "max_length": 64}})
    rows, _, _ = prepare(cfg, tokenizer, tmp_path)
    report = json.loads((tmp_path / "data_report.json").read_text())
    assert len(rows) == 2 and report["render"]["dropped"] == {"media_in_text_only_run": 1}
    drop = json.loads((tmp_path / "rejects.jsonl").read_text())  # traceable to its file and line
    assert (drop["source"], drop["line"], drop["stage"]) == (str(a), 3, "render")
    assert drop["reason"] == "dropped while rendering: media_in_text_only_run"
    assert not any("<image>" in tokenizer.decode(r["input_ids"]) for r in rows)


def test_weight_rounding_keeps_fractions_and_bad_weights_are_one_line_errors(tmp_path):
    assert weighted_counts({"one": 1}, {"one": 0.5}) == {"one": 1}  # rounded half up, not to an empty source
    assert weighted_counts({"a": 3, "b": 3}, {"a": 0.5, "b": 0.5}) == {"a": 2, "b": 1}  # 3 in all, not 2 + 2
    for bad in (".inf", "1e308", "-1", ".nan"):
        with pytest.raises(SftkitError, match="weight"):
            load_config(raw={"data": {"datasets": [{"path": "x.jsonl", "weight": float(bad.replace(".inf", "inf")
                                                                                          .replace(".nan", "nan"))}]}})


def test_mix_categories_apply_source_weights_inside_a_category(tmp_path):
    from sftkit.data.mix import mix

    write_jsonl(tmp_path / "A.jsonl", _alpaca(10, "A"))
    write_jsonl(tmp_path / "B.jsonl", _alpaca(20, "B"))
    spec = tmp_path / "spec.yaml"
    spec.write_text("seed: 1\nsize: 30\ncategories: {x: 1.0}\nsources:\n  - {path: A.jsonl, weight: 2, category: x}\n"
                    "  - {path: B.jsonl, weight: 0, category: x}\n")
    r = mix(spec, tmp_path / "out.jsonl")
    assert r["by_source"] == {"A": {"count": 30, "share": 1.0}}
    spec.write_text("seed: 1\nsources:\n  - {path: A.jsonl, weight: .inf}\n")
    with pytest.raises(SftkitError, match="weight must be a number from 0 to 1e6"):
        mix(spec, tmp_path / "out.jsonl")


def test_loss_weight_on_a_prompt_turn_is_a_counted_warning(tmp_path):
    from tests.data.helpers import one

    rec, rep = one(tmp_path, {"messages": [{"role": "user", "content": "Q", "loss_weight": 1},
                                           {"role": "assistant", "content": "A"}]})
    assert rep.warnings["loss_weight_ignored"] == 1 and rec["messages"][0]["loss_weight"] == 1


def test_openai_per_message_weight_is_loss_weight(tmp_path):
    """OpenAI's fine-tuning files mark assistant messages with ``weight: 0|1``; it means loss_weight."""
    from tests.data.helpers import one, reject

    rec, _ = one(tmp_path, {"messages": [{"role": "user", "content": "Q"},
                                         {"role": "assistant", "content": "bad", "weight": 0},
                                         {"role": "user", "content": "again"},
                                         {"role": "assistant", "content": "good", "weight": 1}]})
    assert [m.get("loss_weight") for m in rec["messages"]] == [None, 0, None, 1]
    assert "turns" not in rec["meta"]  # consumed, not kept twice
    rej = reject(tmp_path, {"messages": [{"role": "user", "content": "Q"},
                                         {"role": "assistant", "content": "A", "weight": 0.5}]})
    assert rej["field"] == "messages[1].weight"
