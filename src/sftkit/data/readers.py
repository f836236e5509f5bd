"""Stream records out of data files with their line numbers; never load a whole file into memory.

Supported: ``.jsonl`` / ``.ndjson``, ``.json`` (array, one object, or concatenated objects), ``.csv`` /
``.tsv``, ``.parquet``, ``.txt`` (one text record per line), each optionally gzip-compressed (``.gz``),
and folders of such files. UTF-8 with or without BOM; lines end in LF, CRLF or a lone CR (old Mac files).

A record that cannot be read is still yielded, as an :class:`Item` with ``error`` set, so the pipeline can put
it in the rejects file: nothing read is ever dropped silently. Damage costs only the records it touches:

- A record (a line, or an element of a ``.json`` array) larger than the size limit is rejected with
  "record exceeds N bytes" and skipped in bounded memory. The limit is :data:`MAX_RECORD_BYTES` (64 MiB),
  or ``$SFTKIT_MAX_RECORD_BYTES``, or the ``max_record_bytes`` argument. Whitespace runs are skipped in
  bounded memory too, and a ``.json`` element is located by a scanner first, then decoded once (linear time).
- In a ``.json`` array, an element that does not parse is rejected with its line and reading resumes at the
  next element: the scanner tracks strings, escapes and bracket depth, closes mismatched brackets, treats a raw
  line break inside a string as the end of a broken string, and after damage inside an element looks for the
  next element by its first key (``, {"instruction":``), so minified one-line arrays recover too. An element
  after a missing comma is rejected (with its parsed value); text between elements is rejected as such.
- Invalid UTF-8 costs the line or element holding it; NaN, Infinity, numbers too large for a float, integers
  of more than 4300 digits, nesting deeper than :data:`MAX_DEPTH` levels and strings holding a lone surrogate
  (``"\\ud800"``, which no UTF-8 file can hold) are rejected with a reason.
- A damaged gzip stream (truncated or corrupted) keeps every record before the damage and adds one reject
  naming the line where the stream broke. Corruption that inflates without error is only caught by the
  checksum at the end of the stream: that reject then says records read from the file may be corrupt.
- A named pipe, device or socket is refused with a :class:`SftkitError` (folders skip them).
- A ``{"data": [...]}`` wrapper is decoded as one value, so it must fit the size limit (its records have no
  line numbers). CSV cells may be as large as a record: :func:`csv.field_size_limit` is raised to the limit.

The work is split by concern: :mod:`sftkit.data.streams` (gzip in steps, bounded line reading, the size limit),
:mod:`sftkit.data.jsondecode` (strict decoding of one value), :mod:`sftkit.data.jsonscan` (the ``.json`` scanner
and its resynchronisation) and :mod:`sftkit.data.item` (:class:`Item`). This module is the public face: it finds
the files and holds one reader per format.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from sftkit.data.item import _SHOWN, Item
from sftkit.data.jsondecode import _DECODER, _SURROGATE_ESCAPE, MAX_DEPTH, _parse_reason, _value_problem
from sftkit.data.jsonscan import _OPEN_ARR, _elements, _JsonBuffer, wrapper_start
from sftkit.data.streams import MAX_RECORD_BYTES, _Lines, _open_binary, record_limit
from sftkit.errors import SftkitError
from sftkit.textutil import json_type

__all__ = ["MAX_DEPTH", "MAX_RECORD_BYTES", "SUFFIXES", "Item", "expand_paths", "iter_file", "iter_files",
           "record_limit"]

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def _require_regular(path: Path) -> None:
    """Refuse pipes, devices and sockets up front: reading one would block or never end."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise SftkitError(f"{path}: cannot open ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise SftkitError(f"{path}: is {kind}; data files must be regular files")


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Expand folders to their supported data files (sorted); raise for missing, unknown or special files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and _suffix(f) in SUFFIXES and f.name != "dataset_info.json"
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )  # is_file() is false for pipes, devices and sockets: a folder skips them
            if not found:
                raise SftkitError(f"{p}: folder holds no data files ({', '.join(SUFFIXES)}, optionally .gz)")
            out.extend(found)
        elif not p.exists():
            raise SftkitError(f"{p}: no such file or folder")
        elif _suffix(p) not in SUFFIXES:
            raise SftkitError(f"{p}: unknown file type {_suffix(p) or '(none)'!r}; expected one of {', '.join(SUFFIXES)}")
        else:
            _require_regular(p)
            out.append(p)
    return out


