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
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import re
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftkit.errors import SftkitError
from sftkit.textutil import json_type

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")
MAX_RECORD_BYTES = 64 << 20  # default per-record size limit (one line, one array element)
MAX_DEPTH = 100  # records nested deeper than this many arrays/objects are rejected
_CHUNK = 1 << 20
_GZ_IN = 1 << 14  # compressed bytes per step: a damaged gzip stream loses at most this much before the damage
_SHOWN = 2000  # characters of an oversized or damaged region kept for the rejects file


@dataclass(slots=True)
class Item:
    """One record as read: where it came from, and the parsed object or why it could not be parsed."""

    source: str
    line: int | None  # 1-based line where the record starts (None for parquet)
    index: int  # 0-based position of the record in its file
    raw: Any = None
    error: str | None = None  # set when the record could not be parsed
    text: str | None = None  # the unparsed text, kept for the rejects file

    def where(self) -> str:
        """Human-readable location, e.g. ``data.jsonl:12 (index 11)``."""
        loc = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{loc} (index {self.index})"


def record_limit(value: int | None = None) -> int:
    """The per-record size limit in bytes: ``value``, else ``$SFTKIT_MAX_RECORD_BYTES``, else the default."""
    if value is None:
        env = os.environ.get("SFTKIT_MAX_RECORD_BYTES", "").strip()
        if not env:
            return MAX_RECORD_BYTES
        try:
            value = int(env)
        except ValueError:
            raise SftkitError(f"SFTKIT_MAX_RECORD_BYTES={env!r} is not a whole number of bytes") from None
    if value < 1:
        raise SftkitError(f"the record size limit must be at least 1 byte, not {value}")
    return value


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


class _StreamDamaged(Exception):
    """The compressed stream broke after some data was read; the message says where."""


class _Gunzip:
    """Decompress a gzip file in small steps, so that damage loses as little as possible before it."""

    def __init__(self, path: Path):
        self.fh = open(path, "rb")
        self.dec = zlib.decompressobj(wbits=31)
        self.read_in = self.written = 0
        self.error: zlib.error | None = None

    def read1(self, size: int) -> bytes:
        """Up to ``size`` uncompressed bytes; b"" at the end; raise :class:`_StreamDamaged` on damage."""
        try:
            return self._read1(size)
        except (zlib.error, EOFError) as e:
            if self.written == 0 and self.read_in <= _GZ_IN:
                raise SftkitError(f"{self.fh.name}: not a readable gzip file ({e})") from None
            if "check" in str(e):  # CRC or length at the end of a member: wrong data came out before it
                raise _StreamDamaged(f"gzip checksum mismatch ({e}): the file is damaged and records read from it "
                                     "may hold corrupt data") from None
            raise _StreamDamaged(f"gzip stream damaged near compressed byte {self.read_in} ({e}); "
                                 "the rest of the file could not be read") from None

    def _read1(self, size: int) -> bytes:
        if self.error:
            raise self.error
        while True:
            if self.dec.unconsumed_tail:
                data = self.dec.unconsumed_tail
            else:
                if self.dec.eof:  # a file may hold several gzip members one after another
                    data = self.dec.unused_data or self.fh.read(_GZ_IN)
                    if not data.strip(b"\0"):
                        return b""
                    self.dec = zlib.decompressobj(wbits=31)
                else:
                    data = self.fh.read(_GZ_IN)
                    if not data:
                        if not self.read_in:
                            return b""  # an empty file
                        raise EOFError("the file ends before the end of the compressed stream (truncated?)")
                self.read_in += len(data)
            saved = self.dec.copy()
            try:
                out = self.dec.decompress(data, size)
            except zlib.error as e:  # salvage the output before the damage, byte by byte, then fail next time
                out, self.error = self._salvage(saved, data), e
                if not out:
                    raise
            if out:
                self.written += len(out)
                return out

    @staticmethod
    def _salvage(dec, data: bytes) -> bytes:
        out = bytearray()
        for i in range(len(data)):
            try:
                out += dec.decompress(data[i:i + 1])
            except zlib.error:
                break
        return bytes(out)

    def close(self) -> None:
        self.fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_binary(path: Path):
    try:
        return _Gunzip(path) if path.name.lower().endswith(".gz") else open(path, "rb")
    except OSError as e:
        raise SftkitError(f"{path}: cannot open ({e.strerror or e})") from e


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


