"""A segment's rows, gathered column-wise on the training thread and converted off it.

The training thread appends to typed ``array.array`` columns (about 30 ns an append, no
per-row objects). The writer thread turns them into Arrow record batches with whole-array
operations (numpy on the arrays' buffers, ``pa.Array.from_buffers``), so its cost per flush
does not grow with Python work per row and it holds the GIL only briefly.

No ``pa.array(...)`` call anywhere: with pandas installed, pyarrow imports pandas at the first
``pa.array`` of a process (hundreds of milliseconds holding the GIL, and an outright failure
during interpreter shutdown). Buffers are built here instead.

A row's value goes to one of three stores chosen by its type, and the low two bits of its key
say which (the rest of the key is the name's id in the run's :class:`NameTable`):
``0`` a float (``*_f``), ``1`` an int that fits int64 (``*_i``), ``2`` anything else the
record API stores (``*_o``: bool, str, :class:`~florsql.store.segments.Tagged`, big ints),
``3`` null.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from florsql.store.segments import Tagged, split_value

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FLOAT, INT, OTHER, NULL = 0, 1, 2, 3
_VTYPES = ("float", "int", "null", "bool", "str", "json", "repr")
_VTYPE_INDEX = {v: i for i, v in enumerate(_VTYPES)}


class NameTable:
    """The run's log and loop names, each with a small integer id (shared by its batches)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self._encoded: list[bytes] | None = None  # the names as UTF-8, built by to_table

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (to another process): the cache stays behind.
        return {"names": list(self.names), "ids": dict(self.ids), "_encoded": None}

    def key(self, name: str) -> int:
        """``name``'s id shifted past the two value-store bits."""
        nid = self.ids.get(name)
        if nid is None:
            nid = self.ids[name] = len(self.names)
            self.names.append(name)
        return nid << 2

    def encoded(self) -> list[bytes]:
        """The names as UTF-8 (rebuilt only when names were added)."""
        count = len(self.names)
        if self._encoded is None or len(self._encoded) != count:
            self._encoded = [n.encode("utf-8", "backslashreplace") for n in self.names[:count]]
        return self._encoded


