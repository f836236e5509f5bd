"""Reading a ``.json`` file value by value, in linear time and bounded memory. :class:`_JsonBuffer` is a window
on the byte stream that scans a value to its end (tracking strings, escapes and bracket depth, capped at
:data:`MAX_DEPTH`) so that it is decoded once, and skips oversized values and whitespace runs without holding them;
:func:`_elements` yields the values of an array (or of concatenated values) as Items and, after damage, finds the
next element by the elements' first key, so one broken element, missing comma or stray text costs only itself
(also in minified one-line arrays). A ``{"data": [...]}`` wrapper is unwrapped here. This is the one part of the
readers that must understand JSON structure below whole lines, hence its own module.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

from sftkit.data import streams  # streams._CHUNK, read at call time: one read size for every reader
from sftkit.data.item import _SHOWN, Item
from sftkit.data.jsondecode import MAX_DEPTH, _parse_bytes
from sftkit.data.streams import _StreamDamaged
from sftkit.textutil import json_type

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
        if cut > streams._CHUNK:
            self.line_at(cut)
            del self.buf[:cut]
            self.pos, self.mark, self.scan, self.start, self.counted = (
                self.pos - cut, 0, self.scan - cut, self.start - cut, 0)
        try:
            chunk = self.fh.read1(streams._CHUNK)
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


def _elements(s: _JsonBuffer, source: str, in_array: bool, wrapper: bool = False) -> Iterator[Item]:
    """The values of a JSON array (or of concatenated values), resynchronising after damage.

    ``wrapper``: the array is the record list inside ``{"data": [...]}``; reading ends at its closing ``]``."""
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
            if wrapper:
                return  # what follows the record list is the wrapper's own keys
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


_WRAPPER_HEAD = re.compile(
    rb'\{(?P<keys>(?:\s*"[^"\\]{0,64}"\s*:\s*(?:"[^"\\]{0,256}"|-?[0-9][0-9.eE+-]{0,31}|true|false|null)\s*,){0,16})'
    rb'\s*"(?:' + b"|".join(k.encode() for k in _WRAPPER_KEYS) + rb')"\s*:\s*\[\s*\{')
_HEAD_KEY = re.compile(rb'"([^"\\]*)"\s*:')


def wrapper_start(s: _JsonBuffer) -> int | None:
    """Where the record list of ``{"version": 1, "data": [{...}, ...]}`` begins (just after its ``[``), when the
    file starts that way (the wrapper's scalar keys first, none of them a record key); else None. Reading the
    list element by element keeps one damaged record from costing the whole file."""
    while len(s.buf) - s.pos < 1 << 16 and s.more():
        pass
    m = _WRAPPER_HEAD.match(s.buf, s.pos)
    if m is None or {k.decode("utf-8", "replace") for k in _HEAD_KEY.findall(m.group("keys"))} & _RECORD_KEYS:
        return None
    return m.end() - 1  # at the first element's "{"


def _wrapped_records(obj: dict) -> list | None:
    """The record list of a file holding one object that wraps its records, e.g. ``{"version": 1, "data": [...]}``
    (not when the object itself looks like a record)."""
    lists = [k for k in _WRAPPER_KEYS if isinstance(obj.get(k), list) and obj[k] and isinstance(obj[k][0], dict)]
    if len(lists) != 1 or _RECORD_KEYS & set(obj):
        return None
    return obj[lists[0]]
