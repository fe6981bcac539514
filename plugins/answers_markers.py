"""Answer markers: the phrases after which a rationale states its final answer.

Every task reads the answer from the text after the *last* marker, because
self-generated rationales often restate intermediate results or run on into
a new question; the last marker is the one the model concluded with. The same
markers are spelt twice, once for Python (per row) and once as an RE2
pattern for pyarrow's kernels (whole batches); tests hold the two to the same
results on real and on adversarial text.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

# `####` (GSM8K references), `The answer is` / `Therefore, the answer is` (few-shot
# and zero-shot CoT), `-->` (Fine-tune-CoT's student format), `A:` at a line start
# (GPT-3 GSM8K solutions, few-shot continuations).
LITERAL_MARKERS = ("####", "The answer is", "the answer is", "-->")
LINE_MARKER = "A:"

# The same markers spelt backwards, as an RE2 pattern: the first match in the
# reversed text is the last marker of the text. Searching from the end is what
# makes the batch path fast: RE2 stops at the answer instead of carrying
# submatches through the whole rationale.
REVERSED_MARKER_PATTERN = r"####|si rewsna eh[Tt]|>--|:A(?m:$)"


def after_last_marker(text: str) -> str | None:
    """The text after the last marker, or None when the text has no marker.

    Markers cannot start at the same position, so "last" is unambiguous.
    """
    start, end = -1, -1
    for marker in LITERAL_MARKERS:
        found = text.rfind(marker)
        if found > start:
            start, end = found, found + len(marker)
    found = text.rfind("\n" + LINE_MARKER)
    line_start = found + 1 if found >= 0 else (0 if text.startswith(LINE_MARKER) else -1)
    if line_start > start:
        start, end = line_start, line_start + len(LINE_MARKER)
    return None if start < 0 else text[end:]


def after_last_marker_batch(texts: pa.Array, reversed_markers: str = REVERSED_MARKER_PATTERN) -> pa.Array:
    """:func:`after_last_marker` over a string array: binary tails, null where there is no marker.

    The search runs on the reversed bytes (``reversed_markers`` is spelt
    backwards to match); UTF-8 never puts an ASCII byte inside a multi-byte
    character, so ASCII markers are found exactly, and reversing a tail back
    restores its bytes.
    """
    parts = pc.split_pattern_regex(pc.binary_reverse(as_binary(texts)), reversed_markers, max_splits=1)
    marked = pc.equal(pc.list_value_length(parts), 2)
    return pc.binary_reverse(pc.if_else(marked, pc.list_element(parts, 0), None))


def as_binary(texts: pa.Array) -> pa.Array:
    """The same bytes typed as binary (no copy), so byte-wise kernels accept them."""
    return texts.cast(pa.binary())
