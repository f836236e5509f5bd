"""Readers against damaged and hostile files: damage costs only the records it touches, resources stay bounded,
and every problem becomes a reject with a line and a reason (or one clear SftkitError), never a traceback."""

from __future__ import annotations

import gzip
import json
import random
import zlib

import pytest

from sftkit.data import jsondecode, readers
from sftkit.data.readers import iter_file
from sftkit.errors import SftkitError


def ok(items):
    return [it.raw for it in items if it.error is None]


def bad(items):
    return [it for it in items if it.error]


def rows_(n, start=0):
    return [{"instruction": f"q{i}", "input": "", "output": f"a{i}", "history": [[f"h{i}", "x"]]}
            for i in range(start, start + n)]


def element_spans(text: str, n: int) -> list[tuple[int, int]]:
    """Start and end of each element of a JSON array text, found with json's own decoder."""
    dec, pos, out = json.JSONDecoder(), 1, []
    for _ in range(n):
        while text[pos] in ", \n":
            pos += 1
        _, end = dec.raw_decode(text, pos)
        out.append((pos, end))
        pos = end
    return out


# ------------------------------------------------------------------------------------------------ defect 6


def test_missing_comma_in_minified_array_loses_nothing_silently(tmp_path):
    """The issue's case: 334 of 999 records read with exit 0. Now all 999 are accounted for."""
    rows = rows_(999)
    text = json.dumps(rows, ensure_ascii=False)
    s, _ = element_spans(text, 999)[333]
    p = tmp_path / "mini.json"
    p.write_text(text[:s - 2] + " " + text[s:])  # "}, {" -> "} {"
    items = list(iter_file(p))
    assert len(items) == 999 and [it.index for it in items] == list(range(999))
    assert ok(items) == rows[:333] + rows[334:]
    (rej,) = bad(items)
    assert rej.index == 333 and "missing ','" in rej.error and rej.raw == rows[333]  # kept for the rejects file


def test_missing_comma_in_pretty_array_names_the_line(tmp_path):
    rows = rows_(5)
    text = json.dumps(rows, indent=2)
    broken = text.replace('},\n  {\n    "instruction": "q3"', '}\n  {\n    "instruction": "q3"')
    p = tmp_path / "pretty.json"
    p.write_text(broken)
    items = list(iter_file(p))
    assert ok(items) == rows[:3] + rows[4:]
    (rej,) = bad(items)
    assert rej.line == _line_of(broken, '"instruction": "q3"') - 1  # the line of the element's "{"


def _line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


@pytest.mark.parametrize("indent", [None, 2])
def test_any_single_damage_costs_at_most_the_damaged_element(tmp_path, indent):
    """Delete or insert one structural character anywhere in an element (minified or pretty): every other element
    is still read, and nothing is lost silently."""
    rows = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i} {{x}}"}],
             "system": f"s{i}"} for i in range(12)]
    text = json.dumps(rows, indent=indent, ensure_ascii=False)
    spans = element_spans(text, len(rows))
    rng = random.Random(7)
    p = tmp_path / "d.json"
    for k in range(1, len(rows) - 1):
        s, e = spans[k]
        inner = [i for i in range(s, e) if text[i] in '{}[]":,']
        damages = [text[:e] + text[e:].replace(",", "", 1), text[:e - 1] + text[e:], text[:s] + text[s + 1:],
                   text[:e] + "}" + text[e:], text[:e] + ",{" + text[e:], text[:e] + ", oops" + text[e:]]
        damages += [text[:j] + text[j + 1:] for j in rng.sample(inner, 5)]
        for broken in damages:
            p.write_text(broken)
            items = list(iter_file(p))
            got = ok(items)
            lost = [i for i, r in enumerate(rows) if r not in got]
            assert lost in ([], [k], [k + 1]), (broken[s - 5:e + 5], lost, [it.error for it in bad(items)])
            assert bad(items), "damage must be reported"
            assert all(it.line for it in items)