class Columns:
    """Rows of one flush: loop iterations (one row each), log values, and rare extras."""

    def __init__(
        self, names: NameTable, first_seq: int = 0, clock_offset: float | None = None
    ) -> None:
        self.names = names
        self.first_seq = first_seq
        self.log_ctx = array("q")
        self.log_key = array("q")
        self.log_f = array("d")
        self.log_i = array("q")
        self.log_o: list[Any] = []
        self.loop_ctx = array("q")
        self.loop_parent = array("q")
        self.loop_key = array("q")
        self.loop_iter = array("q")
        self.loop_t = array("d")  # time.perf_counter() at the iteration's start
        #: Added to ``loop_t`` for wall-clock seconds since the epoch: sampled when the rows
        #: start (every flush), so perf_counter's drift from the wall clock never accumulates.
        #: 0.0 where the caller appends wall-clock times already.
        self.clock_offset = (
            time.time() - time.perf_counter() if clock_offset is None else clock_offset
        )
        self.loop_s = array("d")  # NaN until the iteration ends
        self.loop_f = array("d")
        self.loop_i = array("q")
        self.loop_o: list[Any] = []
        #: (ctx, seconds) of iterations that ended after their loop row was handed off.
        self.ends: list[tuple[int, float]] = []
        #: (ctx, name, value) of replayed values compared with the records (replay only).
        self.checks: list[tuple[int, str, Any]] = []
        #: the writer's: where the rows it wrote up to a mark end (:meth:`piece`); None once
        #: the batch, handed over, is written whole
        self.written: Offsets | None = NO_ROWS

    def __bool__(self) -> bool:
        return bool(self.log_key or self.loop_s or self.ends or self.checks)

    @property
    def log_count(self) -> int:
        return len(self.log_key)

    # -- the training thread -------------------------------------------------------------------
    def log(self, ctx: int, key: int, value: Any) -> None:
        """Append a log row; ``value`` is already in a storable form."""
        t = type(value)
        if t is float:
            self.log_f.append(value)
        elif t is int:
            try:
                self.log_i.append(value)
                key |= INT
            except OverflowError:
                self.log_o.append(value)
                key |= OTHER
        elif value is None:
            key |= NULL
        else:
            self.log_o.append(value)
            key |= OTHER
        self.log_ctx.append(ctx)
        self.log_key.append(key)

    def loop(self, ctx: int, parent: int, key: int, iteration: int, item: Any, t: float) -> int:
        """Append an iteration's row (its item kept where it is a scalar); returns the row.
        ``t`` is the iteration's start as ``time.perf_counter()`` (see ``clock_offset``)."""
        row = len(self.loop_ctx)
        kind = type(item)
        if kind is int:
            try:
                self.loop_i.append(item)
                key |= INT
            except OverflowError:
                self.loop_o.append(item)
                key |= OTHER
        elif kind is float:
            self.loop_f.append(item)
        elif kind is str or kind is bool:
            self.loop_o.append(item)
            key |= OTHER
        else:
            value = loop_scalar(item)
            if value is not None:
                return self.loop(ctx, parent, key, iteration, value, t)
            key |= NULL
        self.loop_ctx.append(ctx)
        self.loop_parent.append(parent)
        self.loop_key.append(key)
        self.loop_iter.append(iteration)
        self.loop_t.append(t)
        self.loop_s.append(math.nan)
        return row

    def loop_span(
        self,
        ctxs: Sequence[int],
        parent: int,
        key: int,
        first: int,
        items: Sequence[Any] | None,
        t: Sequence[float],
        seconds: Sequence[float],
    ) -> None:
        """Append the rows of iterations ``first``, ``first + 1``, ... of one loop run at once:
        ``items`` their items (a ``range``, a list with None where an item is no scalar, or None
        for no scalar item at all), ``t`` their starts (``time.perf_counter()``) and ``seconds``
        their durations (NaN where not known yet)."""
        n = len(ctxs)
        if type(items) is range and n and _fits_int64(items):
            self.loop_i.extend(items)
            keys = [key | INT] * n
        elif items is None:
            keys = [key | NULL] * n
        else:  # items of several kinds: a row at a time
            for j in range(n):
                row = self.loop(ctxs[j], parent, key, first + j, items[j], t[j])
                self.loop_s[row] = seconds[j]
            return
        self.loop_ctx.extend(ctxs)
        self.loop_parent.extend([parent] * n)
        self.loop_key.extend(keys)
        self.loop_iter.extend(range(first, first + n))
        self.loop_t.extend(t)
        self.loop_s.extend(seconds)  # last: a row is whole once it has this column

    # -- the writer thread ---------------------------------------------------------------------
    def piece(self, start: Offsets, stop: Sequence[int] | None = None) -> tuple[Columns, Offsets]:
        """The rows from ``start`` (what :meth:`piece` returned last, ``NO_ROWS`` at first) to
        ``stop`` (the lengths of ``log_key``, ``loop_s``, ``ends`` and ``checks`` at a moment
        every row before it was whole; None: to the end), as a batch of their own, and where
        they end. Read while the training thread appends past ``stop``: rows before it never
        change once an outermost iteration has ended (:meth:`Writer.mark`)."""
        log0, f0, i0, o0, loop0, lf0, li0, lo0, ends0, checks0 = start
        if stop is None:
            stop = (len(self.log_key), len(self.loop_s), len(self.ends), len(self.checks))
        log1, loop1, ends1, checks1 = stop
        out = Columns(self.names, self.first_seq + log0, self.clock_offset)
        out.log_key = self.log_key[log0:log1]
        out.log_ctx = self.log_ctx[log0:log1]
        f1, i1, o1 = _stores(out.log_key, f0, i0, o0)
        out.log_f, out.log_i, out.log_o = self.log_f[f0:f1], self.log_i[i0:i1], self.log_o[o0:o1]
        out.loop_key = self.loop_key[loop0:loop1]
        for name in ("loop_ctx", "loop_parent", "loop_iter", "loop_t", "loop_s"):
            setattr(out, name, getattr(self, name)[loop0:loop1])
        lf1, li1, lo1 = _stores(out.loop_key, lf0, li0, lo0)
        out.loop_f, out.loop_i = self.loop_f[lf0:lf1], self.loop_i[li0:li1]
        out.loop_o = self.loop_o[lo0:lo1]
        out.ends, out.checks = self.ends[ends0:ends1], self.checks[checks0:checks1]
        return out, (log1, f1, i1, o1, loop1, lf1, li1, lo1, ends1, checks1)

    def to_table(self) -> pa.Table:
        """The rows as one Arrow table in :func:`~florsql.store.segments.schema`."""
        import pyarrow as pa

        from florsql.store.segments import schema

        sch = schema()
        names = self.names.encoded()
        batches = []
        if self.loop_ctx:
            batches.append(self._loop_batch(sch, names))
        if self.ends:
            batches.append(self._end_batch(sch))
        if self.log_ctx:
            batches.append(self._log_batch(sch, names))
        if self.checks:
            batches.append(self._check_batch(sch))
        return pa.Table.from_batches(batches, schema=sch)

    def _loop_batch(self, sch: pa.Schema, names: list[bytes]) -> pa.RecordBatch:
        import numpy as np

        # A row is whole once its last column (loop_s) has it: a flush from a signal handler
        # can land between two appends of one row, whose other columns are then one longer.
        n = len(self.loop_s)
        keys = _ints(self.loop_key, n)
        vt, vi, vf, vs = _values(keys, self.loop_f, self.loop_i, self.loop_o)
        secs = np.frombuffer(self.loop_s, dtype=np.float64)
        return _batch(
            sch,
            n,
            kind=repeat_string("loop", n),
            ctx=_prim(_ints(self.loop_ctx, n)),
            parent=_prim(_ints(self.loop_parent, n)),
            name=gather_strings(names, keys >> 2),
            iteration=_prim(_ints(self.loop_iter, n)),
            vtype=vt,
            v_int=vi,
            v_float=vf,
            v_str=vs,
            t=_prim(np.frombuffer(self.loop_t, dtype=np.float64)[:n] + self.clock_offset),
            seconds=_prim(secs, ~np.isnan(secs)),
        )

    def _log_batch(self, sch: pa.Schema, names: list[bytes]) -> pa.RecordBatch:
        import numpy as np

        n = len(self.log_key)  # the last column a log row is appended to (see _loop_batch)
        keys = _ints(self.log_key, n)
        vt, vi, vf, vs = _values(keys, self.log_f, self.log_i, self.log_o)
        return _batch(
            sch,
            n,
            kind=repeat_string("log", n),
            seq=_prim(np.arange(self.first_seq, self.first_seq + n, dtype=np.int64)),
            ctx=_prim(_ints(self.log_ctx, n)),
            name=gather_strings(names, keys >> 2),
            vtype=vt,
            v_int=vi,
            v_float=vf,
            v_str=vs,
        )

    def _end_batch(self, sch: pa.Schema) -> pa.RecordBatch:
        import numpy as np

        n = len(self.ends)
        return _batch(
            sch,
            n,
            kind=repeat_string("end", n),
            ctx=_prim(np.array([c for c, _ in self.ends], dtype=np.int64)),
            vtype=repeat_string("null", n),
            t=_prim(np.array([s for _, s in self.ends], dtype=np.float64)),
        )

    def _check_batch(self, sch: pa.Schema) -> pa.RecordBatch:
        import numpy as np

        local = NameTable()
        values = Columns(local)
        for ctx, name, value in self.checks:
            values.log(ctx, local.key(name), value)
        keys = values.log_key
        n = len(keys)
        karr = np.frombuffer(keys, dtype=np.int64)
        vt, vi, vf, vs = _values(karr, values.log_f, values.log_i, values.log_o)
        return _batch(
            sch,
            n,
            kind=repeat_string("check", n),
            ctx=_prim(np.frombuffer(values.log_ctx, dtype=np.int64)),
            name=gather_strings(local.encoded(), karr >> 2),
            vtype=vt,
            v_int=vi,
            v_float=vf,
            v_str=vs,
        )


