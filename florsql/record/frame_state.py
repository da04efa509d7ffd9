"""Plain locals saved beside a checkpoint, and put back into a replaying frame.

A checkpoint of the registered objects (model, optimizer...) is not the whole state of a training
loop: an inner loop also changes locals (``running += loss``, ``seen += n``, the loop variable,
a ``global_step`` counter carried across epochs, a list of history). At every checkpoint the
recording saves the names that :mod:`florsql.code.effects` says the loop changes, and replay puts
them back before it skips that loop or starts from that checkpoint. What cannot be saved is
listed with a reason; the replay planner then runs the loop (or starts earlier) instead.

How each value is saved:

- immutable values (numbers, strings, tuples of them): as they are;
- tensors: a detached copy; ``nn.Parameter``\\ s are copied back in place;
- objects with ``state_dict``/``load_state_dict`` (an EMA model, a scheduler): their state;
- random generators (``torch.Generator``, numpy ``Generator``, ``random.Random``) and data
  loaders that shuffle with their own generator: the generators' states;
- classes the script defines: their data attributes (``Stats.steps``), each pickled;
- functions the script defines: their attributes (``bump.n += 1``, ``track.calls.append(v)``),
  each pickled; restored in place, and an attribute set after the checkpoint is removed;
- modules, other functions, other classes, progress bars, loggers and writers: nothing (code, or
  output only: they never feed a logged value back);
- anything else: pickled at once (a snapshot), references to registered objects kept as
  references; containers and plain objects (with ``__slots__`` too; a ``random.Random`` by its
  state) are restored in place, down to what they hold (a meter in a dict, a module's
  parameters), so aliases stay aliases.
"""

from __future__ import annotations

import ctypes
import io
import pickle
import random
import sys
import types
from collections import ChainMap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_BYTES",
    "Capture",
    "capture",
    "frame_values",
    "restore",
    "user_frame",
    "write_locals",
]

#: A local whose pickled snapshot is larger than this is not saved (a data set, a cache).
MAX_BYTES = 16 * 1024 * 1024

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), range, frozenset)
_CODE = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)
#: Output-only objects, by the module their class comes from.
_SINK_MODULES = ("tqdm", "logging", "torch.utils.tensorboard", "tensorboardX", "wandb", "_io")
_CO_OPTIMIZED = 0x0001


@dataclass
class Capture:
    """The saved part of one frame: ``saved`` (name -> (kind, data)), ``kept`` (names that need
    nothing: code, output-only objects, registered objects) and ``missed`` (name -> reason)."""

    saved: dict[str, tuple[str, Any]] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    missed: dict[str, str] = field(default_factory=dict)

    def restores(self) -> list[str]:
        """Names a restore of this capture makes true."""
        return sorted(set(self.saved) | set(self.kept))

    def payload(self) -> dict[str, Any]:
        return {"saved": self.saved, "kept": self.kept, "missed": self.missed}

    @classmethod
    def from_payload(cls, data: dict[str, Any] | None) -> Capture:
        if not data:
            return cls()
        return cls(dict(data["saved"]), list(data["kept"]), dict(data["missed"]))


def capture(
    values: Mapping[str, Any],
    names: Iterable[str],
    registered: dict[int, str],
    refused: dict[str, str],
) -> Capture:
    """Save ``names`` of a frame's ``values`` (:func:`frame_values`).

    ``registered`` maps the ids of the objects given to ``flor.checkpointing`` to their names
    (saved by the checkpoint itself); ``refused`` remembers names that could not be saved
    before, so a large or unpicklable object costs one attempt per run, not one per checkpoint.
    """
    out = Capture()
    for name in sorted(set(names)):
        if name not in values:
            continue  # not bound at this point: nothing to restore
        if name in refused:
            out.missed[name] = refused[name]
            continue
        value = values[name]
        module = values.get("__name__")
        script_class = isinstance(value, type) and value.__module__ == module
        script_function = isinstance(value, types.FunctionType) and value.__module__ == module
        if id(value) in registered or (
            _stateless(value) and not script_class and not script_function
        ):
            out.kept.append(name)
            continue
        try:
            if script_class:
                out.saved[name] = ("class", _class_state(value, registered))
                continue
            if script_function:
                out.saved[name] = ("function", _function_state(value, registered))
                continue
            out.saved[name] = _save(value, registered)
        except Exception as e:  # whatever a user object raises when pickled
            reason = _reason(e)
            refused[name] = reason
            out.missed[name] = reason
    return out


#: Class attributes that are caches of the interpreter, never a script's state.
_CLASS_CACHES = frozenset({"_abc_impl"})