def test_minified_array_with_unterminated_string_recovers(tmp_path):
    rows = rows_(8)
    text = json.dumps(rows).replace('"a2"', '"a2')
    p = tmp_path / "u.json"
    p.write_text(text)
    items = list(iter_file(p))
    assert ok(items) == rows[:2] + rows[3:]
    assert len(bad(items)) == 1 and bad(items)[0].index == 2


def test_invalid_utf8_costs_only_its_element_with_the_right_line(tmp_path):
    rows = rows_(6)
    text = json.dumps(rows, indent=2).encode()
    pos = text.index(b'"a3"') + 2
    p = tmp_path / "bad.json"
    p.write_bytes(text[:pos] + b"\xff" + text[pos:])
    items = list(iter_file(p))
    assert ok(items) == rows[:3] + rows[4:]
    (rej,) = bad(items)
    assert rej.index == 3 and "invalid UTF-8" in rej.error
    bad_line = text[:pos].count(b"\n") + 1
    assert rej.error.endswith(f"at line {bad_line}") and rej.line == _line_of(text.decode(), '"q3"') - 1
    rej.text.encode("utf-8")  # the rejects file can hold it


def test_stray_closing_bracket_and_text_between_elements_are_reported(tmp_path):
    rows = rows_(4)
    text = json.dumps(rows)
    s, _ = element_spans(text, 4)[2]
    p = tmp_path / "s.json"
    p.write_text(text[:s - 2] + "] junk " + text[s - 2:])
    items = list(iter_file(p))
    assert ok(items) == rows
    assert len(bad(items)) == 2 and all(it.line == 1 for it in items)


# ------------------------------------------------------------------------------------------------ defect 7


@pytest.mark.parametrize("deep", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000,
                                  "[" * 100_000, '{"a": ' + "[" * 150 + "]" * 150 + "}"])
def test_deep_nesting_is_rejected_in_jsonl_and_json(tmp_path, deep):
    good = {"text": "fine"}
    p = tmp_path / "deep.jsonl"
    p.write_text(json.dumps(good) + "\n" + deep + "\n" + json.dumps(good) + "\n")
    items = list(iter_file(p))
    assert ok(items) == [good, good] and items[1].line == 2 and "nesting deeper than" in items[1].error
    arr = tmp_path / "deep.json"
    arr.write_text("[" + json.dumps(good) + ",\n" + deep + ",\n" + json.dumps(good) + "]")
    items = list(iter_file(arr))
    assert ok(items) == [good, good] and "nesting deeper than" in items[1].error and items[1].line == 2


def test_moderate_nesting_is_kept():
    nested: dict = {"text": "x"}
    for _ in range(readers.MAX_DEPTH - 1):
        nested = {"a": nested}
    assert not jsondecode._too_deep(nested) and jsondecode._too_deep({"b": nested})


def test_huge_integer_nan_infinity_are_rejected(tmp_path):
    lines = ['{"n": ' + "7" * 5000 + "}", '{"n": NaN}', '{"n": Infinity}', '{"n": -Infinity}', '{"n": 1e999}',
             '{"n": 1.5}']
    p = tmp_path / "n.jsonl"
    p.write_text("\n".join(lines) + "\n")
    items = list(iter_file(p))
    assert ok(items) == [{"n": 1.5}]
    reasons = [it.error for it in bad(items)]
    assert "number too long" in reasons[0] and "4300" in reasons[0]
    assert "NaN is not valid JSON" in reasons[1] and "Infinity is not valid JSON" in reasons[2]
    assert "-Infinity is not valid JSON" in reasons[3] and "too large" in reasons[4]
    arr = tmp_path / "n.json"
    arr.write_text("[" + ",".join(lines) + "]")
    items = list(iter_file(arr))
    assert ok(items) == [{"n": 1.5}] and len(bad(items)) == 5


