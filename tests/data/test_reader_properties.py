"""Property tests: random bytes and random (damaged) JSON fed to every reader. Only a one-line SftkitError may
escape; every record read is an item with a line, an index and, when it failed, a reason; nothing is lost."""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftkit.data import streams
from sftkit.data.readers import iter_file
from sftkit.errors import SftkitError

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                      max_leaves=12)
records = st.dictionaries(st.sampled_from(["text", "instruction", "output", "messages", "x"]), values, min_size=1,
                          max_size=4)
# bytes that stress the readers: structure, line breaks, BOM, invalid UTF-8, escapes
noisy = st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\\ud800", b"\n", b"\r", b"\r\n",
                                  b"\xef\xbb\xbf", b"\xff", b" ", b"a", b"1", b"NaN", b'{"text": "x"}', b"\t"]),
                 max_size=40).map(b"".join)
any_bytes = st.binary(max_size=300) | noisy


def _write(data: bytes, suffix: str) -> Path:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
        fh.write(gzip.compress(data) if suffix.endswith(".gz") else data)
    return Path(fh.name)


def _read(path: Path) -> list | None:
    """Items of a file, or None when the reader refused the whole file with a one-line SftkitError."""
    try:
        items = list(iter_file(path))
    except SftkitError as e:
        assert "\n" not in str(e)
        return None
    finally:
        path.unlink()
    assert [it.index for it in items] == list(range(len(items)))
    for it in items:
        assert it.line is None or it.line >= 1
        if it.error is None:
            assert type(it.raw) is dict
        else:
            assert isinstance(it.error, str) and it.error
        # everything kept can be written to a UTF-8 rejects or output file
        json.dumps([it.raw, it.text], ensure_ascii=False).encode("utf-8")
    return items


def _nonblank_lines(data: bytes) -> list[bytes]:
    """Reference line split, independent of the reader: LF, CRLF or a lone CR; a leading BOM dropped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return [x for x in re.split(rb"\r\n|\r|\n", data) if x.strip(b" \t\n\r\x0b\x0c")]


@SETTINGS
@given(any_bytes, st.sampled_from([".jsonl", ".txt", ".jsonl.gz", ".txt.gz"]), st.sampled_from([3, 16, 1 << 20]))
def test_line_files_account_for_every_line(data, suffix, chunk):
    default, streams._CHUNK = streams._CHUNK, chunk  # lines and CRLFs cut by chunk boundaries
    try:
        items = _read(_write(data, suffix))
    finally:
        streams._CHUNK = default
    lines = _nonblank_lines(data)
    assert items is not None and len(items) == len(lines)
    for it, line in zip(items, lines, strict=True):
        if it.error is None and ".jsonl" in suffix:
            assert it.raw == json.loads(line)  # the reference decoder agrees on every record kept
        elif it.error is None:
            assert it.raw == {"text": line.decode("utf-8")}


@SETTINGS
@given(any_bytes, st.sampled_from([".json", ".csv", ".tsv", ".json.gz", ".csv.gz"]))
def test_other_files_never_crash(data, suffix):
    _read(_write(data, suffix))


@SETTINGS
@given(st.lists(records, min_size=1, max_size=8), st.sampled_from([None, 0, 2]))
def test_json_array_round_trips_with_element_lines(rows, indent):
    text = json.dumps(rows, indent=indent)
    items = _read(_write(text.encode(), ".json"))
    assert [it.raw for it in items] == rows and all(it.error is None for it in items)
    if indent:
        starts = [n for n, line in enumerate(text.splitlines(), 1) if line == " " * indent + "{"]
        assert [it.line for it in items] == starts


@SETTINGS
@given(st.lists(values, min_size=2, max_size=8), st.sampled_from(["instruction", "messages"]), st.sampled_from([None, 2]),
       st.data())
def test_one_damaged_byte_costs_at_most_two_elements(contents, first_key, indent, data):
    """Elements of a dataset share their first key, which is how the reader finds the next one after damage."""
    rows = [{first_key: c, "n": i} for i, c in enumerate(contents)]
    text = json.dumps(rows, indent=indent).encode()
    pos = data.draw(st.integers(1, len(text) - 2), label="pos")
    edit = data.draw(st.sampled_from([b"", b"{", b"}", b"[", b"]", b'"', b",", b"\xff", b"x"]), label="edit")
    damaged = text[:pos] + edit + text[pos + 1:]
    items = _read(_write(damaged, ".json"))
    kept = [it.raw for it in items if it.error is None]
    kept += [r for it in items if it.error and type(it.raw) is list for r in it.raw]  # "[" made them one element
    assert sum(r in kept for r in rows) >= len(rows) - 2