def _class_state(cls: type, registered: dict[int, str]) -> dict[str, bytes]:
    """The data attributes of a class the script defines (``Stats.steps += 1``), each
    pickled: methods, properties and other descriptors, nested classes and dunders are code."""
    out: dict[str, bytes] = {}
    for attr, v in vars(cls).items():
        if attr in _CLASS_CACHES or (attr.startswith("__") and attr.endswith("__")):
            continue
        if isinstance(v, (type, staticmethod, classmethod)) or hasattr(type(v), "__get__"):
            continue
        out[attr] = _dumps_bounded(attr, v, registered)
    return out


def _function_state(fn: types.FunctionType, registered: dict[int, str]) -> dict[str, bytes]:
    """The attributes of a function the script defines (``bump.n += 1``), each pickled; the
    dunders ``functools.wraps`` sets (``__wrapped__``...) are code."""
    out: dict[str, bytes] = {}
    for attr, v in vars(fn).items():
        if attr.startswith("__") and attr.endswith("__"):
            continue
        out[attr] = _dumps_bounded(attr, v, registered)
    return out


def _dumps_bounded(attr: str, value: Any, registered: dict[int, str]) -> bytes:
    """``value`` pickled, or :class:`_TooLarge` past ``MAX_BYTES``."""
    data = _dumps(value, registered)
    if len(data) > MAX_BYTES:
        raise _TooLarge(f"{attr} larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return data


def _stateless(value: Any) -> bool:
    if isinstance(value, _CODE):
        return True
    module = type(value).__module__ or ""
    return any(module == m or module.startswith(m + ".") for m in _SINK_MODULES)


def _reason(e: Exception) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= 200 else text[:197] + "..."


class _TooLarge(Exception):
    pass


def _save(value: Any, registered: dict[int, str]) -> tuple[str, Any]:
    if isinstance(value, _IMMUTABLE) or (
        isinstance(value, tuple) and all(isinstance(v, _IMMUTABLE) for v in value)
    ):
        return "value", value
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            kind = "parameter" if isinstance(value, torch.nn.Parameter) else "tensor"
            return kind, value.detach().to("cpu", copy=True)
        if isinstance(value, torch.Generator):
            return "torch_generator", value.get_state().clone()
        loader = _loader_generators(value, torch)
        if loader is not None:
            return "loader", loader
    if hasattr(value, "state_dict") and hasattr(value, "load_state_dict"):
        from florsql.record.checkpoint import _deep_copy

        return "state", _deep_copy(value.state_dict())
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.random.Generator):
        return "numpy_generator", pickle.dumps(value.bit_generator.state)
    data = _dumps(value, registered)
    if len(data) > MAX_BYTES:
        raise _TooLarge(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return "pickle", data


def _loader_generators(value: Any, torch: Any) -> dict[str, Any] | None:
    """The generator states of a torch DataLoader (its own, its sampler's), else None."""
    if not isinstance(value, torch.utils.data.DataLoader):
        return None
    states: dict[str, Any] = {}
    for path in ("generator", "sampler.generator", "batch_sampler.sampler.generator"):
        obj: Any = value
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.Generator):
            states[path] = obj.get_state().clone()
    return states


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, registered: dict[int, str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.registered = registered

    def persistent_id(self, obj: Any) -> str | None:
        return self.registered.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, objs: dict[str, Any]) -> None:
        super().__init__(file)
        self.objs = objs

    def persistent_load(self, pid: Any) -> Any:
        return self.objs[pid]


def _dumps(value: Any, registered: dict[int, str]) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, registered).dump(value)
    return buf.getvalue()


# -- restoring ---------------------------------------------------------------------------------
def restore(frame: types.FrameType, cap: Capture, objs: dict[str, Any]) -> None:
    """Put ``cap`` back into ``frame`` (``objs``: the replay's registered objects by name)."""
    if not cap.saved:
        return
    current = frame_values(frame)
    code = frame.f_code
    own = {*code.co_varnames, *code.co_cellvars, *code.co_freevars}
    optimized = bool(code.co_flags & _CO_OPTIMIZED)
    rebind: dict[str, Any] = {}
    for name, (kind, data) in cap.saved.items():
        cur = current.get(name)
        new = _restored(kind, data, cur, objs)
        if new is _IN_PLACE:
            continue
        if optimized and name not in own:
            frame.f_globals[name] = new  # a module global the function's loop changed
        else:
            rebind[name] = new
    if rebind:
        write_locals(frame, rebind)


def frame_values(frame: types.FrameType) -> ChainMap[str, Any]:
    """What a name means in ``frame``: its locals, then its module's globals."""
    return ChainMap(frame.f_locals, frame.f_globals)


_IN_PLACE = object()


