"""Readers: every container format, line numbers, encodings, and broken input turned into items."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

from sftkit.data import readers, streams
from sftkit.data.readers import iter_file
from sftkit.errors import SftkitError
from tests.conftest import LF


def ok(items):
    return [it.raw for it in items if it.error is None]


def test_json_array_matches_json_load_with_tiny_chunks(monkeypatch):
    """Chunk boundaries inside strings, numbers and multi-byte characters must not change the result."""
    monkeypatch.setattr(streams, "_CHUNK", 7)
    path = LF / "alpaca_zh_demo.json"
    expected = json.loads(path.read_text(encoding="utf-8"))
    items = list(iter_file(path))
    assert ok(items) == expected
    assert [it.index for it in items] == list(range(len(expected)))
    assert items[0].line == 2 and items[1].line == 7  # each element's first line


def test_json_array_of_numbers_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(streams, "_CHUNK", 3)
    p = tmp_path / "a.json"
    p.write_text('[{"a": 123456789}, 98765, {"b": 1.5e10}]')
    items = list(iter_file(p))
    assert ok(items) == [{"a": 123456789}, {"b": 1.5e10}]
    assert "number, not an object" in items[1].error


def test_jsonl_bom_crlf_blank_lines_and_errors(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n\r\n{"text": "b"}\r\n{broken\r\n[1, 2]\r\n{"text": "\xff\xfe"}\r\n')
    items = list(iter_file(p))
    assert [(it.line, it.index) for it in items] == [(1, 0), (3, 1), (4, 2), (5, 3), (6, 4)]
    assert ok(items) == [{"text": "a"}, {"text": "b"}]
    assert "malformed JSON" in items[2].error and items[2].text == "{broken"
    assert "array, not an object" in items[3].error
    assert "invalid UTF-8" in items[4].error


def test_truncated_json_array_is_reported(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('[\n{"a": 1},\n{"a": 2},\n{"a": ')
    items = list(iter_file(p))
    assert ok(items) == [{"a": 1}, {"a": 2}]
    assert items[-1].error and items[-1].line == 4


def test_single_object_and_concatenated_objects(tmp_path):
    one = tmp_path / "one.json"
    one.write_text('{\n  "text": "x"\n}\n')
    assert ok(iter_file(one)) == [{"text": "x"}]
    many = tmp_path / "many.json"
    many.write_text('{"text": "x"}\n{"text": "y"}\n')
    assert [(it.line, it.raw) for it in iter_file(many)] == [(1, {"text": "x"}), (2, {"text": "y"})]


def test_gzip_csv_parquet_txt(tmp_path):
    gz = tmp_path / "d.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write('{"text": "压缩"}\n')
    assert ok(iter_file(gz)) == [{"text": "压缩"}]

    c = tmp_path / "d.csv"
    with open(c, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instruction", "output"])
        w.writerow(["多行\n指令", "回答"])
        w.writerow(["b", "c"])
    items = list(iter_file(c))
    assert ok(items) == [{"instruction": "多行\n指令", "output": "回答"}, {"instruction": "b", "output": "c"}]
    assert [it.line for it in items] == [2, 4]

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "answer": ["a1", "a2"]}), pq_path)
    assert ok(iter_file(pq_path)) == [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]

    t = tmp_path / "d.txt"
    t.write_text("line one\n\nline two\n")
    assert [(it.line, it.raw) for it in iter_file(t)] == [(1, {"text": "line one"}), (3, {"text": "line two"})]


def test_folder_and_unreadable(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text('{"text": "b"}\n')
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "notes.md").write_text("ignored")
    assert [p.name for p in readers.expand_paths([tmp_path])] == ["a.jsonl", "b.jsonl"]
    with pytest.raises(SftkitError, match="no such file"):
        readers.expand_paths([tmp_path / "missing.jsonl"])
    with pytest.raises(SftkitError, match="unknown file type"):
        readers.expand_paths([tmp_path / "notes.md"])


def test_jsonl_saved_as_json_loses_only_the_bad_line(tmp_path):
    p = tmp_path / "lines.json"
    p.write_text('{"text": "a"}\n{"text": "b"}\n{broken\n{"text": "c"}\n')
    items = list(iter_file(p))
    assert ok(items) == [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    assert items[2].line == 3 and "malformed JSON" in items[2].error


def test_broken_element_in_pretty_array_costs_only_that_element(tmp_path, monkeypatch):
    monkeypatch.setattr(streams, "_CHUNK", 16)
    rows = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]} for i in range(5)]
    text = json.dumps(rows, indent=2, ensure_ascii=False)
    broken = text.replace('"value": "q2"', '"value": "q2" "oops"')  # a syntax error inside element 2
    p = tmp_path / "arr.json"
    p.write_text(broken)
    items = list(iter_file(p))
    assert [it.raw for it in items if it.error is None] == [rows[0], rows[1], rows[3], rows[4]]
    bad = [it for it in items if it.error]
    assert len(bad) == 1 and bad[0].index == 2 and "malformed JSON" in bad[0].error
    element_lines = [n for n, line in enumerate(text.splitlines(), 1) if line == "  {"]
    assert [it.line for it in items] == element_lines
    assert '"q2" "oops"' in bad[0].text


def test_single_object_wrapping_its_records(tmp_path):
    p = tmp_path / "wrapped.json"
    p.write_text(json.dumps({"version": "1.0", "data": [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}, 3]}))
    items = list(iter_file(p))
    assert [it.raw for it in items[:2]] == [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}]
    assert [it.index for it in items] == [0, 1, 2] and "number, not an object" in items[2].error
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"text": "one record", "data": [{"x": 1}]}))  # a record with a list field: kept whole
    assert [it.raw for it in iter_file(plain)] == [{"text": "one record", "data": [{"x": 1}]}]


def test_a_damaged_wrapper_costs_one_record(tmp_path):
    """{"version": 1, "data": [...]} is read element by element: a missing comma costs that element only."""
    recs = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]
    text = json.dumps({"version": 1, "data": recs}, indent=2)
    parts = text.split("},\n")
    p = tmp_path / "wrapped.json"
    p.write_text("},\n".join(parts[:5]) + "}\n" + "},\n".join(parts[5:]))
    items = list(iter_file(p))
    assert len(items) == 20 and [it.index for it in items if it.error] == [5]
    assert [it.raw for it in items if it.error is None] == recs[:5] + recs[6:]
    assert items[5].raw == recs[5] and "missing ','" in items[5].error  # kept in the reject, not lost
    assert items[0].line == 4  # wrapped records now carry their line