class _Lines:
    """Lines of a binary stream, split at LF, CRLF or a lone CR, each kept with its line break, in bounded memory.

    Iterating yields ``(line_number, bytes)``. A line longer than the limit, or a read that failed (damaged
    gzip), yields ``(line_number, None)`` instead, with the reason in :attr:`problem` (:attr:`damaged` is
    then True when nothing more follows). A leading UTF-8 BOM is dropped.
    """

    def __init__(self, fh, limit: int):
        self.fh, self.limit = fh, limit
        self.problem, self.damaged = "", False

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        read, limit = self.fh.read1, self.limit
        pending: list[bytes] = []  # pieces of a line that has not ended yet
        size, lineno, skipping, blank, hold, first = 0, 0, False, True, b"", True
        while True:
            try:
                chunk = read(_CHUNK)
            except _StreamDamaged as e:
                self.problem, self.damaged = str(e), True
                yield lineno + 1, None
                return
            eof = not chunk
            if first:
                first = False
                if chunk.startswith(codecs.BOM_UTF8):
                    chunk = chunk[3:]
            if hold:
                chunk, hold = hold + chunk, b""
            if not eof and chunk.endswith(b"\r"):  # a CR at the end may be the first half of a CRLF
                chunk, hold = chunk[:-1], b"\r"
            if not chunk:
                if not eof:
                    continue
                if skipping and not blank:
                    self.problem = f"record exceeds {limit} bytes"
                    yield lineno + 1, None
                elif size:
                    yield lineno + 1, b"".join(pending)
                return
            if pending or skipping:  # finish the line that began in an earlier chunk
                ends = [i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0]
                if not ends:
                    if skipping:
                        blank = blank and chunk.isspace()
                    else:
                        pending.append(chunk)
                        size += len(chunk)
                        if size > limit:  # too long: drop it and skip to its end
                            skipping, blank, pending, size = True, all(p.isspace() for p in pending), [], 0
                    continue
                end = min(ends)
                end += 2 if chunk[end:end + 2] == b"\r\n" else 1
                head, chunk = chunk[:end], chunk[end:]
                lineno += 1
                if skipping:
                    skipping = False
                    if not (blank and head.isspace()):
                        self.problem = f"record exceeds {limit} bytes"
                        yield lineno, None
                else:
                    pending.append(head)
                    line, pending, size = b"".join(pending), [], 0
                    if len(line) > limit and not line.isspace():
                        self.problem = f"record exceeds {limit} bytes"
                        yield lineno, None
                    else:
                        yield lineno, line
            parts = chunk.splitlines(True)
            if parts and parts[-1][-1:] not in (b"\n", b"\r"):  # the last line goes on in the next chunk
                tail = parts.pop()
                pending, size = [tail], len(tail)
            if len(chunk) > limit:
                for part in parts:
                    lineno += 1
                    if len(part) > limit and not part.isspace():
                        self.problem = f"record exceeds {limit} bytes"
                        yield lineno, None
                    else:
                        yield lineno, part
            else:
                yield from enumerate(parts, lineno + 1)
                lineno += len(parts)
            if size > limit:
                skipping, blank, pending, size = True, pending[0].isspace(), [], 0


class _Rejected(ValueError):
    """A JSON value that parses but must not be used (NaN, Infinity)."""