def iter_file(path: str | Path, max_record_bytes: int | None = None) -> Iterator[Item]:
    """Yield every record of one file, in order, as :class:`Item` objects.

    Args:
        path: a data file (see the module docstring for the formats).
        max_record_bytes: per-record size limit; default ``$SFTKIT_MAX_RECORD_BYTES`` or :data:`MAX_RECORD_BYTES`.

    Raises:
        SftkitError: the file is missing, of an unknown type, not a regular file, or unreadable as a whole.
    """
    path = Path(path)
    readers = {".jsonl": _iter_jsonl, ".ndjson": _iter_jsonl, ".json": _iter_json, ".csv": _iter_csv,
               ".tsv": _iter_csv, ".parquet": _iter_parquet, ".txt": _iter_txt}
    reader = readers.get(_suffix(path))
    if reader is None:
        raise SftkitError(f"{path}: unknown file type {_suffix(path)!r}")
    limit = record_limit(max_record_bytes)
    _require_regular(path)
    try:
        yield from reader(path, str(path), limit)
    except OSError as e:
        raise SftkitError(f"{path}: cannot read ({e.strerror or e})") from e


def iter_files(paths: list[str | Path], max_record_bytes: int | None = None) -> Iterator[Item]:
    """Yield the records of several files or folders in order."""
    for p in expand_paths(paths):
        yield from iter_file(p, max_record_bytes)


# ---------------------------------------------------------------------------------------------- line-based files


def _iter_jsonl(path: Path, source: str, limit: int) -> Iterator[Item]:
    index = 0
    decode, raw_decode = _DECODER.decode, _DECODER.raw_decode
    with _open_binary(path) as fh:
        lines = _Lines(fh, limit)
        for lineno, bline in lines:
            if not bline or bline.isspace():
                if bline is None:  # too long, or the stream broke
                    yield Item(source, lineno, index, error=lines.problem)
                    index += 1
                continue  # blank lines are not records
            try:
                line = bline.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Item(source, lineno, index, error=f"invalid UTF-8 at byte {e.start}",
                           text=bline.decode("utf-8", "replace").rstrip("\r\n"))
                index += 1
                continue
            try:
                try:
                    raw, end = raw_decode(line)  # faster than decode(): no whitespace regexes
                except ValueError:
                    raw, end = decode(line), len(line)  # leading whitespace, or the error with its message
                if end != len(line) and not line[end:].isspace():
                    decode(line)  # raises "Extra data"
            except (ValueError, RecursionError) as e:
                col = f" (column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
                yield Item(source, lineno, index, error=_parse_reason(e) + col, text=line.rstrip("\r\n"))
                index += 1
                continue
            # rare cases, tested cheaply on the raw line first: deep nesting, surrogate escapes
            if (bline.count(b"{") + bline.count(b"[") > MAX_DEPTH or _SURROGATE_ESCAPE.search(bline)) and (
                    problem := _value_problem(raw, bline)):
                yield Item(source, lineno, index, error=problem, text=line.rstrip("\r\n"))
            elif type(raw) is dict:
                yield Item(source, lineno, index, raw)
            else:
                yield Item(source, lineno, index, error=f"line is a JSON {json_type(raw)}, not an object", raw=raw)
            index += 1


def _iter_txt(path: Path, source: str, limit: int) -> Iterator[Item]:
    with _open_binary(path) as fh:
        index = 0
        lines = _Lines(fh, limit)
        for lineno, bline in lines:
            if not bline or bline.isspace():
                if bline is None:
                    yield Item(source, lineno, index, error=lines.problem)
                    index += 1
                continue
            try:
                yield Item(source, lineno, index, {"text": bline.decode("utf-8").rstrip("\r\n")})
            except UnicodeDecodeError as e:
                yield Item(source, lineno, index, error=f"invalid UTF-8 at byte {e.start}",
                           text=bline.decode("utf-8", "replace").rstrip("\r\n"))
            index += 1