def test_lone_surrogate_is_rejected_valid_pairs_kept(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"text": "\\ud800"}\n{"\\uDFFF": 1}\n{"text": "\\ud83d\\ude00"}\n{"text": "\\\\ud800"}\n')
    items = list(iter_file(p))
    assert ok(items) == [{"text": "😀"}, {"text": "\\ud800"}]
    assert items[0].error == "string holds a lone surrogate (\\ud800)" and items[0].raw is None
    assert items[1].error == "string holds a lone surrogate (\\udfff)"
    json.dumps([it.text for it in items], ensure_ascii=False).encode("utf-8")  # rejects are writable
    arr = tmp_path / "s.json"
    arr.write_text('[{"text": "a"}, {"text": "\\udabc"}, {"text": "b"}]')
    items = list(iter_file(arr))
    assert ok(items) == [{"text": "a"}, {"text": "b"}] and "lone surrogate (\\udabc)" in items[1].error


def _gz_rows(n):
    rng = random.Random(3)
    return [{"text": " ".join(str(rng.random()) for _ in range(8)), "i": i} for i in range(n)]


def test_truncated_gzip_keeps_every_record_before_the_damage(tmp_path):
    rows = _gz_rows(3000)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    packed = gzip.compress(data)
    cut = packed[: len(packed) * 3 // 5]
    # reference: everything zlib itself can decode from the truncated stream
    decodable = zlib.decompressobj(wbits=31).decompress(cut)
    complete = decodable.count(b"\n")
    p = tmp_path / "t.jsonl.gz"
    p.write_bytes(cut)
    items = list(iter_file(p))
    assert ok(items) == rows[:complete]
    (rej,) = bad(items)
    assert rej is items[-1] and rej.line == complete + 1 and "gzip" in rej.error and "truncated" in rej.error


def test_corrupted_gzip_stream_keeps_what_came_before(tmp_path):
    rows = _gz_rows(3000)
    comp = zlib.compressobj(6, wbits=31)
    head = comp.compress("".join(json.dumps(r) + "\n" for r in rows[:1700]).encode()) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.compress("".join(json.dumps(r) + "\n" for r in rows[1700:]).encode()) + comp.flush()
    p = tmp_path / "c.jsonl.gz"
    p.write_bytes(head + b"\x06" + tail[1:])  # a deflate block of the reserved type 3: inflate fails right here
    items = list(iter_file(p))
    assert ok(items) == rows[:1700]
    (rej,) = bad(items)
    assert rej is items[-1] and rej.line == 1701 and "gzip stream damaged" in rej.error and "invalid block" in rej.error


def test_gzip_checksum_mismatch_is_reported(tmp_path):
    packed = bytearray(gzip.compress(b'{"text": "hello"}\n' * 50))
    packed[-8] ^= 0xFF  # the CRC of the member
    p = tmp_path / "crc.jsonl.gz"
    p.write_bytes(bytes(packed))
    items = list(iter_file(p))
    assert len(ok(items)) == 50 and "gzip checksum mismatch" in items[-1].error and items[-1].line == 51


def test_damaged_gzip_json_array_and_not_gzip(tmp_path):
    rows = _gz_rows(2000)
    packed = gzip.compress(json.dumps(rows, indent=1).encode())
    p = tmp_path / "a.json.gz"
    p.write_bytes(packed[: len(packed) // 2])
    items = list(iter_file(p))
    good = ok(items)
    assert good == rows[:len(good)] and len(good) > 500
    assert len(bad(items)) == 1 and "gzip" in items[-1].error
    fake = tmp_path / "plain.jsonl.gz"
    fake.write_text('{"text": "not compressed"}\n')
    with pytest.raises(SftkitError, match="not a readable gzip file"):
        list(iter_file(fake))
    empty = tmp_path / "empty.jsonl.gz"
    empty.write_bytes(b"")
    assert list(iter_file(empty)) == []
    multi = tmp_path / "multi.jsonl.gz"
    multi.write_bytes(gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"a": 2}\n'))
    assert ok(iter_file(multi)) == [{"a": 1}, {"a": 2}]