def _restored(kind: str, data: Any, cur: Any, objs: dict[str, Any]) -> Any:
    if kind == "value" or kind == "tensor":
        return data
    if kind == "parameter":
        import torch

        if isinstance(cur, torch.Tensor) and cur.shape == data.shape:
            with torch.no_grad():
                cur.copy_(data)
            return _IN_PLACE
        return data
    if kind == "torch_generator":
        cur.set_state(data)
        return _IN_PLACE
    if kind == "loader":
        for path, state in data.items():
            obj = cur
            for part in path.split("."):
                obj = getattr(obj, part)
            obj.set_state(state)
        return _IN_PLACE
    if kind == "state":
        cur.load_state_dict(data)
        return _IN_PLACE
    if kind == "class" or kind == "function":
        if kind == "function":
            for attr in [a for a in cur.__dict__ if a not in data]:
                if not (attr.startswith("__") and attr.endswith("__")):
                    delattr(cur, attr)  # set after the checkpoint was taken
        seen: set[int] = set()
        for attr, blob in data.items():
            new = _Unpickler(io.BytesIO(blob), objs).load()
            old = cur.__dict__.get(attr)
            merged = new if old is None else _merged(old, new, seen)
            if merged is not old:
                setattr(cur, attr, merged)
        return _IN_PLACE
    if kind == "numpy_generator":
        cur.bit_generator.state = pickle.loads(data)
        return _IN_PLACE
    saved = _Unpickler(io.BytesIO(data), objs).load()
    if cur is not None and type(cur) is type(saved) and _fill(cur, saved):
        return _IN_PLACE
    return saved


def _fill(cur: Any, saved: Any, seen: set[int] | None = None) -> bool:
    """Copy ``saved`` into ``cur`` in place (keeping aliases); False when it cannot.

    What ``cur`` holds is filled in place too, wherever the same place holds an object of the
    same kind: a meter in a dict (``meters["loss"]`` that is also ``train_meter``), a plain
    object in a list, a module's parameters (the optimizer holds them)."""
    seen = set() if seen is None else seen
    if id(cur) in seen:
        return True
    seen.add(id(cur))
    if isinstance(cur, list):
        cur[:] = [_merged(c, v, seen) for c, v in zip(cur, saved, strict=False)] + list(
            saved[len(cur) :]
        )
    elif isinstance(cur, dict):
        merged = {k: _merged(cur[k], v, seen) if k in cur else v for k, v in saved.items()}
        cur.clear()
        cur.update(merged)
    elif isinstance(cur, set):
        cur.clear()
        cur.update(saved)
    elif isinstance(cur, random.Random):
        # Its state is the C generator's, not its __dict__ (filling that restored nothing).
        cur.setstate(saved.getstate())
        cur.__dict__.update(saved.__dict__)
    elif _slots(type(cur)) and not hasattr(cur, "__dict__"):
        for name in _slots(type(cur)):  # an object with __slots__: filled slot by slot
            if hasattr(saved, name):
                old = getattr(cur, name, None)
                new = getattr(saved, name)
                setattr(cur, name, new if old is None else _merged(old, new, seen))
            elif hasattr(cur, name):
                delattr(cur, name)
    elif hasattr(cur, "__dict__") and not isinstance(cur, type):
        own = cur.__dict__
        merged = {k: _merged(own[k], v, seen) if k in own else v for k, v in saved.__dict__.items()}
        own.clear()
        own.update(merged)
    else:
        return False
    return True


def _slots(cls: type) -> list[str]:
    """The slot names ``cls`` and its bases declare (``__dict__``/``__weakref__`` aside)."""
    out: list[str] = []
    for base in cls.__mro__:
        declared = base.__dict__.get("__slots__", ())
        for name in [declared] if isinstance(declared, str) else declared:
            if name not in ("__dict__", "__weakref__") and name not in out:
                out.append(name)
    return out


def _merged(cur: Any, saved: Any, seen: set[int]) -> Any:
    """``cur`` filled with ``saved`` where it can be (it keeps its identity), else ``saved``."""
    if cur is saved or type(cur) is not type(saved) or isinstance(cur, _IMMUTABLE):
        return saved
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(cur, torch.Tensor):
        # Parameters are copied into (a module's, an optimizer's references stay true); other
        # tensors are replaced: one may be a view whose base the loop has since moved on from.
        if isinstance(cur, torch.nn.Parameter) and cur.shape == saved.shape:
            with torch.no_grad():
                cur.copy_(saved)
            return cur
        return saved
    return cur if _fill(cur, saved, seen) else saved


def write_locals(frame: types.FrameType, values: dict[str, Any]) -> None:
    """Bind ``values`` in ``frame``: its globals at module level, its fast locals in a
    function (through ``PyFrame_LocalsToFast`` before Python 3.13's write-through
    ``f_locals``)."""
    if not frame.f_code.co_flags & _CO_OPTIMIZED:
        frame.f_locals.update(values)
        return
    if sys.version_info >= (3, 13):
        for name, value in values.items():
            frame.f_locals[name] = value
        return
    frame.f_locals.update(values)
    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


def user_frame() -> types.FrameType | None:
    """The first frame outside florsql: the script's code that called the record API."""
    f: types.FrameType | None = sys._getframe(1)
    while f is not None and str(f.f_globals.get("__name__", "")).startswith("florsql"):
        f = f.f_back
    return f
