"""Readers against resource attacks and odd encodings: size limits and bounded memory (defect 8 of issue 7),
line endings, BOMs and bad bytes in CSV (defect 11)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import tracemalloc
import zlib

import pytest

from sftkit.data import jsonscan, readers, streams
from sftkit.data.readers import iter_file
from sftkit.errors import SftkitError
from tests.data.test_reader_faults import bad, ok


def read_with_peak(path, limit: int):
    """Every item of a file read with a record limit, and the peak memory Python allocated meanwhile."""
    tracemalloc.start()
    try:
        items = list(iter_file(path, max_record_bytes=limit))
        return items, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------------------------ defect 8


def test_oversized_records_are_rejected_and_reading_continues(tmp_path):
    big = "x" * 300_000
    limit = 100_000
    p = tmp_path / "o.jsonl"
    p.write_text(f'{{"text": "a"}}\n{{"text": "{big}"}}\n{{"text": "b"}}\n')
    items = list(iter_file(p, max_record_bytes=limit))
    assert ok(items) == [{"text": "a"}, {"text": "b"}] and [it.line for it in items] == [1, 2, 3]
    assert items[1].error == f"record exceeds {limit} bytes"
    t = tmp_path / "o.txt"
    t.write_text(f"a\n{big}\r\nb\n")
    items = list(iter_file(t, max_record_bytes=limit))
    assert ok(items) == [{"text": "a"}, {"text": "b"}] and items[1].error == f"record exceeds {limit} bytes"
    assert [it.line for it in items] == [1, 2, 3]
    c = tmp_path / "o.csv"
    c.write_text(f"text,n\na,1\n{big},2\nb,3\n")
    items = list(iter_file(c, max_record_bytes=limit))
    assert ok(items) == [{"text": "a", "n": "1"}, {"text": "b", "n": "3"}] and "exceeds" in items[1].error
    a = tmp_path / "o.json"
    a.write_text(json.dumps([{"text": "a"}, {"text": big}, {"text": "b"}], indent=2))
    items = list(iter_file(a, max_record_bytes=limit))
    assert ok(items) == [{"text": "a"}, {"text": "b"}] and items[1].error == f"record exceeds {limit} bytes"
    assert [it.line for it in items] == [2, 5, 8]


def test_limit_from_environment(tmp_path, monkeypatch):
    p = tmp_path / "e.jsonl"
    p.write_text('{"text": "short"}\n{"text": "' + "y" * 200 + '"}\n')
    monkeypatch.setenv("SFTKIT_MAX_RECORD_BYTES", "100")
    assert [it.error for it in iter_file(p)] == [None, "record exceeds 100 bytes"]
    assert [it.error for it in iter_file(p, max_record_bytes=1000)] == [None, None]
    monkeypatch.setenv("SFTKIT_MAX_RECORD_BYTES", "lots")
    with pytest.raises(SftkitError, match="SFTKIT_MAX_RECORD_BYTES"):
        list(iter_file(p))


def test_gzip_bomb_without_newlines_uses_bounded_memory(tmp_path):
    p = tmp_path / "bomb.jsonl.gz"
    comp = zlib.compressobj(1, wbits=31)
    with open(p, "wb") as fh:
        fh.write(comp.compress(b'{"text": "before"}\n'))
        for _ in range(64):
            fh.write(comp.compress(b"a" * (1 << 20)))  # 64 MiB line, no newline
        fh.write(comp.compress(b'\n{"text": "after"}\n') + comp.flush())
    items, peak = read_with_peak(p, 1 << 20)
    assert ok(items) == [{"text": "before"}, {"text": "after"}] and items[1].error == f"record exceeds {1 << 20} bytes"
    assert peak < 12 << 20, peak


def test_whitespace_runs_are_skipped_in_bounded_memory(tmp_path):
    p = tmp_path / "ws.json.gz"
    comp = zlib.compressobj(1, wbits=31)
    with open(p, "wb") as fh:
        fh.write(comp.compress(b'[{"text": "a"},'))
        for _ in range(32):
            fh.write(comp.compress(b" " * (1 << 20)))
        fh.write(comp.compress(b'{"text": "b"}]') + comp.flush())
    q = tmp_path / "ws.jsonl"
    q.write_bytes(b'{"text": "a"}\n' + b" " * (3 << 20) + b'\n{"text": "b"}\n')
    for path in (p, q):
        items, peak = read_with_peak(path, 1 << 20)
        assert items and ok(items) == [{"text": "a"}, {"text": "b"}] and not bad(items)
        assert peak < 12 << 20, (path.name, peak)


def test_large_json_element_is_decoded_once(tmp_path, monkeypatch):
    """Linear time: a large element is located by the scanner, then decoded once (not retried per chunk)."""
    monkeypatch.setattr(streams, "_CHUNK", 1 << 16)
    decoded = []
    real = jsonscan._parse_bytes
    monkeypatch.setattr(jsonscan, "_parse_bytes", lambda data: decoded.append(len(data)) or real(data))
    rows = [{"text": "small"}, {"text": "z" * (8 << 20), "list": list(range(1000))}, {"text": "small"}]
    p = tmp_path / "big.json"
    p.write_text(json.dumps(rows))
    assert ok(iter_file(p)) == rows
    assert len(decoded) == 3 and sum(decoded) < p.stat().st_size


@pytest.fixture
def alarm():
    """Fail instead of hanging forever if a read blocks."""
    def _timeout(*_):
        raise TimeoutError("blocked")
    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_named_pipe_and_device_are_refused(tmp_path, alarm):
    pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    with pytest.raises(SftkitError, match="named pipe"):
        list(iter_file(pipe))
    with pytest.raises(SftkitError, match="named pipe"):
        readers.expand_paths([pipe])
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n')
    assert [p.name for p in readers.expand_paths([tmp_path])] == ["a.jsonl"]  # a folder skips it
    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    with pytest.raises(SftkitError, match="a device"):
        list(iter_file(zero))


# ------------------------------------------------------------------------------------------------ defect 11


def test_cr_only_line_endings(tmp_path):
    p = tmp_path / "mac.jsonl"
    p.write_bytes(b'{"text": "a"}\r{"text": "b"}\r\r{"text": "c"}\r')
    items = list(iter_file(p))
    assert [(it.line, it.raw) for it in items] == [(1, {"text": "a"}), (2, {"text": "b"}), (4, {"text": "c"})]
    t = tmp_path / "mac.txt"
    t.write_bytes(b"one\rtwo\r\rthree")
    assert [(it.line, it.raw["text"]) for it in iter_file(t)] == [(1, "one"), (2, "two"), (4, "three")]
    c = tmp_path / "mac.csv"
    c.write_bytes(b'q,a\r1,2\r"multi\rline",4\r')
    items = list(iter_file(c))
    assert [(it.line, it.raw) for it in items] == [(2, {"q": "1", "a": "2"}), (3, {"q": "multi\rline", "a": "4"})]
    a = tmp_path / "mac.json"
    a.write_bytes(b'[\r  {"text": "a"},\r  {"text": "b"}\r]\r')
    assert [(it.line, it.raw) for it in iter_file(a)] == [(2, {"text": "a"}), (3, {"text": "b"})]


def test_cr_lf_split_across_chunks_counts_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(streams, "_CHUNK", 14)  # the first line is 14 bytes + CR; its LF starts the next chunk
    p = tmp_path / "crlf.jsonl"
    p.write_bytes(b'{"text": "ab"}\r\n{"text": "c"}\r\n')
    assert [(it.line, it.raw) for it in iter_file(p)] == [(1, {"text": "ab"}), (2, {"text": "c"})]


@pytest.mark.parametrize("name", ["b.jsonl", "b.txt", "b.csv", "b.json", "b.jsonl.gz"])
@pytest.mark.parametrize("body", [b"", b"  \r\n\n", b"\r"])
def test_bom_only_file_has_no_records(tmp_path, name, body):
    p = tmp_path / name
    data = b"\xef\xbb\xbf" + body
    p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert list(iter_file(p)) == []


def test_csv_invalid_utf8_costs_one_row(tmp_path):
    c = tmp_path / "u.csv"
    c.write_bytes(b'q,a\n1,2\n"bad \xff\nrow",3\n4,5\n')
    items = list(iter_file(c))
    assert ok(items) == [{"q": "1", "a": "2"}, {"q": "4", "a": "5"}]
    assert items[1].line == 3 and "invalid UTF-8" in items[1].error
