"""Re-chunking Arrow streams: batches of a fixed size whose boundaries fall on part boundaries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pandas as pd
import pyarrow as pa


def as_batches(item) -> list[pa.RecordBatch]:
    """A RecordBatch, Table or DataFrame as a list of RecordBatches."""
    if isinstance(item, pa.RecordBatch):
        return [item]
    if isinstance(item, pa.Table):
        return item.to_batches()
    if isinstance(item, pd.DataFrame):
        return pa.Table.from_pandas(item, preserve_index=False).to_batches()
    raise TypeError(f"expected pyarrow RecordBatch/Table or DataFrame, got {type(item).__name__}")


def numbered(items: Iterable) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(first_row, batch)`` pairs for a stream of batches/tables/frames, rows counted from 0."""
    offset = 0
    for item in items:
        for batch in as_batches(item):
            yield offset, batch
            offset += batch.num_rows


def rebatch(
    batches: Iterable[tuple[int, pa.RecordBatch]], size: int, cut: int | None = None
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Re-cut a stream of ``(first_row, batch)`` into batches of ``size`` rows that never cross
    a multiple of ``size`` or of ``cut`` (so part boundaries fall between batches).

    The stream must be contiguous, except that it may start at any row.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    start = None

    def next_boundary(row: int) -> int:
        b = (row // size + 1) * size
        if cut:
            b = min(b, (row // cut + 1) * cut)
        return b

    for first, batch in batches:
        if start is None:
            start = first
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows and start + pending_rows >= next_boundary(start):
            n = next_boundary(start) - start
            head, pending, pending_rows = _take(pending, n), _drop(pending, n), pending_rows - n
            yield start, head
            start += n
    if pending_rows:
        yield start, _take(pending, pending_rows)


def _take(batches: list[pa.RecordBatch], n: int) -> pa.RecordBatch:
    if batches[0].num_rows >= n:
        return batches[0].slice(0, n)
    out, got = [], 0
    for b in batches:
        piece = b.slice(0, min(b.num_rows, n - got))
        out.append(piece)
        got += piece.num_rows
        if got == n:
            break
    return pa.Table.from_batches(out).combine_chunks().to_batches()[0]


def _drop(batches: list[pa.RecordBatch], n: int) -> list[pa.RecordBatch]:
    out = []
    for b in batches:
        if n >= b.num_rows:
            n -= b.num_rows
            continue
        out.append(b.slice(n) if n else b)
        n = 0
    return out