_VTYPES_UTF8 = [v.encode() for v in _VTYPES]


# -- building Arrow arrays from buffers (never pa.array: see the module docstring) -------------
#: Scalar kinds a loop's item is kept as.
LOOP_SCALARS = frozenset({int, float, str, bool})


#: Where a batch's rows start, for :meth:`Columns.piece`: log rows, their float, int and other
#: values, loop rows, their float, int and other items, ends, checks.
Offsets = tuple[int, int, int, int, int, int, int, int, int, int]
NO_ROWS: Offsets = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def _stores(keys: array[int], f: int, i: int, o: int) -> tuple[int, int, int]:
    """The float, int and other stores' ends past ``f``, ``i``, ``o`` after rows ``keys``."""
    counts = [f, i, o, 0]
    for key in keys:
        counts[key & 3] += 1
    return counts[0], counts[1], counts[2]


def loop_scalar(item: Any) -> Any:
    """The Python scalar a numpy or torch scalar item holds (``np.float64(0.1)``, the items of
    ``np.array([...])`` or of ``torch.arange(3)``), or None for any other item. Before session
    46 such items were not kept (the loop's values were NULL).

    Example:
        >>> import numpy as np
        >>> [loop_scalar(v) for v in np.array([0.5, 2.0])], loop_scalar(np.int64(3))
        ([0.5, 2.0], 3)
        >>> loop_scalar(np.str_("a")), loop_scalar(np.zeros(2)), loop_scalar((1, 2))
        ('a', None, None)
    """
    kind = type(item)
    module = kind.__module__
    if module == "numpy":
        if getattr(item, "ndim", 1) != 0:
            return None
    elif module == "torch" and kind.__name__ in ("Tensor", "Parameter"):
        try:
            if item.dim() != 0:
                return None
        except Exception:
            return None
    else:
        return None
    try:
        value = item.item()
    except Exception:  # an object array's item, a meta tensor: not kept
        return None
    return value if type(value) in LOOP_SCALARS else None


