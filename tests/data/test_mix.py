"""Mixing by weight and by category share, with resampling reported and a fixed seed."""

from __future__ import annotations

import json

import pytest

from sftkit.data.mix import mix
from sftkit.errors import SftkitError
from tests.conftest import write_jsonl


def _single(n, tag):
    return [{"instruction": f"{tag} q{i}", "output": f"{tag} a{i}"} for i in range(n)]


def _multi(n):
    return [{"conversations": [{"from": "human", "value": f"m{i}"}, {"from": "gpt", "value": "x"},
                               {"from": "human", "value": "again"}, {"from": "gpt", "value": "y"}]} for i in range(n)]


@pytest.fixture
def sources(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", _single(100, "a"))
    write_jsonl(tmp_path / "b.jsonl", _single(10, "b"))
    write_jsonl(tmp_path / "m.jsonl", _multi(50))
    return tmp_path


def test_mix_by_weight_resamples_small_source(sources):
    # weight is a sampling multiplier (as in train configs): a 100 x 0.4 = 40, b 10 x 2 = 20
    spec = sources / "spec.yaml"
    spec.write_text("seed: 1\nsize: 60\nsources:\n  - path: a.jsonl\n    weight: 0.4\n  - path: b.jsonl\n    weight: 2\n")
    r = mix(spec, sources / "out.jsonl")
    assert r["by_source"]["a"]["count"] == 40 and r["by_source"]["b"]["count"] == 20
    assert r["resampled"] == {"b": {"available": 10, "needed": 20, "drawn_with_replacement": 10}}
    rows = [json.loads(line) for line in (sources / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 60
    b_prompts = {row["messages"][0]["content"] for row in rows if row["meta"]["mix_source"] == "b"}
    assert b_prompts == {f"b q{i}" for i in range(10)}  # every record before any repeats
    again = mix(spec, sources / "out2.jsonl")
    assert (sources / "out.jsonl").read_text() == (sources / "out2.jsonl").read_text() and again["size"] == 60


def test_mix_by_category_share(sources):
    spec = sources / "spec.yaml"
    spec.write_text("seed: 3\nsize: 100\ncategories:\n  single-turn: 0.6\n  multi-turn: 0.25\n  domain: 0.15\n"
                    "sources:\n  - path: a.jsonl\n  - path: m.jsonl\n  - path: b.jsonl\n    category: domain\n")
    r = mix(spec, sources / "out.jsonl")
    assert {k: v["count"] for k, v in r["by_category"].items()} == {"single-turn": 60, "multi-turn": 25, "domain": 15}
    assert r["by_category"]["single-turn"]["share"] == 0.6
    assert r["resampled"]["domain"]["drawn_with_replacement"] == 5


def test_mix_spec_errors(sources):
    spec = sources / "spec.yaml"
    spec.write_text("sources:\n  - path: a.jsonl\n    wieght: 2\n")
    with pytest.raises(SftkitError, match="unknown key.*wieght"):
        mix(spec, sources / "o.jsonl")
    spec.write_text("size: 10\ncategories:\n  domain: 1\nsources:\n  - path: a.jsonl\n")
    with pytest.raises(SftkitError, match="category 'single-turn'"):
        mix(spec, sources / "o.jsonl")


def test_mix_accepts_common_key_spellings(sources):
    spec = sources / "spec.yaml"
    spec.write_text("seed: 2\ntarget_size: 30\ndatasets:\n  - file: a.jsonl\n    ratio: 1\n  - file: m.jsonl\n    ratio: 2\n")
    r = mix(spec, sources / "out.jsonl")
    # a: 100 x 1, m: 50 x 2 -> equal parts of the 30
    assert r["by_source"]["a"]["count"] == 15 and r["by_source"]["m"]["count"] == 15


def test_mix_weight_without_size_is_a_multiplier(sources):
    spec = sources / "spec.yaml"
    spec.write_text("seed: 2\nsources:\n  - path: a.jsonl\n    weight: 0.5\n  - path: b.jsonl\n    weight: 3\n")
    r = mix(spec, sources / "out.jsonl")
    assert r["by_source"]["a"]["count"] == 50 and r["by_source"]["b"]["count"] == 30
    assert r["resampled"]["b"]["drawn_with_replacement"] == 20


def test_mix_sources_take_every_data_source_key(sources):
    spec = sources / "spec.yaml"
    spec.write_text("seed: 2\nsources:\n  - path: b.jsonl\n    replace: {'b q': 'B Q'}\n    split: train[:4]\n")
    r = mix(spec, sources / "out.jsonl")
    rows = [json.loads(line) for line in (sources / "out.jsonl").read_text().splitlines()]
    assert r["size"] == 4 and all(row["messages"][0]["content"].startswith("B Q") for row in rows)
    assert sorted(row["origin"]["line"] for row in rows) == [1, 2, 3, 4]  # lineage survives the mix
    spec.write_text("sources:\n  - path: b.jsonl\n    colums: {a: b}\n")
    with pytest.raises(SftkitError, match=r"sources\[0\] has unknown key 'colums' \(did you mean 'columns'\?\)"):
        mix(spec, sources / "o.jsonl")
