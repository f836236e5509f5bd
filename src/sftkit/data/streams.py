"""Bytes in, lines out, in bounded memory, for every line-based reader. :class:`_Gunzip` decompresses a ``.gz``
file in small steps, so that a truncated or corrupted stream keeps everything before the damage and reports where
it broke (:class:`_StreamDamaged`) instead of losing the whole file; :class:`_Lines` splits a binary stream at LF,
CRLF or a lone CR in linear time, never holding more than one record's worth of a line, and turns an over-long
line into a reject instead of a memory blow-up; :func:`record_limit` resolves that per-record size limit. These are
kept apart from the format readers because the JSON Lines, text, CSV and ``.json`` readers all read through them.
:data:`_CHUNK` is the read size of every reader, including the ``.json`` scanner (tests shrink it to cut lines and
values at chunk boundaries).
"""

from __future__ import annotations

import codecs
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from sftkit.errors import SftkitError

MAX_RECORD_BYTES = 64 << 20  # default per-record size limit (one line, one array element)
_CHUNK = 1 << 20
_GZ_IN = 1 << 14  # compressed bytes per step: a damaged gzip stream loses at most this much before the damage


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