def _fits_int64(items: range) -> bool:
    lo, hi = min(items[0], items[-1]), max(items[0], items[-1])
    return lo >= -(2**63) and hi < 2**63


def _ints(column: array[int], n: int) -> np.ndarray:
    import numpy as np

    return np.frombuffer(column, dtype=np.int64)[:n]


def _batch(sch: pa.Schema, n: int, **cols: pa.Array) -> pa.RecordBatch:
    import pyarrow as pa

    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in sch]
    return pa.RecordBatch.from_arrays(arrays, schema=sch)


def _prim(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A primitive Arrow array over a numpy array's buffer (``valid``: a boolean mask)."""
    import numpy as np
    import pyarrow as pa

    kind = {"i": pa.int64(), "f": pa.float64()}[values.dtype.kind]
    values = np.ascontiguousarray(values)
    bitmap = None
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(kind, len(values), [bitmap, pa.py_buffer(values)])


def strings_array(values: Sequence[str | None]) -> pa.Array:
    """A string array from Python strings (None: null)."""
    import numpy as np
    import pyarrow as pa

    encoded = [b"" if v is None else v.encode("utf-8", "backslashreplace") for v in values]
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, encoded), np.int32, len(encoded)), out=offsets[1:])
    bitmap = None
    if any(v is None for v in values):
        valid = np.array([v is not None for v in values], dtype=bool)
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(values), [bitmap, pa.py_buffer(offsets), data])


def gather_strings(encoded: Sequence[bytes], idx: np.ndarray) -> pa.Array:
    """The string array whose row ``j`` is ``encoded[idx[j]]``, gathered with numpy: what
    ``Array.take`` does, without importing pyarrow.compute (~35 ms, on the first query that
    reads new rows in a process). The strings are laid out padded, one row each, and each
    output row's bytes cut from its string's row (chunks of rows bound the padded copy)."""
    import numpy as np
    import pyarrow as pa

    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(encoded)):
        raise ValueError("a name or value type id out of range")
    lens = np.fromiter(map(len, encoded), np.int64, len(encoded))
    width = max(1, int(lens.max()) if len(lens) else 1)
    padded = np.zeros((max(1, len(encoded)), width), dtype=np.uint8)
    for k, raw in enumerate(encoded):
        padded[k, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    row_lens = lens[idx] if len(lens) else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(row_lens, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("a segment's names exceed 2 GB")
    step = max(1, (32 << 20) // width)
    columns = np.arange(width)
    parts = [
        padded[idx[a : a + step]][columns < row_lens[a : a + step, None]]
        for a in range(0, len(idx), step)
    ]
    data = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(idx), buffers)


def int64_array(values: Iterable[int]) -> pa.Array:
    """An int64 array of Python ints (built from a buffer: no pandas import)."""
    import numpy as np

    return _prim(np.fromiter(values, dtype=np.int64))


def ordinals(n: int) -> pa.Array:
    """The int64 array ``0 .. n-1`` (built from a buffer: no pandas import)."""
    import numpy as np

    return _prim(np.arange(n, dtype=np.int64))


def repeat_string(text: str, n: int) -> pa.Array:
    """A string array of ``text`` ``n`` times (built from buffers: no pandas import)."""
    import numpy as np
    import pyarrow as pa

    raw = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)]
    )