class _CsvFeed:
    """Decoded lines for :mod:`csv`; notes invalid UTF-8, oversized lines and stream damage for the current row."""

    def __init__(self, lines: _Lines):
        self.lines, self.it = lines, iter(lines)
        self.line, self.problem = 0, None

    def __iter__(self):
        return self

    def __next__(self) -> str:
        self.line, data = next(self.it)
        if data is None:
            self.problem = self.problem or self.lines.problem
            return "\n"
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            self.problem = self.problem or f"invalid UTF-8 at line {self.line}, byte {e.start}"
            return data.decode("utf-8", "replace")


def _iter_csv(path: Path, source: str, limit: int) -> Iterator[Item]:
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)  # a cell may be as large as a record (the default is 128 KiB)
    with _open_binary(path) as fb:
        feed = _CsvFeed(_Lines(fb, limit))
        reader = csv.reader(feed, delimiter="\t" if _suffix(path) == ".tsv" else ",")
        try:
            header = next((row for row in reader if row), None)
        except csv.Error as e:
            raise SftkitError(f"{path}: cannot read the CSV header ({e})") from None
        if header is None:
            if feed.problem:
                raise SftkitError(f"{path}: cannot read the CSV header ({feed.problem})")
            return  # an empty file holds no records
        if feed.problem:
            raise SftkitError(f"{path}: cannot read the CSV header ({feed.problem})")
        index = 0
        while True:
            start = feed.line + 1
            try:
                row = next(reader)
            except StopIteration:
                if feed.problem:
                    yield Item(source, start, index, error=feed.problem)
                return
            except csv.Error as e:
                yield Item(source, start, index, error=f"malformed CSV: {e}")
                index, feed.problem = index + 1, None
                continue
            problem, feed.problem = feed.problem, None
            if problem:
                yield Item(source, start, index, error=problem, text=",".join(row)[:_SHOWN])
            elif not row:
                continue  # a blank line
            elif len(row) > len(header):
                yield Item(source, start, index, raw=dict(zip(header, row, strict=False)),
                           error=f"row has {len(row) - len(header)} more cells than the header")
            else:
                yield Item(source, start, index, dict(zip(header, row, strict=False)))
            index += 1


def _iter_parquet(path: Path, source: str, limit: int) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise SftkitError(f"{path}: not a readable parquet file ({e})") from e
    index = 0
    for batch in pf.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            yield Item(source, None, index, row)
            index += 1


# ---------------------------------------------------------------------------------------------- .json files


def _iter_json(path: Path, source: str, limit: int) -> Iterator[Item]:
    with _open_binary(path) as fh:
        s = _JsonBuffer(fh, limit)
        first = s.skip_ws()
        if first < 0:
            if s.damage:
                yield Item(source, s.line_at(s.pos), 0, error=s.damage)
            return  # an empty file holds no records
        if first != _OPEN_ARR and _looks_like_jsonl(path, limit):
            yield from _iter_jsonl(path, source, limit)  # JSON Lines saved as .json: one bad line costs one record
            return
        if first == _OPEN_ARR:
            s.pos += 1
        elif (start := wrapper_start(s)) is not None:  # {"data": [...]}: its records, one by one
            s.pos = start
            yield from _elements(s, source, True, wrapper=True)
            return
        yield from _elements(s, source, first == _OPEN_ARR)


def _looks_like_jsonl(path: Path, limit: int) -> bool:
    """True when the first two non-blank lines each hold a complete JSON object."""
    lines = []
    with _open_binary(path) as fh:
        try:
            for _, data in _Lines(fh, limit):
                if data is None:
                    return False
                if not data.isspace():
                    lines.append(data)
                if len(lines) == 2:
                    break
        except SftkitError:
            return False
    if len(lines) < 2:
        return False
    try:
        return all(type(_DECODER.decode(x.decode("utf-8"))) is dict for x in lines)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