def _refuse_constant(name: str):
    raise _Rejected(f"{name} is not valid JSON (JSON numbers cannot be NaN or infinite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Rejected(f"number {text[:40]} is too large (it would become Infinity)")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _value_problem(raw: Any, data: bytes | bytearray, depth_known: bool = False) -> str | None:
    """Why a parsed value must be rejected although it parsed (too deep, lone surrogate), or None.

    Cheap for ordinary records: the walks run only when the raw text has many brackets or surrogate escapes.
    """
    if not depth_known and data.count(b"{") + data.count(b"[") > MAX_DEPTH and _too_deep(raw):
        return f"nesting deeper than {MAX_DEPTH} levels"
    if _SURROGATE_ESCAPE.search(data):
        m = _SURROGATE.search(json.dumps(raw, ensure_ascii=False))
        if m:
            return f"string holds a lone surrogate (\\u{ord(m.group()):04x})"
    return None


def _too_deep(raw: Any) -> bool:
    stack = [(raw, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = obj.values() if type(obj) is dict else obj if type(obj) is list else ()
        stack.extend((c, depth + 1) for c in children if type(c) in (dict, list))
    return False


def _parse_reason(e: Exception) -> str:
    """The reject reason for an exception raised while decoding one JSON value."""
    if isinstance(e, RecursionError):
        return f"nesting deeper than {MAX_DEPTH} levels"
    if isinstance(e, _Rejected):
        return str(e)
    if isinstance(e, json.JSONDecodeError):
        return f"malformed JSON: {e.msg.removesuffix(' at')}"  # "Invalid control character at"
    text = str(e).split(";")[0]  # int(): "Exceeds the limit (4300 digits) ...; use sys.set_int_max_str_digits()"
    return f"number too long: {text}" if "integer string conversion" in text else f"unreadable JSON value: {text}"


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

_WS = re.compile(rb"[ \t\r\n]*")
_SEGMENT = re.compile(rb'(?:[^\[\]{}"]++|"[^"\\\r\n]*+(?:\\[^\r\n][^"\\\r\n]*+)*+")*+')
_STR_BODY = re.compile(rb'[^"\\\r\n]*(?:\\[^\r\n][^"\\\r\n]*)*')  # a string's body, stopping at its end or a line break
_SCALAR = re.compile(rb'[^ \t\r\n,:\[\]{}"]*')
_GARBAGE = re.compile(rb"[\[\]{,]")
_FIRST_KEY = re.compile(rb'\{[ \t\r\n]*("(?:[^"\\\r\n]|\\[^\r\n]){1,200}")[ \t\r\n]*:')
_NEXT_KEY = re.compile(rb',[ \t\r\n]*' + _FIRST_KEY.pattern)
_KEY_GUESS = re.compile(rb'\{[ \t\r\n{\[]*"?([^"\\\r\n:,{}\[\]]{1,200})')
_QUOTE, _COMMA, _OPEN_OBJ, _OPEN_ARR, _CLOSE_ARR = 0x22, 0x2C, 0x7B, 0x5B, 0x5D


class _JsonBuffer:
    """A window on a byte stream: scans JSON values to their end in linear time, counts lines, drops what is read.

    Positions are indices into :attr:`buf`; bytes before :attr:`mark` may be dropped when more input is read.
    """

    def __init__(self, fh, limit: int):
        self.fh, self.limit = fh, limit
        self.buf = bytearray()
        self.pos = self.mark = self.scan = self.start = 0
        self.line, self.counted = 1, 0  # line number at position `counted`
        self.eof, self.damage, self.first, self.has_cr = False, "", True, False
        self.stack, self.extra, self.in_str, self.scalar, self.broken, self.deep = bytearray(), 0, False, False, False, False

    def more(self) -> bool:
        """Read the next chunk (dropping bytes before :attr:`mark`); False at the end of input."""
        if self.eof:
            return False
        cut = self.mark
        if cut > _CHUNK:
            self.line_at(cut)
            del self.buf[:cut]
            self.pos, self.mark, self.scan, self.start, self.counted = (
                self.pos - cut, 0, self.scan - cut, self.start - cut, 0)
        try:
            chunk = self.fh.read1(_CHUNK)
        except _StreamDamaged as e:
            self.damage, self.eof = str(e), True
            return False
        if self.first:
            self.first = False
            if chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[3:]
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        self.has_cr = self.has_cr or b"\r" in chunk
        return True

    def line_at(self, pos: int) -> int:
        """Line number of buffer position ``pos`` (LF, CRLF and a lone CR each end a line)."""
        a, b = min(pos, self.counted), max(pos, self.counted)
        buf = self.buf
        n = buf.count(b"\n", a, b)
        if self.has_cr:
            n += buf.count(b"\r", a, b) - buf.count(b"\r\n", a, b)
        self.line += n if pos >= self.counted else -n
        self.counted = pos
        return self.line

    def skip_ws(self) -> int:
        """Skip whitespace in bounded memory; return the next byte, or -1 at the end of input."""
        while True:
            self.pos = self.mark = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return -1

    def read_value(self) -> tuple[int, str]:
        """Scan the value starting at :attr:`pos` (kept in :attr:`start`); return its end and what cut it short.

        The second item is "" (complete), "oversize" (longer than the limit: skipped in bounded memory,
        its first bytes kept in :attr:`head`) or "eof" (input ended inside it).
        """
        self.start = self.mark = self.pos
        self.stack, self.extra, self.broken, self.deep = bytearray(), 0, False, False
        c = self.buf[self.pos]
        self.in_str, self.scalar = c == _QUOTE, c not in (_QUOTE, _OPEN_OBJ, _OPEN_ARR)
        if c in (_OPEN_OBJ, _OPEN_ARR):
            self.stack.append(c)
        self.scan = self.pos + (not self.scalar)
        oversize, self.head = False, b""
        while True:
            end = self._scan()
            if end >= 0 and not oversize and end - self.start > self.limit:
                self.head = bytes(self.buf[self.start:self.start + _SHOWN])
                return end, "oversize"
            if end >= 0:
                return end, "oversize" if oversize else ""
            if not oversize and self.scan - self.start > self.limit:
                oversize, self.head = True, bytes(self.buf[self.start:self.start + _SHOWN])
            if oversize:
                self.mark = self.scan
            if not self.more():
                if self.scalar:
                    return self.scan, "oversize" if oversize else ""
                return len(self.buf), "oversize" if oversize else "eof"

    def _scan(self) -> int:
        """Continue scanning at :attr:`scan`; return the value's end, or -1 when the buffer ran out first."""
        buf, stack = self.buf, self.stack
        n, i = len(buf), self.scan
        if self.scalar:
            i = _SCALAR.match(buf, i).end()
            self.scan = i
            return i if i < n else -1
        while True:
            if self.in_str:
                i = _STR_BODY.match(buf, i).end()
                if i >= n or (i == n - 1 and buf[i] == 0x5C):
                    self.scan = i
                    return -1
                self.in_str = False
                if buf[i] != _QUOTE:  # a line break (JSON strings hold none): the string is broken, go on after it
                    self.broken = True
                i += 1
                if not stack:
                    return i
                continue
            i = _SEGMENT.match(buf, i).end()  # text and whole strings up to the next bracket, in one step
            if i >= n:
                self.scan = n
                return -1
            c = buf[i]
            i += 1
            if c == _QUOTE:  # a string that does not end in the buffer, or is broken: follow it step by step
                self.in_str = True
            elif c == _OPEN_OBJ or c == _OPEN_ARR:
                if len(stack) < MAX_DEPTH:
                    stack.append(c)
                else:
                    self.extra += 1
                    self.deep = True
            elif self.extra:
                self.extra -= 1
            else:
                want = c - 2  # '}' -> '{', ']' -> '['
                if stack[-1] == want:
                    stack.pop()
                else:  # a mismatched bracket closes everything up to its opener (or the whole value)
                    self.broken = True
                    del stack[max(stack.rfind(want), 0):]
                if not stack:
                    return i

    def skip_garbage(self, in_array: bool, key: bytes | None) -> str:
        """Skip text that is no value; return its first characters. It ends at the next element that starts with
        ``key`` (the elements' first key), else at the next '{' (in an array also ',' or ']') outside brackets.
        Quotes are not tracked here: in damaged text they are as likely to open as to close."""
        self.start, i, depth, head = self.pos, self.pos, 0, b""
        key_at = re.compile(rb"\{[ \t\r\n]*" + re.escape(key) + rb"[ \t\r\n]*:").search if key else None
        k_from = self.pos + 1
        while True:
            buf = self.buf
            km = key_at(buf, k_from) if key_at else None
            end = km.start() if km else len(buf)
            while (m := _GARBAGE.search(buf, i, end)) is not None:
                i = m.start()
                c = buf[i]
                if depth == 0 and i > self.start and (c == _OPEN_OBJ or in_array and c in (_COMMA, _CLOSE_ARR)):
                    end = i
                    break
                depth += (c == _OPEN_ARR) - (c == _CLOSE_ARR and depth > 0)
                i += 1
            if end < len(buf):
                text = head if self.start < 0 else bytes(buf[self.start:end])
                self.pos = end
                return text[:_SHOWN].decode("utf-8", "replace")
            if not head:
                head = bytes(buf[self.start:self.start + _SHOWN])
            self.scan = self.mark = len(buf)
            more = self.more()
            i, k_from = self.scan, max(self.scan - 400, 0)  # a key pattern may straddle the chunks
            if not more:
                self.pos = len(self.buf)
                return (head if self.start < 0 else bytes(self.buf[self.start:]))[:_SHOWN].decode("utf-8", "replace")


def _parse_bytes(data: bytes | bytearray) -> tuple[Any, str, int]:
    """Decode one JSON value; return ``(value, "", 0)`` or ``(None, reason, byte offset of the problem)``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 (byte 0x{data[e.start]:02x})", e.start
    try:
        raw, end = _DECODER.raw_decode(text)  # the scanner found the value's exact extent
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except (ValueError, RecursionError) as e:
        pos = e.pos if isinstance(e, json.JSONDecodeError) else 0
        return None, _parse_reason(e), len(text[:pos].encode("utf-8", "surrogatepass"))
    problem = _value_problem(raw, data, depth_known=True)  # the scanner counted the depth
    return (None, problem, 0) if problem else (raw, "", 0)


def _key_of(record: dict | None) -> bytes | None:
    """The first key of a record as JSON text, e.g. ``b'"instruction"'``."""
    return json.dumps(next(iter(record)), ensure_ascii=False).encode() if record else None


def _next_element(data: bytes | bytearray, after: int, key: bytes | None, in_array: bool) -> tuple[int, int] | None:
    """In a damaged value, where the next element starts: the first ``{`` followed by the same first key as the
    elements around it, after a comma (in an array) or a line break, close to or after the error at ``after``.
    Returns (end of the damaged part, start of the next element) as offsets into ``data``, or None."""
    if not key:
        return None
    sep = rb"," if in_array else rb"[,\r\n}]"
    pattern = re.compile(sep + rb"[ \t\r\n]*(\{)[ \t\r\n]*" + re.escape(key) + rb"[ \t\r\n]*:")
    for m in pattern.finditer(data, 1):
        if m.start(1) >= after - len(key) - 16:
            return m.start() + (data[m.start()] == ord("}")), m.start(1)
    return None


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
        yield from _elements(s, source, first == _OPEN_ARR)


def _elements(s: _JsonBuffer, source: str, in_array: bool) -> Iterator[Item]:
    """The values of a JSON array (or of concatenated values), resynchronising after damage."""
    index, last_good, after_value, missing_comma, closed = 0, None, False, False, False
    while True:
        c = s.skip_ws()
        if c < 0:
            if s.damage:
                yield Item(source, s.line_at(s.pos), index, error=s.damage)
            elif in_array and not closed:
                yield Item(source, s.line_at(s.pos), index, error="file ends before the closing ']' (truncated?)")
            return
        if c == _COMMA and not closed:  # a separator; extra commas (",,", trailing) lose nothing
            s.pos += 1
            after_value = False
            continue
        line = s.line_at(s.pos)
        if closed:  # text after the array: report it, then read on (it may be a stray ']' inside the array)
            yield Item(source, line, index, error="unexpected text after the closing ']'",
                       text=bytes(s.buf[s.pos:s.pos + 200]).decode("utf-8", "replace"))
            index, closed = index + 1, False
        if in_array and c == _CLOSE_ARR:
            s.pos += 1
            closed, after_value = True, True
            continue
        if c == _COMMA:
            s.pos += 1
            after_value = False
            continue
        if after_value and in_array and c != _OPEN_OBJ or c in b"}]:":
            text = s.skip_garbage(in_array, _key_of(last_good))
            yield Item(source, line, index, error=f"malformed JSON: unexpected text at line {line}", text=text)
            index += 1
            continue
        missing_comma = after_value and in_array
        end, cut_short = s.read_value()
        if cut_short == "oversize":
            yield Item(source, line, index, error=f"record exceeds {s.limit} bytes",
                       text=s.head.decode("utf-8", "replace") + "…")
            s.pos, after_value, index = end, True, index + 1
            continue
        start = s.start
        data = s.buf[start:end]
        if s.deep:
            raw, reason, at = None, f"nesting deeper than {MAX_DEPTH} levels", 0
        else:
            raw, reason, at = _parse_bytes(data)
        if not reason:
            s.pos, after_value = end, True
            if type(raw) is dict and raw:
                last_good = raw  # its first key finds the next element after damage
            if type(raw) is dict and not in_array and index == 0 and (wrapped := _wrapped_records(raw)) is not None \
                    and s.skip_ws() < 0:
                for i, rec in enumerate(wrapped):  # {"data": [...]}: the records are the list's elements
                    yield Item(source, None, i, rec) if type(rec) is dict else Item(
                        source, None, i, raw=rec, error=f"element is a JSON {json_type(rec)}, not an object")
                return
            if missing_comma:
                yield Item(source, line, index, raw=raw, error="malformed JSON: missing ',' before this element")
            elif type(raw) is dict:
                yield Item(source, line, index, raw)
            else:
                yield Item(source, line, index, raw=raw,
                           error=f"{'array element' if in_array else 'value'} is a JSON {json_type(raw)}, not an object")
            index += 1
            continue
        # the damaged value may hold the start of the next element: find it by the elements' first key:
        # this one's, the last good one's, this one's if damaged, or the next one's
        split = None
        if reason.startswith("malformed") or s.broken or cut_short == "eof":  # not for a valid but refused value
            own, guessed, nxt = _FIRST_KEY.match(data), _KEY_GUESS.match(data), _NEXT_KEY.search(data, max(at, 1))
            keys = [own and own.group(1), _key_of(last_good), guessed and b'"%s"' % guessed.group(1)]
            if s.broken or cut_short == "eof":  # in balanced text the next "{key" is more likely a nested object
                keys.append(nxt and nxt.group(1))
            split = next(filter(None, (_next_element(data, at, k, in_array) for k in keys if k)), None)
        bad_end, s.pos, after_value = (start + split[0], start + split[1], False) if split else (end, end, True)
        where = f" at line {s.line_at(start + at)}" if at or reason.startswith("malformed") else ""
        text = bytes(s.buf[start:bad_end]).decode("utf-8", "replace")
        if cut_short == "eof" and not split:  # the input ended inside this value: it is the last item
            reason = f"{s.damage} (inside this value)" if s.damage else reason + where + "; the file ends inside this value"
            yield Item(source, line, index, error=reason, text=text)
            return
        yield Item(source, line, index, error=reason + where, text=text)
        index += 1


_WRAPPER_KEYS = ("data", "examples", "instances", "records", "rows", "items", "samples", "train")


_RECORD_KEYS = {"text", "messages", "conversations", "conversation", "instruction", "output", "prompt", "question",
                "answer", "completion", "turns", "chunks", "caption", "chosen", "rejected"}


def _wrapped_records(obj: dict) -> list | None:
    """The record list of a file holding one object that wraps its records, e.g. ``{"version": 1, "data": [...]}``
    (not when the object itself looks like a record)."""
    lists = [k for k in _WRAPPER_KEYS if isinstance(obj.get(k), list) and obj[k] and isinstance(obj[k][0], dict)]
    if len(lists) != 1 or _RECORD_KEYS & set(obj):
        return None
    return obj[lists[0]]


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