def _values(
    keys: np.ndarray, floats: array[float], ints: array[int], others: list[Any]
) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """(vtype, v_int, v_float, v_str) columns for rows whose value stores ``keys`` name."""
    import numpy as np

    n = len(keys)
    code = keys & 3
    is_f, is_i, is_o = code == FLOAT, code == INT, code == OTHER
    v_float = np.zeros(n, dtype=np.float64)
    v_float[is_f] = np.frombuffer(floats, dtype=np.float64)[: int(is_f.sum())]
    v_int = np.zeros(n, dtype=np.int64)
    v_int[is_i] = np.frombuffer(ints, dtype=np.int64)[: int(is_i.sum())]
    vtype = np.array([0, 1, 0, 2], dtype=np.int64)[code]  # float, int, (other), null
    text_at: list[int] = []
    texts: list[str] = []
    for pos, value in zip(np.flatnonzero(is_o).tolist(), others, strict=False):
        kind, i, f, s = split_value(value)
        vtype[pos] = _VTYPE_INDEX[kind]
        if i is not None:
            v_int[pos], is_i[pos] = i, True
        if f is not None:
            v_float[pos], is_f[pos] = f, True
        if s is not None:
            text_at.append(pos)
            texts.append(s)
    return (
        gather_strings(_VTYPES_UTF8, vtype),
        _prim(v_int, is_i),
        _prim(v_float, is_f),
        _sparse_strings(n, text_at, texts),
    )


def _sparse_strings(n: int, positions: list[int], texts: list[str]) -> pa.Array:
    """A string column of ``n`` rows, null except ``texts`` at ``positions`` (ascending)."""
    import numpy as np
    import pyarrow as pa

    if not positions:
        return pa.nulls(n, pa.string())
    encoded = [t.encode("utf-8", "backslashreplace") for t in texts]
    lengths = np.zeros(n, dtype=np.int64)
    lengths[positions] = [len(b) for b in encoded]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("a segment's text values exceed 2 GB")
    valid = np.zeros(n, dtype=bool)
    valid[positions] = True
    buffers = [
        pa.py_buffer(np.packbits(valid, bitorder="little")),
        pa.py_buffer(offsets.astype(np.int32)),
        pa.py_buffer(b"".join(encoded)),
    ]
    return pa.Array.from_buffers(pa.string(), n, buffers)


# -- row files ------------------------------------------------------------------------------------
#
# A recording run writes each flush's Columns as a *row file* (``NNNNNN.rows`` beside Arrow
# segments): its typed arrays as raw bytes after a JSON header. Writing one is a few copies of
# bytes and a file write (which releases the GIL), so the training process needs neither
# pyarrow nor a helper process; a reader turns it into the same Arrow table
# (:meth:`Columns.to_table`) when it reads it (florsql.store.segments.read_segment).

ROWS_MAGIC = b"FLORSQL-ROWS\n"
ROWS_VERSION = 1
_HEAD = struct.Struct("<III")  # version, header length, CRC-32 of what follows
#: The typed columns in the order they are written: each row kind's last-appended column
#: first (a row is whole once that column has it), so a row appended while the file is being
#: made (a flush from a signal handler lands between two appends of one row, and the rest of
#: the row then goes to the flushed Columns) is in every other column too.
_ARRAYS = (
    "log_key", "log_ctx", "log_f", "log_i",
    "loop_s", "loop_ctx", "loop_parent", "loop_key", "loop_iter", "loop_t", "loop_f", "loop_i",
)  # fmt: skip


