"""Turning whatever ``flor.log`` receives into something storable, without importing torch."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

from florsql.errors import RecordWarning
from florsql.store.segments import Tagged

_PLAIN = (int, float, str, bool, type(None))


def normalize(name: str, value: Any, warned: set[str]) -> Any:
    """A storable form of ``value``: plain scalars as they are, containers as JSON, else repr.

    ``warned`` collects names already warned about, so each name warns once.
    """
    if isinstance(value, _PLAIN):
        return _plain(value)
    scalar = _as_scalar(value)
    if scalar is not _NO:
        return scalar
    if isinstance(value, (list, tuple, dict)):
        try:
            text = json.dumps(value, default=_json_default, allow_nan=True)
        except (TypeError, ValueError):
            text = None
        if text is not None:
            # any size: a list that grows each epoch stays JSON (session 57, sweep AJ: past 64 KB
            # it was stored as its repr, as large, and `json_array_length` failed the query)
            return Tagged("json", text)
    if name not in warned:
        warned.add(name)
        warnings.warn(
            f"flor.log({name!r}, ...) got a {type(value).__name__}, which florsql stores as its "
            f"repr (log numbers, strings, 0-d tensors, or small lists/dicts to keep them "
            f"queryable)",
            RecordWarning,
            stacklevel=4,  # the script's line: normalize < Run.log < flor.log < the script
        )
    try:
        return Tagged("repr", repr(value))
    except Exception:
        return Tagged("repr", f"<{type(value).__name__} with a failing repr>")


class _Missing:
    pass


_NO: Any = _Missing()


def _plain(value: Any) -> Any:
    # Subclasses of int/float/str (IntEnum, numpy.float64 is a float subclass) become plain.
    t = type(value)
    if t in (int, float, str, bool) or value is None:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _as_scalar(value: Any) -> Any:
    """A Python scalar for numpy scalars and one-element torch tensors/numpy arrays, else _NO."""
    module = type(value).__module__
    if module.startswith("torch") or (module not in ("builtins", "numpy") and _is_tensor(value)):
        # (an ``nn.Parameter``, any Tensor subclass: session 57, sweep AJ: a learned
        # temperature ``flor.log("t", net.temp)`` was stored as "Parameter containing: ...")
        if not _is_tensor(value):
            return _NO
        try:
            if value.numel() == 1 and value.dim() <= 1:
                got = value.detach().item()
            else:
                return _NO
        except Exception:
            return _NO
        # a complex tensor: its repr, with the warning Python's and numpy's complex values get
        return _plain(got) if isinstance(got, _PLAIN) else _NO
    if module == "numpy" and "numpy" in sys.modules:
        item = getattr(value, "item", None)
        shape = getattr(value, "shape", None)
        if item is not None and (shape == () or shape == (1,)):
            try:
                got = item()
            except Exception:
                return _NO
            if isinstance(got, _PLAIN):
                return _plain(got)
            if getattr(getattr(value, "dtype", None), "kind", "") == "f":
                return float(got)  # np.longdouble: .item() keeps it; a number stays a number
            # a complex, a datetime64: a repr, with the warning other such values get (session
            # 45: stored as text without a word, where Python's complex and datetime warned)
            return _NO
    return _NO


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _json_default(obj: Any) -> Any:
    scalar = _as_scalar(obj)
    if scalar is not _NO:
        return scalar
    tolist = getattr(obj, "tolist", None)
    if tolist is not None and getattr(obj, "size", 10**9) <= 4096:
        return tolist()
    raise TypeError(type(obj).__name__)
