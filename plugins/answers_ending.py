"""The usual ending of a rationale, read straight from its bytes: the last marker, then one number.

Most rationales end like ``... A: 18``, ``The answer is 18.`` or ``#### 18``:
a marker, blanks, one number token, perhaps a full stop, blanks. For those
texts the rule of ``answers_numbers`` (the first token after the last marker)
gives that token, and finding it needs no regex: this module walks back from
the end of every text of an Arrow string array at once (numpy over the
array's bytes, one step per byte of the ending, all texts together), checks
the marker before the blanks, and slices the token out. Texts of any other
shape (no marker before the number, ``$`` or ``,`` or words in the tail, a
ending longer than ``WINDOW`` bytes, a null) are not matched; the general
rule reads them. Tests hold the two to the same answers on real and on
adversarial text.

Why the walk finds exactly what the rule finds: past the token there are only
blanks and at most one ``.``, and before it only blanks back to the marker, so
no marker starts later (every marker holds a byte that is neither a blank
nor part of a number), and the first token of the tail is the whole run: its
``-`` follows a blank or the start of the tail, so it is a sign.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curator_plugins.answers_markers import LINE_MARKER, LITERAL_MARKERS

WINDOW = 16
"""Bytes read from the end of each text: longer endings (rare) are left to the general rule."""

_NEWLINE, _DOT, _MINUS = ord("\n"), ord("."), ord("-")


def ending_numbers(texts: pa.Array) -> tuple[np.ndarray, pa.StringArray]:
    """Which texts end with a marker, blanks and one number token; and those tokens, in order.

    ``texts`` is a ``string`` array (any other type matches nothing). The
    tokens are spelt as in the text (``-07.50``); the caller canonicalises.
    """
    n = len(texts)
    found = np.zeros(n, dtype=bool)
    if n == 0 or texts.type != pa.string() or texts.buffers()[2] is None:
        return found, pa.array([], pa.string())
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32, count=n + 1, offset=texts.offset * 4)
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)
    end, first = offsets[1:].astype(np.int64), offsets[:-1].astype(np.int64)
    rows = np.flatnonzero(end - first >= 2)  # a marker's last byte and a digit at least
    if texts.null_count:
        rows = rows[np.asarray(texts.is_valid())[rows]]
    end, first = end[rows], first[rows]
    # back[k, r]: byte k counted back from the end of row r (0: its last byte), 0 before the row's start.
    # Rows run along the fast axis, so each step below is one vectorised operation over all rows; the
    # places below are such k: the token's last byte, the byte before its digits, the marker's last byte.
    back = np.ascontiguousarray(_last_bytes(data, end)[:, ::-1].T)
    back[_places >= end - first] = 0
    blank = (back == 32) | (back == 10) | (back == 9) | (back == 13)
    digit = (back - np.uint8(48)) < 10
    column = np.arange(len(rows))

    def byte_at(place: np.ndarray) -> np.ndarray:
        return back[np.minimum(place, WINDOW - 1), column]

    token_last = _first(~blank, 0)
    token_last += byte_at(token_last) == _DOT  # a full stop after the number
    before_digits = _first(~(digit | (back == _DOT)), token_last)
    dots = ((_places >= token_last) & (_places < before_digits) & (back == _DOT)).sum(axis=0)
    before_token = before_digits + (byte_at(before_digits) == _MINUS)
    marker_last = _first(~blank, before_token)
    ok = ((token_last < before_digits) & (before_digits < WINDOW) & (marker_last < WINDOW) & (dots <= 1)
          & digit[np.minimum(token_last, WINDOW - 1), column])
    ok[ok] = _marker_ends_at(data, first[ok], end[ok] - 1 - marker_last[ok])
    found[rows[ok]] = True
    return found, _slices(data, end[ok] - before_token[ok], end[ok] - token_last[ok])


_places = np.arange(WINDOW)[:, None]


def _last_bytes(data: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``data[end - WINDOW : end]`` for each end, as rows (zeros before the buffer's start)."""
    def windows(buffer: np.ndarray) -> np.ndarray:
        return np.lib.stride_tricks.as_strided(buffer, (len(buffer) - WINDOW + 1, WINDOW), (1, 1), writeable=False)

    near = end < WINDOW
    if len(end) and not near.any():
        return windows(data)[end - WINDOW]
    head = np.zeros(2 * WINDOW, dtype=np.uint8)
    head[WINDOW : WINDOW + min(WINDOW, len(data))] = data[:WINDOW]
    out = np.empty((len(end), WINDOW), dtype=np.uint8)
    out[near] = windows(head)[end[near]]
    if len(data) >= WINDOW:
        out[~near] = windows(data)[end[~near] - WINDOW]
    return out


_WEIGHTS = (WINDOW - np.arange(WINDOW, dtype=np.uint8))[:, None]
"""Position k weighs ``WINDOW - k``: the heaviest place that holds is the first."""


def _first(where: np.ndarray, start: np.ndarray | int) -> np.ndarray:
    """Per row (column), the first position at or after ``start`` where ``where`` holds; ``WINDOW`` where none does."""
    # A maximum down the columns runs over all rows at once (an argmax down them would copy and go row by row).
    heaviest = (where & (_places >= start)) * _WEIGHTS
    return WINDOW - np.max(heaviest, axis=0).astype(np.int64)


def _marker_ends_at(data: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Whether a marker (a line marker at a line start) ends at byte ``last`` of each row."""
    found = np.zeros(len(last), dtype=bool)
    final = data[last]
    for marker, at_line_start in [*((m, False) for m in LITERAL_MARKERS), (LINE_MARKER, True)]:
        spelt = np.frombuffer(marker.encode(), dtype=np.uint8)
        begin = last - len(spelt) + 1
        fits = np.flatnonzero((final == spelt[-1]) & ~found & (begin >= first))
        same = np.all(data[begin[fits, None] + np.arange(len(spelt) - 1)] == spelt[:-1], axis=1)
        fits = fits[same]
        if at_line_start:
            at_first = begin[fits] == first[fits]
            after_newline = data[np.maximum(begin[fits] - 1, 0)] == _NEWLINE
            fits = fits[at_first | after_newline]
        found[fits] = True
    return found


def _slices(data: np.ndarray, begin: np.ndarray, end: np.ndarray) -> pa.StringArray:
    """``data[begin[i]:end[i]]`` for each i, as a string array (the bytes are ASCII)."""
    lengths = end - begin
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    index = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(begin - offsets[:-1], lengths)
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data[index].tobytes()))