def _encode(value: Any) -> Any:
    """A stored value as JSON (str, bool, int of any size, float, None kept as they are)."""
    if type(value) is Tagged:
        return {"tagged": [value.vtype, value.text]}
    if value is None or type(value) in (str, bool, int, float):
        return value
    return {"tagged": ["repr", repr(value)]}  # not made by the record API: kept as its repr


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        vtype, text = value["tagged"]
        if not isinstance(vtype, str) or not isinstance(text, str):
            raise ValueError("a tagged value that is not two strings")
        return Tagged(vtype, text)
    return value


def dump_rows(rows: Columns) -> bytes:
    """``rows`` as the bytes of a row file (called on the writer thread)."""
    parts = [bytes(getattr(rows, name)) for name in _ARRAYS]  # each copy is atomic (GIL)
    head = {
        "byteorder": sys.byteorder,
        "first_seq": rows.first_seq,
        "clock_offset": rows.clock_offset,
        "names": list(rows.names.names),
        "arrays": [[name, len(part)] for name, part in zip(_ARRAYS, parts, strict=True)],
        "log_o": [_encode(v) for v in list(rows.log_o)],
        "loop_o": [_encode(v) for v in list(rows.loop_o)],
        "ends": [[c, s] for c, s in list(rows.ends)],
        "checks": [[c, n, _encode(v)] for c, n, v in list(rows.checks)],
    }
    text = json.dumps(head, allow_nan=True, separators=(",", ":")).encode("utf-8")
    crc = zlib.crc32(text)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return b"".join((ROWS_MAGIC, _HEAD.pack(ROWS_VERSION, len(text), crc), text, *parts))


def load_rows(data: bytes) -> Columns:
    """The :class:`Columns` of a row file's bytes.

    Raises:
        ValueError: not a row file, a newer version, or a truncated or damaged one (every
            changed byte: the file carries a CRC-32 of its header and columns).
    """
    view = memoryview(data)
    if bytes(view[: len(ROWS_MAGIC)]) != ROWS_MAGIC:
        raise ValueError("not a florsql row file (no magic bytes)")
    at = len(ROWS_MAGIC)
    if len(view) < at + _HEAD.size:
        raise ValueError("a truncated row file (no header)")
    version, size, crc = _HEAD.unpack_from(view, at)
    if version > ROWS_VERSION:
        raise ValueError(f"a row file of version {version}: upgrade florsql to read it")
    if version < 1:  # the checksum covers what follows the header, not the header itself
        raise ValueError(f"a damaged row file (version {version})")
    at += _HEAD.size
    if zlib.crc32(view[at:]) != crc:
        raise ValueError("a truncated or damaged row file (its checksum differs)")
    try:
        head = json.loads(bytes(view[at : at + size]))
        names = NameTable()
        for name in head["names"]:
            names.key(name)
        rows = Columns(names, first_seq=int(head["first_seq"]), clock_offset=head["clock_offset"])
        at += size
        swap = head["byteorder"] != sys.byteorder
        for name, nbytes in head["arrays"]:
            if name not in _ARRAYS or at + nbytes > len(view):
                raise ValueError(f"a truncated or damaged row file (column {name!r})")
            column = getattr(rows, name)
            column.frombytes(view[at : at + nbytes])
            if swap:
                column.byteswap()
            at += nbytes
        rows.log_o = [_decode(v) for v in head["log_o"]]
        rows.loop_o = [_decode(v) for v in head["loop_o"]]
        rows.ends = [(int(c), float(s)) for c, s in head["ends"]]
        rows.checks = [(int(c), str(n), _decode(v)) for c, n, v in head["checks"]]
    except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"a damaged row file ({type(e).__name__}: {e})") from e
    if at != len(view):
        raise ValueError("a damaged row file (bytes after its columns)")
    _check_lengths(rows)
    return rows


def _check_lengths(rows: Columns) -> None:
    """Every column at least as long as its kind's last-appended one: what to_table reads."""
    for last, others in (
        ("log_key", ("log_ctx",)),
        ("loop_s", ("loop_ctx", "loop_parent", "loop_key", "loop_iter", "loop_t")),
    ):
        n = len(getattr(rows, last))
        if any(len(getattr(rows, o)) < n for o in others):
            raise ValueError(f"a damaged row file (a column shorter than {last})")
