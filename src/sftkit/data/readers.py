"""Stream records out of data files with their line numbers; never load a whole file into memory.

Supported: ``.jsonl`` / ``.ndjson``, ``.json`` (array, one object, or concatenated objects), ``.csv`` /
``.tsv``, ``.parquet``, ``.txt`` (one text record per line), each optionally gzip-compressed (``.gz``),
and folders of such files. UTF-8 with or without BOM, LF or CRLF.

A record that cannot be parsed is still yielded, as an :class:`Item` with ``error`` set, so the
pipeline can put it in the rejects file: nothing read is ever dropped silently.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftkit.errors import SftkitError
from sftkit.textutil import json_type

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")
_CHUNK = 1 << 20
_JSON_WS = " \t\r\n"


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


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Expand folders to their supported data files (sorted); raise for missing or unknown files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and _suffix(f) in SUFFIXES and f.name != "dataset_info.json"
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not found:
                raise SftkitError(f"{p}: folder holds no data files ({', '.join(SUFFIXES)}, optionally .gz)")
            out.extend(found)
        elif not p.exists():
            raise SftkitError(f"{p}: no such file or folder")
        elif _suffix(p) not in SUFFIXES:
            raise SftkitError(f"{p}: unknown file type {_suffix(p) or '(none)'!r}; expected one of {', '.join(SUFFIXES)}")
        else:
            out.append(p)
    return out


def _open_binary(path: Path):
    try:
        return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    except OSError as e:
        raise SftkitError(f"{path}: cannot open ({e.strerror or e})") from e


def iter_file(path: str | Path) -> Iterator[Item]:
    """Yield every record of one file, in order, as :class:`Item` objects."""
    path = Path(path)
    readers = {".jsonl": _iter_jsonl, ".ndjson": _iter_jsonl, ".json": _iter_json, ".csv": _iter_csv,
               ".tsv": _iter_csv, ".parquet": _iter_parquet, ".txt": _iter_txt}
    reader = readers.get(_suffix(path))
    if reader is None:
        raise SftkitError(f"{path}: unknown file type {_suffix(path)!r}")
    try:
        yield from reader(path, str(path))
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise SftkitError(f"{path}: cannot read ({e})") from e


def iter_files(paths: list[str | Path]) -> Iterator[Item]:
    """Yield the records of several files or folders in order."""
    for p in expand_paths(paths):
        yield from iter_file(p)


def _iter_jsonl(path: Path, source: str) -> Iterator[Item]:
    index = 0
    loads = json.loads
    with _open_binary(path) as fh:
        for lineno, bline in enumerate(fh, 1):
            if lineno == 1 and bline.startswith(codecs.BOM_UTF8):
                bline = bline[3:]
            if bline.isspace():
                continue  # blank lines are not records
            try:
                line = bline.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Item(source, lineno, index, error=f"invalid UTF-8 at byte {e.start}",
                           text=bline.decode("utf-8", "replace").rstrip("\r\n"))
                index += 1
                continue
            try:
                raw = loads(line)
            except ValueError as e:
                yield Item(source, lineno, index, error=f"malformed JSON: {e.msg} (column {e.colno})",
                           text=line.rstrip("\r\n"))
            else:
                if type(raw) is dict:
                    yield Item(source, lineno, index, raw)
                else:
                    yield Item(source, lineno, index, error=f"line is a JSON {json_type(raw)}, not an object",
                               raw=raw)
            index += 1


class _JsonStream:
    """Incremental reader of JSON values from a byte stream, tracking line numbers."""

    def __init__(self, fh, source: str):
        self.fh, self.source = fh, source
        self.dec = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf, self.pos, self.line, self._counted, self.eof = "", 0, 1, 0, False
        self.raw_decode = json.JSONDecoder().raw_decode

    def more(self) -> bool:
        """Append the next chunk to the buffer; False at end of file."""
        if self.eof:
            return False
        if self.pos > _CHUNK:  # drop consumed text so memory stays flat
            self.line_at(self.pos)
            self.buf, self._counted, self.pos = self.buf[self.pos:], 0, 0
        chunk = self.fh.read(_CHUNK)
        try:
            self.buf += self.dec.decode(chunk, final=not chunk)
        except UnicodeDecodeError as e:
            raise SftkitError(f"{self.source}: invalid UTF-8 near line {self.line_at(len(self.buf))} ({e.reason})") from e
        self.eof = not chunk
        return True

    def line_at(self, pos: int) -> int:
        """Line number of buffer position ``pos`` (positions must not go backwards)."""
        if pos > self._counted:
            self.line += self.buf.count("\n", self._counted, pos)
            self._counted = pos
        return self.line

    def skip_ws(self) -> str:
        """Skip whitespace; return the next character ('' at end of file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _JSON_WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def value(self) -> Any:
        """Decode the value at the current position, reading more input while it is incomplete."""
        while True:
            try:
                val, end = self.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                incomplete = e.pos >= len(self.buf) - 1 or e.msg.startswith("Unterminated string")
                if incomplete and self.more():
                    continue
                raise
            if end >= len(self.buf) and self.more():
                continue  # a number may continue in the next chunk
            self.pos = end
            return val

    def column(self) -> int | None:
        """Column of the current position when only whitespace precedes it on its line, else None."""
        start = self.buf.rfind("\n", 0, self.pos) + 1
        return self.pos - start if not self.buf[start:self.pos].strip() else None

    def find_element(self, indent: int) -> int | None:
        """Position of the next ``{`` that starts a line at ``indent`` columns (the next array element)."""
        pattern = re.compile(rf"\n[ \t]{{{indent}}}\{{")
        offset = 1
        while True:
            m = pattern.search(self.buf, self.pos + offset)
            if m:
                return m.end() - 1
            offset = max(1, len(self.buf) - self.pos - indent - 2)
            if not self.more():
                return None


def _iter_json(path: Path, source: str) -> Iterator[Item]:
    with _open_binary(path) as fh:
        s = _JsonStream(fh, source)
        first = s.skip_ws()
        if first == "":
            return  # an empty file holds no records
        in_array = first == "["
        if in_array:
            s.pos += 1
        elif _looks_like_jsonl(path):
            yield from _iter_jsonl(path, source)  # JSON Lines saved as .json: read by line, so one bad line costs one record
            return
        index, indent = 0, None
        while True:
            ch = s.skip_ws()
            if in_array and ch == "]":
                s.pos += 1
                if s.skip_ws() != "":
                    yield Item(source, s.line_at(s.pos), index, error="unexpected text after the closing ']'")
                return
            if ch == "":
                if in_array:
                    yield Item(source, s.line_at(s.pos), index, error="file ends before the closing ']' (truncated?)")
                return
            line = s.line_at(s.pos)
            if in_array and index == 0:
                indent = s.column()  # pretty-printed arrays: where elements start, to resynchronise after an error
            try:
                raw = s.value()
            except json.JSONDecodeError as e:
                where = f"malformed JSON: {e.msg} at line {s.line_at(max(e.pos, s.pos))}"
                nxt = s.find_element(indent) if in_array and indent is not None else None
                if nxt is None:
                    yield Item(source, line, index, error=f"{where}; the rest of the file could not be read",
                               text=s.buf[s.pos:s.pos + 2000])
                    return
                yield Item(source, line, index, error=f"{where}; skipped to the next element",
                           text=s.buf[s.pos:nxt].rstrip(" \t\r\n,")[:2000])
                index += 1
                s.pos = nxt
                continue
            if type(raw) is dict and not in_array and index == 0 and (wrapped := _wrapped_records(raw)) is not None \
                    and s.skip_ws() == "":
                for i, rec in enumerate(wrapped):  # {"data": [...]}: the records are the list's elements
                    yield Item(source, None, i, rec) if type(rec) is dict else Item(
                        source, None, i, raw=rec, error=f"element is a JSON {json_type(rec)}, not an object")
                return
            if type(raw) is dict:
                yield Item(source, line, index, raw)
            else:
                yield Item(source, line, index, raw=raw,
                           error=f"{'array element' if in_array else 'value'} is a JSON {json_type(raw)}, not an object")
            index += 1
            if in_array:
                ch = s.skip_ws()
                if ch == ",":
                    s.pos += 1
                elif ch != "]":
                    yield Item(source, s.line_at(s.pos), index,
                               error=f"malformed JSON: expected ',' or ']' but found {ch!r}; "
                               "the rest of the file could not be read", text=s.buf[s.pos:s.pos + 200])
                    return


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


def _looks_like_jsonl(path: Path) -> bool:
    """True when the first two non-blank lines each hold a complete JSON object."""
    with _open_binary(path) as fh:
        lines = []
        for raw in fh:
            if raw.strip():
                lines.append(raw)
            if len(lines) == 2:
                break
    if len(lines) < 2:
        return False
    try:
        return all(isinstance(json.loads(x.decode("utf-8-sig")), dict) for x in lines)
    except (ValueError, UnicodeDecodeError):
        return False


def _iter_csv(path: Path, source: str) -> Iterator[Item]:
    with _open_binary(path) as fb:
        text = codecs.getreader("utf-8-sig")(fb)
        reader = csv.DictReader(text, delimiter="\t" if _suffix(path) == ".tsv" else ",")
        try:
            if not reader.fieldnames:
                return  # an empty file holds no records
        except (UnicodeDecodeError, csv.Error) as e:
            raise SftkitError(f"{path}: cannot read the CSV header ({e})") from None
        index = 0
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as e:
                yield Item(source, line, index, error=f"invalid UTF-8 ({e.reason}); the rest of the file could not be read")
                return
            except csv.Error as e:
                yield Item(source, line, index, error=f"malformed CSV: {e}")
                index += 1
                continue
            if None in row:  # more cells than header columns
                extra = row.pop(None)
                yield Item(source, line, index, raw=row, error=f"row has {len(extra)} more cells than the header")
            else:
                yield Item(source, line, index, {k: v for k, v in row.items() if v is not None})
            index += 1


def _iter_parquet(path: Path, source: str) -> Iterator[Item]:
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


def _iter_txt(path: Path, source: str) -> Iterator[Item]:
    with _open_binary(path) as fh:
        index = 0
        for lineno, bline in enumerate(fh, 1):
            if lineno == 1 and bline.startswith(codecs.BOM_UTF8):
                bline = bline[3:]
            if not bline.strip():
                continue
            try:
                yield Item(source, lineno, index, {"text": bline.decode("utf-8").rstrip("\r\n")})
            except UnicodeDecodeError as e:
                yield Item(source, lineno, index, error=f"invalid UTF-8 at byte {e.start}",
                           text=bline.decode("utf-8", "replace"))
            index += 1
