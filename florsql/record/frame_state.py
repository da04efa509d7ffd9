"""Plain locals saved beside a checkpoint, and put back into a replaying frame.

A checkpoint of the registered objects (model, optimizer...) is not the whole state of a training
loop: an inner loop also changes locals (``running += loss``, ``seen += n``, the loop variable,
a ``global_step`` counter carried across epochs, a list of history). At every checkpoint the
recording saves the names that :mod:`florsql.code.effects` says the loop changes, and replay puts
them back before it skips that loop or starts from that checkpoint. What cannot be saved is
listed with a reason; the replay planner then runs the loop (or starts earlier) instead.

How each value is saved:

- immutable values (numbers, strings, tuples of them): as they are;
- tensors: a detached copy (a leaf that requires grad still does), but a registered module's
  tensor or a view of its data (``snap = net.state_dict()``: no copy, the live weights), here
  or inside a pickled value, is a reference to it, the same view of the replay's module;
  so is a part of one (a row), a numpy view of one (``w.detach().numpy()``), a registered
  optimizer's state tensor (``buf = opt.state[p]["momentum_buffer"]``), and a container or a
  submodule inside a registered object (``group = opt.param_groups[0]``, ``head = net[2]``,
  ``losses = hist["loss"]`` of a registered plain dict);
  ``nn.Parameter``\\ s are copied back in place, and so is a tensor the name has held since the
  loop began (changed in place only, ``total += x``): a dict or an optimizer that holds the
  same tensor stays true; a registered model's parameter bound by name (``w = net[2].weight``)
  is the replay's parameter itself;
- a tensor or numpy array that shares memory with another name's value (a view of it:
  ``loss_slot = stats[0]``, ``row = acc[epoch]``, ``counts.numpy()``, ``bank["m"][:2]`` of a
  saved dict; a tensor of a torch module or optimizer a name holds unregistered): an alias,
  the same view of the base the restore puts back (the base saved too, in place where the
  loop does not rebind its name); a copy where that base is not found;
- objects with ``state_dict``/``load_state_dict`` (an EMA model, a scheduler): their state (a
  torch module also what its state_dict leaves out: plain attributes, non-persistent buffers);
  an object of a class the script defines (not a torch module, optimizer or scheduler) is
  pickled whole where it pickles, as its own ``state_dict`` may leave fields out;
- random generators (``torch.Generator``, numpy ``Generator``, ``random.Random``) and data
  loaders that shuffle with their own generator: the generators' states;
- classes the script defines: their data attributes (``Stats.steps``), each pickled;
- functions the script defines: their attributes (``bump.n += 1``, ``track.calls.append(v)``),
  each pickled; restored in place, and an attribute set after the checkpoint is removed;
- bound methods (``upd = meter.update``, ``add = hist.append``): the object they are bound to,
  as that object would be saved, refilled in place;
- modules, other functions and other classes: nothing (code); a ``functools.lru_cache``
  function that was called: noted ``busy`` (no API puts its entries and statistics back), so
  the planner takes it as restored only where the patched code never reads it as a value
  (``ones(2)`` is a call, ``ones.cache_info()`` a read);
- progress bars, loggers and writers (output-only objects: tqdm, logging, TensorBoard, wandb):
  their plain data attributes (numbers, strings, flags), restored in place onto the object of
  the same class the name holds then: code after a loop reads them (``pbar.n``, the count a
  ``tqdm`` bar reached), while the rest (a lock, a thread) is not state a logged value can
  come from;
- open files: nothing (their position and contents are the OS's); noted ``busy``, so the
  planner takes them as restored only where the patched code never reads them as a value
  (``f.write(...)``, not ``f.tell()``). In-memory files (``io.StringIO``, ``io.BytesIO``) are
  saved and refilled, contents and position;
- a value holding the ``id()`` of a live object (``ema[id(p)]``): nothing (missed: a replay's
  objects have other ids);
- anything else: pickled at once (a snapshot), references to registered objects kept as
  references; containers and plain objects (with ``__slots__`` too; a ``random.Random`` by its
  state) are restored in place, down to what they hold (a meter in a dict, a module's
  parameters), so aliases stay aliases;
- a tensor or array two names hold (``acc = total``): one object back; a view of a name's
  tensor or array inside a pickled value (``parts = [stats[0:1]]``): a reference to that view
  of the name's restored object (the name saved too, in place); a tensor or array a saved
  dict or list holds where it held it as the loop began: copied into the replay's there;
  views of a tensor or array no name holds: made again over one base (session 40);
- the recording's identity of each mutable object in a pickled local (memo index -> ``id``),
  and each unchanged name that holds an object of a kind found inside a saved value: restore
  fills a current object from one recorded object only, so a container entry the loop replaced
  is not refilled into the name that still holds the old entry.
"""

from __future__ import annotations

import array
import collections
import contextlib
import ctypes
import io
import os
import pickle
import random
import sys
import types
import weakref
from collections import ChainMap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
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
    #: output-only objects iterating the loop as the checkpoint was taken (``for x in pbar``,
    #: ``pbar = tqdm(flor.loop(...))``): the count a bar holds is written as its iteration
    #: ends, after the checkpoint, and a replay that skips the loop leaves it at 0. Nothing is
    #: restored; the planner takes them as restored only where the patched code never reads
    #: them as a value (``pbar.set_postfix(...)``, not ``flor.log("n", pbar.n)``).
    busy: list[str] = field(default_factory=list)
    #: per pickled name: the pickle's memo index -> the object's id while recording, for the
    #: mutable objects in it; restore tells apart two places that held one object (an alias)
    #: from two that held distinct ones (a container entry the loop replaced)
    ids: dict[str, dict[int, int]] = field(default_factory=dict)
    #: names saved by their state_dict whose object the loop made (``teacher = None`` as it
    #: began, a ``copy.deepcopy(net)`` since): only an object of the kind takes that state, so a
    #: replay that starts as the script does cannot restore them (not in the payload)
    made: list[str] = field(default_factory=list)
    #: recorded ids of the tensors and arrays saved containers hold where they held them as
    #: the loop began: restore copies into the replay's there (:func:`_fill_ids`)
    fill: list[int] = field(default_factory=list)
    #: per name holding a tensor the script trains by hand (a leaf that requires a gradient):
    #: its ``.grad`` (None: none), which no copy of its values carries (session 42)
    grads: dict[str, Any] = field(default_factory=dict)

    def restores(self) -> list[str]:
        """Names a restore of this capture makes true."""
        return sorted(set(self.saved) | set(self.kept))

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "saved": self.saved,
            "kept": self.kept,
            "missed": self.missed,
            "ids": self.ids,
        }
        if self.busy:
            out["busy"] = self.busy
        if self.fill:
            out["fill"] = self.fill
        if self.grads:
            out["grads"] = self.grads
        return out

    @classmethod
    def from_payload(cls, data: dict[str, Any] | None) -> Capture:
        if not data:
            return cls()
        return cls(
            saved=dict(data["saved"]),
            kept=list(data["kept"]),
            missed=dict(data["missed"]),
            busy=list(data.get("busy", [])),
            ids=dict(data.get("ids", {})),
            fill=list(data.get("fill", [])),
            grads=dict(data.get("grads", {})),
        )


def capture(
    values: Mapping[str, Any],
    names: Iterable[str],
    registered: dict[int, str],
    refused: dict[str, str],
    loop_span: tuple[str, int, int] | None = None,
    busy: frozenset[int] = frozenset(),
    born: Mapping[str, weakref.ref[Any]] | None = None,
    views: RegisteredViews | None = None,
    kinds: Mapping[str, type] | None = None,
) -> Capture:
    """Save ``names`` of a frame's ``values`` (:func:`frame_values`).

    ``registered`` maps the ids of the objects given to ``flor.checkpointing`` to their names
    (saved by the checkpoint itself); ``refused`` remembers names that could not be saved
    before, so a large or unpicklable object costs one attempt per run, not one per checkpoint.
    ``loop_span`` (file, first and last line of the loops captured): a function whose ``def``
    lies there is a new object each time the loop runs it (an LBFGS closure); a replay that
    skips the loop cannot make it, so it is missed, not saved. ``busy``: the ids of the objects
    whose methods run between the script's frame and the loop (:func:`busy_objects`).
    ``born`` (:func:`tensors_held`): the tensors the names held as the loop began; a name that
    still holds its tensor was changed in place only (``total += x``), so restore copies into
    the tensor the name holds then, which keeps the places that share it (``stats["total"]``,
    an optimizer's parameter list) true. ``views`` (:class:`RegisteredViews`): a tensor of a
    registered module, or a view of its data, inside a pickled value is saved as a reference.
    ``kinds`` (:func:`held_at_start`): a name saved by its ``state_dict`` that held no object of
    its class as the loop began was made during the run (``Capture.made``).
    """
    token = _VIEWS.set(views)
    tensors = _TENSORS.set(set())
    named = _NAMED.set(_Named(values, registered))
    try:
        out = _capture(values, names, registered, refused, loop_span, busy, born)
    finally:
        _VIEWS.reset(token)
        _TENSORS.reset(tensors)
        _NAMED.reset(named)
    if kinds is not None:
        out.made = sorted(
            name
            for name, (kind, _) in out.saved.items()
            if kind in ("state", "module_state") and kinds.get(name) is not type(values[name])
        )
    return out


def _capture(
    values: Mapping[str, Any],
    names: Iterable[str],
    registered: dict[int, str],
    refused: dict[str, str],
    loop_span: tuple[str, int, int] | None,
    busy: frozenset[int],
    born: Mapping[str, weakref.ref[Any]] | None,
) -> Capture:
    out = Capture()
    kinds: set[type] = set()  # of the mutable objects inside saved values
    for name in sorted(set(names)):
        if name not in values:
            continue  # not bound at this point: nothing to restore
        if name in refused:
            out.missed[name] = refused[name]
            continue
        value = values[name]
        if (id(value) in busy and _sink(value)) or _open_file(value):
            out.busy.append(name)
            continue
        if id(value) in busy and id(value) not in registered:
            # A wrapper's generator (progress.wrap(flor.loop(...))) is suspended inside the
            # loop: what it writes when the loop ends is not in the object yet, and a restore
            # in place lands after its prologue read the object. Nothing can restore it here.
            out.missed[name] = BUSY_REASON
            continue
        module = values.get("__name__")
        script_class = isinstance(value, type) and value.__module__ == module
        script_function = isinstance(value, types.FunctionType) and value.__module__ == module
        owner = _bound_self(value)
        if owner is not None and id(owner) not in registered and not isinstance(owner, _CODE):
            try:  # a bound method (upd = meter.update): its object is the state
                out.saved[name] = (
                    "method_self",
                    _save(owner, registered, out.ids.setdefault(name, {}), kinds, module),
                )
            except Exception as e:  # whatever a user object raises when pickled
                refused[name] = out.missed[name] = _reason(e)
            continue
        if id(value) in registered or (
            isinstance(value, _CODE) and not script_class and not script_function
        ):
            out.kept.append(name)
            continue
        if _used_cache(value):
            # Restored by nothing: the replay's function stands for it (a pure cached helper,
            # a causal mask, gives the same values), unless the patched code reads it as a
            # value (``ones.cache_info().hits``): the planner then runs the loop.
            out.busy.append(name)
            continue
        if script_function and _defined_in(value, loop_span):
            out.missed[name] = "a function defined inside the loop: replay cannot recreate it"
            continue
        try:
            if script_class:
                out.saved[name] = ("class", _class_state(value, registered))
                continue
            if script_function:
                out.saved[name] = ("function", _function_state(value, registered))
                continue
            out.saved[name] = _save(value, registered, out.ids.setdefault(name, {}), kinds, module)
            ref = born.get(name) if born else None
            kind = out.saved[name][0]
            if kind in ("tensor", "tensor_at", "pickle") and ref is not None and ref() is value:
                out.saved[name] = (f"{kind}_in_place", out.saved[name][1])
        except Exception as e:  # whatever a user object raises when pickled
            reason = _reason(e)
            refused[name] = reason
            out.missed[name] = reason
    _capture_shared(out, values, registered)
    _capture_aliases(out, values, registered, refused, kinds)
    _capture_view_owners(out, values, registered)
    _own_ids(out, values)
    _fill_ids(out, values, born)
    out.ids = {name: ids for name, ids in out.ids.items() if ids}
    _capture_grads(out, values)
    return out


#: Saved kinds restored as the name's own tensor, whose gradient :func:`_capture_grads` keeps.
_GRAD_KINDS = frozenset(
    {"tensor", "tensor_in_place", "tensor_at", "tensor_at_in_place", "parameter"}
)


def _capture_grads(out: Capture, values: Mapping[str, Any]) -> None:
    """The gradients of the tensors the script trains by hand (``w = torch.zeros(3,
    requires_grad=True)``, stepped with ``w -= lr * w.grad``): a copy of the values drops
    them, and an accumulation across the checkpoint (``w.grad`` summed over epochs, or read
    after the step loop) replayed on none, silently."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    for name, (kind, _) in out.saved.items():
        value = values.get(name)
        if (
            kind in _GRAD_KINDS
            and isinstance(value, torch.Tensor)
            and value.requires_grad
            and value.is_leaf
        ):
            grad = value.grad
            out.grads[name] = None if grad is None else grad.detach().to("cpu", copy=True)


#: The key of :attr:`Capture.ids` under which a name's own value's id is kept (memo indices
#: are never negative).
_OWN = -1

#: Saved kinds restored as one tensor or array of the name's own (not an unpickled container).
_ARRAY_KINDS = frozenset(
    {
        "tensor",
        "tensor_in_place",
        "tensor_at",
        "tensor_at_in_place",
        "parameter",
        "pickle_in_place",
        "pickle",
        "alias",
    }
)


def _own_ids(out: Capture, values: Mapping[str, Any]) -> None:
    """Keep the id of each saved tensor or numpy array: where a saved container holds it too
    (``meters = {"loss": total}`` beside ``total``, the loop writing either), restore gives the
    container's entry the very object it restored for the name (session 39: each its own copy,
    and the loop's writes through one missed the other, silently), and an entry that held
    another object is not filled into it (:func:`_place`)."""
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    for name, (kind, _) in out.saved.items():
        value = values.get(name)
        if kind not in _ARRAY_KINDS:
            continue
        if (torch is not None and isinstance(value, torch.Tensor)) or (
            np is not None and isinstance(value, np.ndarray)
        ):
            out.ids.setdefault(name, {})[_OWN] = id(value)


def held_at_start(
    values: Mapping[str, Any], names: Iterable[str]
) -> tuple[dict[str, weakref.ref[Any]], dict[str, type]]:
    """What ``names`` hold in ``values`` now, for :func:`capture`'s ``born`` (the tensors,
    weakly) and ``kinds`` (the classes of the bound ones): taken as a loop begins, once per
    loop (a few names: what the loop changes)."""
    torch = sys.modules.get("torch")
    born: dict[str, weakref.ref[Any]] = {}
    kinds: dict[str, type] = {}
    for name in names:
        if name not in values:
            continue
        value = values[name]
        kinds[name] = type(value)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(value, np.ndarray) and value.base is None:
            born[name] = weakref.ref(value)  # an array changed in place (conf[i, j] += 1)
            continue
        if isinstance(value, (dict, list)):
            for path, entry in _entries(value, [_WALK_ENTRIES]):
                # (a tensor or array a dict or list holds)
                with contextlib.suppress(TypeError):
                    born[_entry_key(name, path)] = weakref.ref(entry)
            continue
        if torch is None or not isinstance(value, torch.Tensor):
            continue
        if not isinstance(value, torch.nn.Parameter):
            with contextlib.suppress(TypeError):
                born[name] = weakref.ref(value)
    return born, kinds


def _entry_key(name: str, path: Sequence[Any]) -> str:
    """The key of :func:`held_at_start`'s ``born`` for the entry at ``path`` of a container
    ``name`` holds (no name has a NUL in it)."""
    return f"\0{name}\0{path!r}"


def _entries(
    container: Any, budget: list[int], path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) for the tensors (no parameters) and the numpy arrays that own their memory
    that the dicts and lists of ``container`` hold (three levels, at most ``budget[0]`` entries;
    keys that are strings or ints)."""
    if len(path) >= _WALK_DEPTH:
        return
    items: Iterable[tuple[Any, Any]]
    if isinstance(container, dict):
        items = ((k, v) for k, v in container.items() if isinstance(k, (str, int)))
    elif isinstance(container, list):
        if container and {type(container[0]), type(container[-1])} <= _NUMBERS:
            return  # a history of numbers (a mixed one keeps its tensors replaced, as before)
        items = enumerate(container)
    else:
        return
    torch = sys.modules.get("torch")
    tensor = torch.Tensor if torch is not None else None
    parameter = torch.nn.Parameter if torch is not None else ()
    array = getattr(sys.modules.get("numpy"), "ndarray", None)
    for key, v in items:
        budget[0] -= 1
        if budget[0] < 0:
            return
        kind = type(v)
        if kind in _SCALARS or kind is int:
            continue
        if kind is array:
            if v.base is None:
                yield (*path, key), v
        elif tensor is not None and isinstance(v, tensor):
            if not isinstance(v, parameter) and not v.is_sparse:
                yield (*path, key), v
        elif kind is dict or kind is list:
            yield from _entries(v, budget, (*path, key))


def _fill_ids(
    out: Capture, values: Mapping[str, Any], born: Mapping[str, weakref.ref[Any]] | None
) -> None:
    """The recorded ids of the tensors and arrays that saved dicts and lists hold where they
    held them as the loop began (``state = {"buf": buf}`` before it, written through
    ``state["buf"]``): restore copies into the replay's tensor there, so what else holds it
    (a view, another container) stays true (before session 40: a new tensor, silently)."""
    held = {k.split("\0")[1] for k in born or () if k.startswith("\0")}
    if not held or born is None:
        return
    for name, (kind, _) in out.saved.items():
        if kind not in ("pickle", "pickle_in_place") or name not in held:
            continue
        value = values.get(name)
        if not isinstance(value, (dict, list)):
            continue
        for path, entry in _entries(value, [_WALK_ENTRIES]):
            ref = born.get(_entry_key(name, path))
            if ref is not None and ref() is entry:
                out.fill.append(id(entry))


#: Saved kinds whose value may share its memory with another name's (a view, a buffer).
_MAY_SHARE = frozenset(
    {"tensor", "tensor_in_place", "tensor_at", "tensor_at_in_place", "parameter", "pickle"}
)


def _capture_shared(out: Capture, values: Mapping[str, Any], registered: dict[int, str]) -> None:
    """Save each saved tensor or numpy array that shares its memory with another name's value as
    an ``alias`` of it (session 39): a view of a base another name holds (``loss_slot =
    stats[0]``, ``row = acc[epoch]``, ``flat = conf.reshape(-1)``) or of one a saved container
    holds (``head = bank["m"][:2]``), or a tensor of a torch
    module or optimizer a name holds that is not registered (``mbuf =
    head_opt.state[w]["momentum_buffer"]``). Saved as copies, the replay's value parted from
    its base: the loop's writes through the view no longer reached it (``stats.sum()`` 0.0 for
    a full re-run's 22.09, silently). The base is saved too (in place where the loop does not
    rebind its name), and restore makes the view again, of the base it restored; where that
    base is not found then, the view is restored as the copy it was before."""
    torch = sys.modules.get("torch")
    np = sys.modules.get("numpy")
    candidates = []
    for name, (kind, _) in out.saved.items():
        if kind not in _MAY_SHARE | {"pickle_in_place"} or name not in values:
            continue
        value = values[name]
        if (torch is not None and isinstance(value, torch.Tensor)) or (
            np is not None and isinstance(value, np.ndarray)
        ):
            candidates.append(name)
    if not candidates:
        return
    holders: RegisteredViews | None = None
    if torch is not None:
        owned = {
            n: v
            for n, v in values.items()
            if not n.startswith("__")
            and isinstance(v, (torch.nn.Module, torch.optim.Optimizer))
            and id(v) not in registered
        }
        holders = RegisteredViews(owned) if owned else None
    by_id = {id(v): n for n, v in values.items() if not n.startswith("__")}
    names_of: dict[int, list[str]] = {}
    for n, v in values.items():
        if not n.startswith("__"):
            names_of.setdefault(id(v), []).append(n)
    unnamed: dict[int, list[str]] = {}  # views of a base no name holds, by the base's id
    for name in candidates:
        value = values[name]
        spec = None
        same = _same_as(name, names_of.get(id(value), []), out)
        if same is not None:
            spec = ["same", same]
        elif out.saved[name][0] not in _MAY_SHARE:
            continue  # (an array refilled in place: the views of it stay true)
        elif torch is not None and isinstance(value, torch.Tensor):
            spec = _tensor_alias(name, value, values, by_id, holders, torch)
            if spec is None:
                spec = _held_alias(name, value, values, out, torch)
                if (
                    spec is not None
                    and spec[0] == "held"
                    and _of_unnamed_base(value, by_id, torch, np)
                    and id(value._base) not in (_TENSORS.get() or ())
                ):
                    # a container's entry and a view of a base no name holds
                    # (``v2 = {"k": v0}``, ``v0 = t[:1]``, ``b = t[1:]``): placed with
                    # the other views of that base; the entry gets the restored view
                    spec = None
        elif np is not None:
            spec = _numpy_alias(name, value, values, by_id)
            if spec is None:
                spec = _held_alias(name, value, values, out, torch)
        if spec is None:
            if _of_unnamed_base(value, by_id, torch, np):
                unnamed.setdefault(id(_base_of(value)), []).append(name)
            continue
        kind, data = out.saved[name]
        out.saved[name] = ("alias", [spec, kind, data])
        base = spec[1]
        if (
            spec[0] in ("holder", "held", "tensor_in", "numpy_in")
            or base in out.saved
            or base in out.kept
            or base in out.missed
        ):
            continue
        if id(values[base]) in registered:
            continue  # restored by the checkpoint itself, before the locals
        if _nbytes(values[base]) > MAX_BYTES:
            out.saved[name] = (kind, data)  # a data set's slice: not worth a copy of the set
            continue
        # the base's name is not one the loop changes: restored in place (its holders keep it)
        _save_in_place(out, base, values[base], registered)
    if unnamed:
        _capture_unnamed(out, values, unnamed, torch)


def _base_of(value: Any) -> Any:
    """The tensor a tensor view is of (``_base``), the array a numpy view is of, else None."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value._base
    base = getattr(value, "base", None)
    np = sys.modules.get("numpy")
    return base if np is not None and type(base) is np.ndarray else None


def _of_unnamed_base(value: Any, by_id: dict[int, str], torch: Any, np: Any) -> bool:
    """A view (of the same dtype) of a tensor or array no name holds (``acc = acc[1:]`` in the
    loop, ``head = acc[:2]`` made before it of the one ``acc`` held then)."""
    base = _base_of(value)
    if base is None or id(base) in by_id or base.dtype != value.dtype:
        return False
    if torch is not None and isinstance(value, torch.Tensor):
        return (
            not base.is_sparse and not isinstance(value, torch.nn.Parameter) and bool(value.numel())
        )
    return (
        np is not None
        and base.base is None  # (not an array over a tensor's memory: ``w.numpy()[:, 1:]``)
        and bool(value.size)
        and not value.dtype.hasobject
        and base.flags.c_contiguous
    )


def _capture_unnamed(
    out: Capture, values: Mapping[str, Any], groups: dict[int, list[str]], torch: Any
) -> None:
    """Views of one tensor no name holds (``acc = acc[1:]`` in the loop, beside ``head =
    acc[:2]`` made before it) share memory as recorded: the base's data is saved with the
    first of them, which is made again over the replay's base of a name that holds another
    view of it and that no restore changes (``head``: refilled in place), else over a new
    tensor of that data; the others are views of the first one's base. (Before session 40,
    each was its own copy, and writes through one missed the others, silently.)"""
    for names in groups.values():
        names = sorted(names)
        base = _base_of(values[names[0]])
        if _nbytes(base) > MAX_BYTES:
            continue
        tensor = torch is not None and isinstance(base, torch.Tensor)
        holder: tuple[str, list[Any] | None] | None = None
        for other, v in sorted(values.items()):
            if other.startswith("__") or other in out.kept:
                continue
            if other in out.missed or other in out.busy:
                continue
            if other in out.saved and not out.saved[other][0].endswith("_in_place"):
                continue  # (one refilled in place is still the replay's view)
            if v is not base and _base_of(v) is base:
                holder = (other, None)  # another view of it
                break
            path = _path_to(v, base, 0)
            if path is not None:  # a container that holds it (``state = {"buf": buf}``)
                holder = (other, path)
                break
        data = base.detach().clone() if tensor else base.copy()
        prefix = "" if tensor else "numpy_"
        for i, name in enumerate(names):
            value = values[name]
            geometry: list[Any] = (
                [
                    value.storage_offset() - base.storage_offset(),
                    list(value.shape),
                    list(value.stride()),
                ]
                if tensor
                else [
                    value.__array_interface__["data"][0] - base.__array_interface__["data"][0],
                    [list(value.shape), list(value.strides), value.dtype.str],
                    None,
                ]
            )
            if i:
                spec = [prefix + "base_of", names[0], None, None, *geometry]
            else:
                spec = (
                    [prefix + "base_of", holder[0], holder[1], data, *geometry]
                    if holder
                    else [prefix + "unnamed", None, None, data, *geometry]
                )
            kind, saved = out.saved[name]
            out.saved[name] = ("alias", [spec, kind, saved])


def _capture_view_owners(
    out: Capture, values: Mapping[str, Any], registered: dict[int, str]
) -> None:
    """Save, in place, each name whose tensor a pickled value holds a view of (``parts =
    [stats[0]]``): restore makes that view of it (:meth:`_Pickler._named_view`), so it must be
    restored first, and with the values it had (the loop may have written it through the
    view)."""
    named = _NAMED.get()
    for name in sorted(named.used if named is not None else ()):
        if name in out.saved or name in out.kept or name in out.missed or name in out.busy:
            continue
        if _nbytes(values[name]) <= MAX_BYTES:  # (else the views are copies, as before)
            _save_in_place(out, name, values[name], registered)


def _save_in_place(
    out: Capture,
    name: str,
    value: Any,
    registered: dict[int, str],
    refused: dict[str, str] | None = None,
) -> None:
    """Save ``name``'s tensor or array (or object) to be refilled in place: what else holds it
    or views it keeps it (``refused`` remembers a value that cannot be saved)."""
    try:
        kind, data = _save(value, registered, {}, set())
    except Exception as e:  # whatever a user object raises when pickled
        out.missed[name] = _reason(e)
        if refused is not None:
            refused[name] = out.missed[name]
        return
    if kind in ("tensor", "tensor_at", "pickle"):
        kind += "_in_place"
    out.saved[name] = (kind, data)


def _same_as(name: str, names: list[str], out: Capture) -> str | None:
    """The name ``name``'s very tensor or array is restored through (``last = total``: one
    object, two names), else None (``name`` is the one the others are restored through): a
    name not saved comes first (the loop does not change it by that name: it is then saved
    in place), then one saved in place (the replay's object, refilled), then the first by
    name."""
    others = [n for n in names if n not in out.missed and n not in out.busy]
    if len(others) < 2 or name not in others:
        return None
    unsaved = sorted(n for n in others if n not in out.saved)
    in_place = sorted(n for n in others if n in out.saved and out.saved[n][0].endswith("_in_place"))
    rep = (unsaved or in_place or sorted(others))[0]
    return None if rep == name else rep


def _tensor_alias(
    name: str,
    value: Any,
    values: Mapping[str, Any],
    by_id: dict[int, str],
    holders: RegisteredViews | None,
    torch: Any,
) -> list[Any] | None:
    """``["tensor", base, offset, size, stride]`` for a view of another name's tensor,
    ``["holder", holder, key, same]`` for a tensor of an unregistered module or optimizer
    (``["holder_part", holder, key, offset, size, stride]`` for a part of one), else None."""
    if holders is not None and value.numel() and not value.is_sparse:
        hit = holders.lookup(value)
        if hit is not None:
            return ["holder", hit[0], hit[1], hit[2] == id(value)]
        part = holders.part(value)
        if part is not None:
            return ["holder_part", *part]
    base = value._base
    if base is None and not isinstance(value, torch.nn.Parameter) and value.numel():
        over = _array_owner(name, value, values)
        if over is not None:
            return over
    if base is None or isinstance(value, torch.nn.Parameter) or not value.numel():
        return None
    owner = by_id.get(id(base))
    if owner is None:
        owner = _storage_owner(name, base, values)
    if owner is None:
        # a view of a tensor over a numpy array another name holds, no name holding that
        # tensor (``row = torch.from_numpy(counts)[1:]``): a view of that array's memory
        return _array_owner(name, value, values) if value.device.type == "cpu" else None
    if owner == name:
        return None
    base = values[owner]
    if base.dtype != value.dtype:
        return None
    offset = value.storage_offset() - base.storage_offset()
    return ["tensor", owner, offset, list(value.shape), list(value.stride())]


def _held_alias(
    name: str, value: Any, values: Mapping[str, Any], out: Capture, torch: Any
) -> list[Any] | None:
    """``["held", container, path]`` for a tensor a saved container holds (a tensor is
    pickled with no identity of its own: restored apart from the container's entry),
    ``["tensor_in", container, path, offset, size, stride]`` for a view of a tensor a saved
    container holds (``head = bank["m"][:2]``, ``bank`` a dict the loop changes),
    ``["numpy_in", container, path, offset, shape, strides, dtype]`` for a view of a numpy
    array one holds, else None."""
    np = sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor):
        # (not one the name held as the loop began: copied into, its holders keep it)
        rebound = not out.saved[name][0].endswith("_in_place")
        for other, (kind, _) in out.saved.items() if rebound else ():
            if other != name and kind in ("pickle", "pickle_in_place"):
                path = _path_to(values.get(other), value, 0)
                if path is not None:  # the very tensor (``e0 = ema[0]``, ``e0.mul_(0.5)``)
                    return ["held", other, path]
        base = value._base
        if base is None or isinstance(value, torch.nn.Parameter) or not value.numel():
            return None
        if base.dtype != value.dtype:
            return None
        offset = value.storage_offset() - base.storage_offset()
        view = ["tensor_in", offset, list(value.shape), list(value.stride())]
    elif np is not None and isinstance(value, np.ndarray):
        base = value.base
        if not isinstance(base, np.ndarray) or value.dtype.hasobject or not value.size:
            return None
        offset = value.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        view = ["numpy_in", offset, list(value.shape), list(value.strides), value.dtype.str]
    else:
        return None
    for other, (kind, _) in out.saved.items():
        if other == name or kind not in ("pickle", "pickle_in_place"):
            continue
        path = _path_to(values.get(other), base, 0)
        if path is not None:
            return [view[0], other, path, *view[1:]]
    return None


def _holds_any(container: Any, ids: set[int], budget: list[int], depth: int = 0) -> bool:
    """Whether dicts and lists of ``container`` (three levels, ``budget[0]`` entries) hold an
    object whose id is in ``ids``."""
    if depth >= _WALK_DEPTH:
        return False
    values: Iterable[Any]
    if isinstance(container, dict):
        values = container.values()
    elif isinstance(container, list):
        values = container
    else:
        return False
    for v in values:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if id(v) in ids or _holds_any(v, ids, budget, depth + 1):
            return True
    return False


def _path_to(container: Any, target: Any, depth: int) -> list[Any] | None:
    """The keys from ``container`` (dicts and lists, three levels) to ``target``, else None."""
    if depth >= _WALK_DEPTH:
        return None
    items: Iterable[tuple[Any, Any]]
    if isinstance(container, dict):
        items = ((k, v) for k, v in container.items() if isinstance(k, (str, int)))
    elif isinstance(container, list):
        items = enumerate(container)
    else:
        return None
    for key, v in items:
        if v is target:
            return [key]
        below = _path_to(v, target, depth + 1)
        if below is not None:
            return [key, *below]
    return None


def _nbytes(value: Any) -> int:
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    return int(value.numel() * value.element_size())


def _array_owner(name: str, tensor: Any, values: Mapping[str, Any]) -> list[Any] | None:
    """For a tensor made over a numpy array's memory (``t = torch.from_numpy(counts)``, of a
    view: ``torch.from_numpy(acc[epoch])``) where another name holds that whole array:
    ``["tensor_of", base, offset, size, stride]``, else None. (A tensor over a tensor's
    ``.numpy()`` is not placed: copied, as before.)"""
    np = sys.modules.get("numpy")
    torch = sys.modules["torch"]
    if np is None or tensor.device.type != "cpu":
        return None
    try:
        start = tensor.untyped_storage().data_ptr()
        end = start + tensor.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return None
    if not start:
        return None
    size = tensor.element_size()
    for other, v in values.items():
        if other == name or other.startswith("__"):
            continue
        if isinstance(v, np.ndarray):
            if v.base is not None or not v.flags.c_contiguous or v.dtype.hasobject:
                continue
            lo, kind = v.__array_interface__["data"][0], "tensor_of"
            try:
                if torch.from_numpy(v[:0]).dtype != tensor.dtype:
                    continue  # reinterpreted (``.view(torch.int32)``): copied as before
            except TypeError:  # a dtype torch does not take
                continue
        else:
            continue
        if lo <= start and end <= lo + v.nbytes and (start - lo) % size == 0:
            offset = (start - lo) // size + tensor.storage_offset()
            return [kind, other, offset, list(tensor.shape), list(tensor.stride())]
    return None


def _storage_owner(name: str, tensor: Any, values: Mapping[str, Any]) -> str | None:
    """Another name holding a tensor that is the whole of ``tensor``'s storage (no view), where
    no name holds ``tensor`` itself (``counts.numpy()``'s base is another wrapper of ``counts``).
    """
    torch = sys.modules["torch"]
    try:
        where = (tensor.untyped_storage().data_ptr(), tensor.device)
    except (RuntimeError, NotImplementedError):  # no storage of its own
        return None
    if not where[0]:
        return None  # an empty storage: no memory to share
    for other, v in values.items():
        if other == name or other.startswith("__") or not isinstance(v, torch.Tensor):
            continue
        if v._base is not None or isinstance(v, torch.nn.Parameter) or v.storage_offset():
            continue
        with contextlib.suppress(RuntimeError, NotImplementedError):
            if (v.untyped_storage().data_ptr(), v.device) == where:
                return other
    return None


def _numpy_alias(
    name: str, value: Any, values: Mapping[str, Any], by_id: dict[int, str]
) -> list[Any] | None:
    """``["numpy", base, offset, shape, strides, dtype]`` for a numpy view of the array
    another name holds (``row = acc[epoch]``), ``["numpy_of", ...]`` for one of the tensor
    another name holds (``counts_np = counts.numpy()``), else None."""
    np = sys.modules["numpy"]
    torch = sys.modules.get("torch")
    base = value.base
    if base is None or value.dtype.hasobject or not value.size:
        return None
    kind = "numpy"
    tensor = _numpy_of_tensor(value, torch) if torch is not None else None
    if tensor is not None:
        # a numpy view of a tensor (``counts_np = counts.numpy()``, ``t[::2].numpy()``, a
        # slice of one: numpy keeps the view it was sliced from as its base, not the tensor)
        if tensor.device.type != "cpu":
            return None
        base, kind = tensor, "numpy_of"
    elif not isinstance(base, np.ndarray):
        return None
    owner = by_id.get(id(base))
    if kind == "numpy_of" and (owner is None or not values[owner].is_contiguous()):
        # of a strided view (``t[::2].numpy()``): placed in the whole tensor that holds it
        owner = _storage_owner(name, base, values)
    if owner is None or owner == name:
        return None
    base = values[owner]
    if kind == "numpy_of" and not base.is_contiguous():
        return None
    start = base.data_ptr() if kind == "numpy_of" else base.__array_interface__["data"][0]
    offset = value.__array_interface__["data"][0] - start
    return [kind, owner, offset, list(value.shape), list(value.strides), value.dtype.str]


def _alias_of(spec: Sequence[Any], base: Any) -> Any:
    """The view ``spec`` (:func:`_capture_shared`) of the restored ``base``, else None (the
    base is not there, or not of its kind and size)."""
    try:
        if spec[0] == "tensor":
            import torch

            _, _, offset, size, stride = spec
            if not isinstance(base, torch.Tensor):
                return None
            return base.as_strided(size, stride, base.storage_offset() + offset)
        if spec[0] == "tensor_of":
            import numpy as np
            import torch

            _, _, offset, size, stride = spec
            if not isinstance(base, np.ndarray) or not base.flags.c_contiguous:
                return None
            return torch.from_numpy(base).reshape(-1).as_strided(size, stride, offset)
        if spec[0] in ("numpy", "numpy_of"):
            import numpy as np

            _, _, offset, shape, strides, dtype = spec
            if spec[0] == "numpy_of":
                th = sys.modules.get("torch")
                if th is None or not isinstance(base, th.Tensor):
                    return None
                if base.device.type != "cpu" or not base.is_contiguous():
                    return None
                base = base.detach().numpy()
            if not isinstance(base, np.ndarray) or not base.flags.c_contiguous:
                return None
            return np.ndarray(shape, np.dtype(dtype), buffer=base, offset=offset, strides=strides)
        if spec[0] == "same":
            return base
        if spec[0] in ("base_of", "unnamed"):
            import torch

            _, _, path, data, offset, size, stride = spec
            if spec[0] == "unnamed":
                whole = data
            elif path is not None:
                for key in path:
                    base = base[key]
                if not isinstance(base, torch.Tensor) or base._base is not None:
                    return None
                whole = base
            else:
                if not isinstance(base, torch.Tensor) or base._base is None:
                    return None
                whole = base._base
            if data is not None and whole is not data:  # the replay's base, refilled
                if whole.shape != data.shape or whole.dtype != data.dtype:
                    return None
                with torch.no_grad():
                    whole.copy_(data)
            return whole.as_strided(size, stride, whole.storage_offset() + offset)
        if spec[0] in ("numpy_base_of", "numpy_unnamed"):
            import numpy as np

            _, _, path, data, offset, (shape, strides, dtype), _ = spec
            if spec[0] == "numpy_unnamed":
                whole = data
            elif path is not None:
                for key in path:
                    base = base[key]
                whole = base
            else:
                whole = getattr(base, "base", None)
            if type(whole) is not np.ndarray or not whole.flags.c_contiguous:
                return None
            if data is not None and whole is not data:  # the replay's array, refilled
                if whole.shape != data.shape or whole.dtype != data.dtype:
                    return None
                np.copyto(whole, data)
            return np.ndarray(shape, np.dtype(dtype), buffer=whole, offset=offset, strides=strides)
        if spec[0] == "held":
            for key in spec[2]:
                base = base[key]
            th = sys.modules.get("torch")
            return base if th is not None and isinstance(base, th.Tensor) else None
        if spec[0] in ("tensor_in", "numpy_in"):
            for key in spec[2]:
                base = base[key]
            return _alias_of([spec[0][:-3], None, *spec[3:]], base)
        if spec[0] == "holder":
            _, _, key, same = spec
            if isinstance(key, (tuple, list)) and len(key) == 3 and key[0] == "state":
                return registered_tensor(base, key)
            tensor = base.state_dict(keep_vars=True)[key]
            return tensor if same else tensor.detach()
        if spec[0] == "holder_part":
            _, _, key, offset, size, stride = spec
            return _part_of(base, key, offset, size, stride)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None  # a base of another shape or kind than the recording's
    return None


def _capture_aliases(
    out: Capture,
    values: Mapping[str, Any],
    registered: dict[int, str],
    refused: dict[str, str],
    kinds: set[type],
) -> None:
    """Also save each name the loop does not change that holds an object of a kind found inside
    a saved value (``first_meter`` beside ``meters = {"train": first_meter}``): the loop may
    have changed that object through the container, then put another one there; a restore that
    refilled the container's entry in place would then refill ``first_meter`` with the new
    entry's state. Saved, with the ids, restore gives each its own."""
    inside = _TENSORS.get() or set()
    if not kinds and not inside:
        return
    for name in sorted(set(values)):
        if name in out.saved or name in out.kept or name in out.missed or name in out.busy:
            continue
        if name.startswith("__"):
            continue
        value = values[name]
        if id(value) in registered or name in refused:
            continue
        if id(value) in inside:
            # the very tensor a saved container holds (``ema = kept[0]``, ``v = {"k": buf}``
            # written through ``v``): the name is not one the loop rebinds, so it is restored
            # in place (views of it made before the loop stay true) and the container's entry
            # is that tensor (:func:`_own_ids`; before session 39 pickled, a new tensor)
            _save_in_place(out, name, value, registered, refused)
            continue
        base = _base_of(value) if not isinstance(value, type) else None
        if base is not None and id(base) in inside:
            # a view of a tensor a saved container holds, made before the loop (``head =
            # state["buf"][:2]``, the loop writing ``state["buf"]``): made again of the
            # container's restored entry (session 40: the replay's view stayed on the start's
            # tensor, and the loop's later writes through the container missed it, silently)
            try:
                kind, data = _save(value, registered, {}, set())
            except Exception as e:  # whatever a user object raises when pickled
                refused[name] = out.missed[name] = _reason(e)
                continue
            out.saved[name] = (kind, data)
            spec = _held_alias(name, value, values, out, sys.modules.get("torch"))
            if spec is not None:
                out.saved[name] = ("alias", [spec, kind, data])
            elif kind == "pickle":
                out.saved[name] = ("pickle_in_place", data)  # (as before: refilled)
            continue
        if type(value) not in kinds and not (
            inside
            and isinstance(value, (dict, list))
            and _holds_any(value, inside, [_WALK_ENTRIES])
        ):
            # (a container the loop does not change by name that holds a tensor a saved value
            # holds too: ``mirror = {"k": t}`` beside ``state = {"k": t}``, written through
            # ``state``; saved too, restore gives both one tensor: before session 40 ``mirror``
            # kept the start's, silently)
            continue
        np = sys.modules.get("numpy")
        if np is not None and isinstance(value, np.ndarray):
            try:
                kind, data = _save(value, registered, out.ids.setdefault(name, {}), set())
            except Exception as e:  # whatever a user object raises when pickled
                refused[name] = out.missed[name] = _reason(e)
                continue
            # not a name the loop rebinds: its array (a view too) is the replay's, refilled
            # (what shares its memory stays true: session 39, a copy)
            out.saved[name] = ("pickle_in_place" if kind == "pickle" else kind, data)
            continue
        try:
            script = values.get("__name__")
            out.saved[name] = _save(value, registered, out.ids.setdefault(name, {}), set(), script)
        except Exception as e:  # whatever a user object raises when pickled
            refused[name] = out.missed[name] = _reason(e)


def _used_cache(value: Any) -> bool:
    """A ``functools.lru_cache`` (or ``cache``) function that has been called: what its cache
    holds (a random mask made once) and its statistics (``cache_info().hits``) are state no
    API can restore."""
    info = getattr(value, "cache_info", None)
    if not callable(info) or not hasattr(value, "cache_clear") or isinstance(value, type):
        return False
    try:
        stats = info()
        return bool(stats.hits or stats.misses or stats.currsize)
    except Exception:  # not the functools kind after all
        return False


#: Why an object iterating the loop as its checkpoint is taken is not saved (EXPLAIN shows it).
BUSY_REASON = "its method was iterating the loop as the checkpoint was taken"


def busy_objects(script_frame: types.FrameType | None) -> frozenset[int]:
    """The ids of the objects whose methods run between ``script_frame`` (the script's frame
    of the loop being checkpointed) and the caller: a wrapper iterating a ``flor.loop`` (a
    progress bar's ``__iter__``) is mid-iteration while the loop's checkpoint is taken."""
    out: set[int] = set()
    f: types.FrameType | None = sys._getframe(1)
    while f is not None and f is not script_frame:
        if not f.f_code.co_filename.startswith(_PACKAGE):
            obj = f.f_locals.get("self")
            if obj is not None:
                out.add(id(obj))
        f = f.f_back
    return frozenset(out) if f is script_frame else frozenset()


#: florsql's own source folder: its frames (the loop's generator, the checkpoint) are not a wrapper.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _bound_self(value: Any) -> Any:
    """The object a bound method is bound to (``meter`` of ``meter.update``, ``hist`` of
    ``hist.append``), else None (functions, a module's builtins, class methods)."""
    if not isinstance(value, (types.MethodType, types.BuiltinMethodType)):
        return None
    owner = getattr(value, "__self__", None)
    if owner is None or isinstance(owner, (type, types.ModuleType)):
        return None
    return owner


def _defined_in(fn: types.FunctionType, span: tuple[str, int, int] | None) -> bool:
    if span is None:
        return False
    code = fn.__code__
    return code.co_filename == span[0] and span[1] <= code.co_firstlineno <= span[2]


#: Class attributes that are caches of the interpreter, never a script's state.
_CLASS_CACHES = frozenset({"_abc_impl"})


def _class_state(cls: type, registered: dict[int, str]) -> dict[str, bytes]:
    """The data attributes of a class the script defines (``Stats.steps += 1``), each
    pickled: methods, properties and other descriptors, nested classes and dunders are code;
    but an instance of a descriptor class of the script's own that holds data (``c =
    Store()``, whose ``__set__`` keeps ``self.v``) is state (session 44: it was taken for code,
    and the replay read its start value, 0 for 12, silently)."""
    out: dict[str, bytes] = {}
    for attr, v in vars(cls).items():
        if attr in _CLASS_CACHES or (attr.startswith("__") and attr.endswith("__")):
            continue
        if isinstance(v, (type, staticmethod, classmethod)):
            continue
        own_descriptor = (
            type(v).__module__ == cls.__module__
            and isinstance(getattr(v, "__dict__", None), dict)
            and not isinstance(v, types.FunctionType)
        )
        if hasattr(type(v), "__get__") and not own_descriptor:
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


def _sink(value: Any) -> bool:
    """An output-only object (a progress bar, a logger, a writer), by its class's module. Not
    an in-memory buffer (``io.StringIO``, ``io.BytesIO``): what was written to it is read back
    (``buf.getvalue()``), so it is saved and refilled like any object."""
    if isinstance(value, _BUFFERS):
        return False
    module = type(value).__module__ or ""
    return any(module == m or module.startswith(m + ".") for m in _SINK_MODULES)


#: In-memory files: state (contents, position) a checkpoint saves and a restore refills.
_BUFFERS = (io.StringIO, io.BytesIO)


def _open_file(value: Any) -> bool:
    """A file object on an OS file (``logf = open(...)``): its position and contents are not
    saved, so it counts as restored only where the patched code never reads it as a value
    (``logf.write(...)``, not ``flor.log("pos", logf.tell())``): it is noted ``busy``."""
    return isinstance(value, io.IOBase) and not isinstance(value, _BUFFERS)


def _type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _sink_state(value: Any) -> dict[str, Any]:
    """What an output-only object holds that code may read back: its plain data attributes
    (``pbar.n``, ``pbar.total``, a logger's ``level``), by its class."""
    attrs = getattr(value, "__dict__", None)
    plain = {}
    if isinstance(attrs, dict):
        for attr, v in attrs.items():
            if isinstance(attr, str) and not attr.startswith("__") and _plain_value(v):
                plain[attr] = v
    return {"type": _type_name(value), "attrs": plain}


def _plain_value(v: Any) -> bool:
    return isinstance(v, _IMMUTABLE) or (
        isinstance(v, tuple) and all(isinstance(x, _IMMUTABLE) for x in v)
    )


def _reason(e: Exception) -> str:
    text = str(e) if isinstance(e, (_LiveWorkers, _HoldsIds)) else f"{type(e).__name__}: {e}"
    return text if len(text) <= 200 else text[:197] + "..."


class _TooLarge(Exception):
    pass


def _save(
    value: Any,
    registered: dict[int, str],
    ids: dict[int, int],
    kinds: set[type],
    script: str | None = None,
) -> tuple[str, Any]:
    """``(kind, data)`` for one value (``script``: the script module's ``__name__``)."""
    if _plain_value(value):
        return "value", value
    if _sink(value):
        return "sink", _sink_state(value)
    torch = sys.modules.get("torch")
    views = _VIEWS.get()
    if views is not None and torch is not None:
        ref = views.object_ref(value)
        if ref is not None:
            return "ref", list(ref)  # a group of a registered optimizer, a submodule of a model
    if torch is not None:
        if isinstance(value, torch.Tensor):
            hit = views.lookup(value) if views is not None and value.numel() else None
            if hit is not None and not isinstance(value, torch.nn.Parameter):
                return "view", [hit[0], hit[1]]  # a view of a registered module's tensor
            part = views.part(value) if views is not None and value.numel() else None
            if part is not None and not isinstance(value, torch.nn.Parameter):
                return "part", list(part)  # a part of one (a row of the live weights)
            if hit is not None and hit[2] == id(value):
                # a registered module's parameter itself (``w = net[2].weight``): the replay's
                # own after the restore (session 39: a copy, which missed the optimizer's steps)
                copy = value.detach().to("cpu", copy=True)
                return "registered", [hit[0], hit[1], copy]  # the copy: where the key is gone
            kind = "parameter" if isinstance(value, torch.nn.Parameter) else "tensor"
            copy = value.detach().to("cpu", copy=True)
            if value.requires_grad and value.is_leaf:
                copy.requires_grad_(True)  # a tensor the script trains by hand (w -= lr * w.grad)
            if kind == "tensor" and value.device.type != "cpu":
                return "tensor_at", [copy, str(value.device)]  # put back where it was
            return kind, copy
        if isinstance(value, torch.Generator):
            return "torch_generator", value.get_state().clone()
        loader = _loader_generators(value, torch)
        if loader is not None:
            if _live_workers(value):
                raise _LiveWorkers(
                    "a DataLoader whose persistent worker processes carry state across epochs"
                    " (their RNGs, what the dataset keeps): no checkpoint holds it"
                )
            return "loader", loader
    if hasattr(value, "state_dict") and hasattr(value, "load_state_dict"):
        if (
            script is not None
            and type(value).__module__ == script
            and not _torch_kind(value)
            and not any(
                _torch_kind(v) and id(v) not in registered
                for v in getattr(value, "__dict__", {}).values()
            )
        ):
            # A class the script defines: its own state_dict() may leave fields out (a stopper
            # keeping only ``best`` of its history), so the whole object is saved, as any
            # other; by its state_dict() only where it does not pickle, or where it holds a
            # torch module or optimizer of its own (their state_dict puts them back in place,
            # an optimizer's state keyed by the replay's parameters).
            with contextlib.suppress(Exception):
                data = _dumps(value, registered, ids, kinds)
                if len(data) <= MAX_BYTES:
                    return "pickle", data
            ids.clear()
        from florsql.record.checkpoint import _deep_copy, inner_optimizers, module_extras

        extras = module_extras(value)  # a torch module: what its state_dict leaves out too
        inner = inner_optimizers(value, set(registered))  # a wrapper's base optimizer: s35
        if extras or inner:
            state = {"state": _deep_copy(value.state_dict()), "extras": extras}
            if inner:
                state["inner"] = inner
            return "module_state", state
        return "state", _deep_copy(value.state_dict())
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.random.Generator):
        return "numpy_generator", pickle.dumps(value.bit_generator.state)
    data = _dumps(value, registered, ids, kinds)
    if len(data) > MAX_BYTES:
        raise _TooLarge(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return "pickle", data


def _torch_kind(value: Any) -> bool:
    """A torch module, optimizer or scheduler (a script's subclass too): saved by its
    state_dict, loaded in place (an optimizer holds the module's parameters)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    kinds = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    return isinstance(value, kinds)


class _LiveWorkers(Exception):
    pass


class _HoldsIds(Exception):
    pass


#: The range of the ints that may be an object's ``id()`` (CPython: its address, 16-aligned;
#: a 64-bit process's heap and mappings lie between 4 GiB and 2**48).
_ID_RANGE = (1 << 32, 1 << 48)


def _id_like(obj: Any) -> bool:
    return type(obj) is int and _ID_RANGE[0] <= obj < _ID_RANGE[1] and not obj % 16


def _live_holders(candidates: set[int]) -> list[str]:
    """The classes of the live objects whose ``id()`` is one of ``candidates`` (ints found in a
    value being saved: ``ema[id(p)]``, a set of ``id(batch)``). Such a key means nothing in a
    replay's process, where every object has another id, so the value cannot be restored. The
    scan of the collector's objects runs only where a saved value holds an int of the range."""
    import gc

    found = {id(o): type(o).__name__ for o in gc.get_objects() if id(o) in candidates}
    return sorted(set(found.values()))


def _live_workers(loader: Any) -> bool:
    """A DataLoader with ``persistent_workers`` whose worker processes are running: each keeps
    its RNGs (seeded once, as they started, then drawn from by random augmentations in the
    dataset's ``__getitem__``) and whatever the dataset, ``collate_fn`` or ``worker_init_fn``
    keeps in it from one epoch to the next. A replay that starts at a checkpoint starts new
    workers, seeded from where the RNGs are then: other batches (session 34)."""
    return bool(
        getattr(loader, "persistent_workers", False)
        and getattr(loader, "num_workers", 0) > 0
        and getattr(loader, "_iterator", None) is not None
    )


def _loader_generators(value: Any, torch: Any) -> dict[str, Any] | None:
    """The generator states of a torch DataLoader (its own, its sampler's), else None; and,
    under :data:`_PARTS`, the data attributes of its dataset and samplers of the script's own
    classes (:func:`_loader_parts`)."""
    if not isinstance(value, torch.utils.data.DataLoader):
        return None
    states: dict[str, Any] = {}
    for path in ("generator", "sampler.generator", "batch_sampler.sampler.generator"):
        obj: Any = value
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.Generator):
            states[path] = obj.get_state().clone()
    parts = _loader_parts(value, torch)
    if parts:
        states[_PARTS] = parts
    return states


#: The key of a saved DataLoader's parts (:func:`_loader_parts`; no attribute path starts so).
_PARTS = "__parts__"
#: The objects of a DataLoader whose data attributes are saved, where the script's classes.
_LOADER_PARTS = ("dataset", "sampler", "batch_sampler", "batch_sampler.sampler")
#: A pickled attribute of a loader's part above this size is data, not state: not saved.
_MAX_PART_BYTES = 64 * 1024


def _loader_parts(value: Any, torch: Any) -> dict[str, list[Any]]:
    """``path -> [attrs, pickled]``: the data attributes of the DataLoader's dataset and
    samplers of the script's own classes (a counter a ``__getitem__`` keeps, a curriculum
    sampler's level that ``__iter__`` raises), as a module's are saved
    (:func:`florsql.record.checkpoint._attributes`), less tensors and what pickles over
    :data:`_MAX_PART_BYTES` (the data itself). Session 42: a loader saved only its
    generators, and a dataset or sampler reached only through it came back from a checkpoint
    as the script's start made it (``loader.dataset.hits`` 0 for a full re-run's 60,
    silently). torch's own datasets and samplers keep nothing but their generators."""
    from florsql.record.checkpoint import _attributes

    out: dict[str, list[Any]] = {}
    seen: set[int] = set()
    for path in _LOADER_PARTS:
        obj: Any = value
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if (
            obj is None
            or id(obj) in seen
            or str(type(obj).__module__).split(".")[0] == "torch"
            or not isinstance(getattr(obj, "__dict__", None), dict)
        ):
            continue
        seen.add(id(obj))
        try:
            attrs, pickled = _attributes(obj, torch)
        except Exception:  # whatever a user's object raises: its parts are not saved
            continue
        attrs = {k: v for k, v in attrs.items() if not _holds_tensor(v, torch)}
        pickled = {k: b for k, b in pickled.items() if len(b) <= _MAX_PART_BYTES}
        if attrs or pickled:
            out[path] = [attrs, pickled]
    return out


def _holds_tensor(value: Any, torch: Any, depth: int = 0) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if depth < 3 and type(value) in (list, tuple):
        return any(_holds_tensor(v, torch, depth + 1) for v in value)
    if depth < 3 and type(value) is dict:
        return any(_holds_tensor(v, torch, depth + 1) for v in value.values())
    return False


#: While :func:`capture` runs: the tensors of the registered modules (parameters, buffers) and
#: optimizers (their per-parameter state) by where their data lies,
#: ``(data_ptr, dtype, shape, stride) -> (name, key, id)``
_VIEWS: ContextVar[RegisteredViews | None] = ContextVar("_VIEWS", default=None)

#: Where a registered tensor is found again in a replay: a module's ``state_dict`` key, or
#: ``("state", index, key)`` in an optimizer's ``state_dict()``.
Key = Any


class RegisteredViews:
    """:func:`registered_views` of ``objs``, computed on the first lookup (a checkpoint whose
    locals hold no tensor never pays for it: 1.8 ms for a 400-module model, measured)."""

    def __init__(self, objs: Mapping[str, Any]) -> None:
        self.objs = objs
        self._found: dict[tuple[Any, ...], tuple[str, Key, int]] | None = None
        self._storages: dict[tuple[Any, ...], list[tuple[str, Key, Any]]] = {}
        self._objects: dict[int, tuple[Any, ...]] | None = None

    def object_ref(self, obj: Any) -> tuple[Any, ...] | None:
        """Where ``obj`` lies inside a registered object (:func:`registered_objects`), else
        None."""
        if self._objects is None:
            self._objects = registered_objects(self.objs)
        return self._objects.get(id(obj))

    def _build(self) -> dict[tuple[Any, ...], tuple[str, Key, int]]:
        if self._found is None:
            self._found = registered_views(self.objs, self._storages)
        return self._found

    def lookup(self, t: Any) -> tuple[str, Key, int] | None:
        return self._build().get(_where(t))

    def part(self, t: Any) -> tuple[str, Key, int, list[int], list[int]] | None:
        """A tensor that lies inside a registered one's storage without being that tensor or a
        view of all of it (``net[0].weight.detach()[1]``, a row; the base of
        ``w.detach().numpy()``): ``(name, key, offset, size, stride)``, the offset counted from
        the registered tensor's own, so the replay takes the same part of its tensor."""
        self._build()
        try:
            where = (t.untyped_storage().data_ptr(), t.device)
        except (RuntimeError, NotImplementedError):  # no storage of its own (a meta tensor)
            return None
        for name, key, reg in self._storages.get(where, ()):
            if reg.dtype == t.dtype:
                offset = t.storage_offset() - reg.storage_offset()
                return name, key, offset, list(t.shape), list(t.stride())
        return None


def registered_views(
    objs: Mapping[str, Any],
    storages: dict[tuple[Any, ...], list[tuple[str, Key, Any]]] | None = None,
) -> dict[tuple[Any, ...], tuple[str, Key, int]]:
    """The tensors of the registered torch modules by where their data lies, for
    :func:`capture`: a local holding one of them, or a view of one (``snap = net.state_dict()``,
    no copy: its tensors are the live weights), is saved as a reference to it, not a copy.
    Also the per-parameter state of a registered optimizer (``buf =
    opt.state[p]["momentum_buffer"]``: the live buffer, changed in place after the step loop
    by an epoch's end), and, in ``storages``, each tensor by its storage, for a part of one
    (:meth:`RegisteredViews.part`)."""
    torch = sys.modules.get("torch")
    out: dict[tuple[Any, ...], tuple[str, Key, int]] = {}
    if torch is None:
        return out
    for name, obj in objs.items():
        tensors: list[tuple[Key, Any]] = []
        if isinstance(obj, torch.nn.Module):
            tensors = list(obj.state_dict(keep_vars=True).items())
        elif isinstance(obj, torch.optim.Optimizer):
            try:
                state = obj.state_dict()["state"]
            except Exception:  # torch's own state_dict fails (a parameter out of its groups)
                continue
            tensors = [(("state", i, k), t) for i, st in state.items() for k, t in st.items()]
        if isinstance(obj, torch.nn.Module):
            # the gradients too (``g0 = net[0].weight.grad`` in the step loop, divided in place
            # through ``p.grad`` after it): checkpoints hold them since session 42, and a local
            # bound to one is the replay's gradient, not a copy apart from it
            tensors += [
                (("grad", k), t.grad) for k, t in obj.named_parameters() if t.grad is not None
            ]
        for key, t in tensors:
            if isinstance(t, torch.Tensor) and t.numel() and not t.is_sparse:
                out.setdefault(_where(t), (name, key, id(t)))
                if storages is not None:
                    with contextlib.suppress(RuntimeError, NotImplementedError):
                        where = (t.untyped_storage().data_ptr(), t.device)
                        storages.setdefault(where, []).append((name, key, t))
    return out


def registered_objects(objs: Mapping[str, Any]) -> dict[int, tuple[Any, ...]]:
    """The containers and submodules inside the registered objects, by id: a registered
    optimizer's ``param_groups``, each group dict and its ``params`` list, each parameter's
    state dict (``opt.state[p]``), and a registered module's submodules. A local bound to one
    of them in a loop (``group = opt.param_groups[0]`` in the step loop, read after the
    scheduler's step) is the live object while recording; saved as a copy, the replay's was
    frozen at the checkpoint (the learning rate one scheduler step behind, silently: session
    37). Saved as a reference (:func:`resolve_object`), it is the replay's live object."""
    torch = sys.modules.get("torch")
    out: dict[int, tuple[Any, ...]] = {}
    if torch is None:
        return out
    for name, obj in objs.items():
        if isinstance(obj, torch.optim.Optimizer):
            groups = getattr(obj, "param_groups", None)
            if not isinstance(groups, list):
                continue
            out.setdefault(id(groups), ("param_groups", name, 0))
            index = 0
            for i, group in enumerate(groups):
                if not isinstance(group, dict):
                    continue
                out.setdefault(id(group), ("group", name, i))
                params = group.get("params")
                if isinstance(params, list):
                    out.setdefault(id(params), ("params", name, i))
                    for p in params:
                        state = obj.state.get(p) if isinstance(obj.state, dict) else None
                        if isinstance(state, dict):
                            out.setdefault(id(state), ("pstate", name, index))
                        index += 1
        elif isinstance(obj, torch.nn.Module):
            for path, sub in obj.named_modules():
                if path:
                    out.setdefault(id(sub), ("module", name, path))
        elif not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            _walk_registered(obj, name, [], out, [_WALK_ENTRIES])
    return out


#: How far :func:`_walk_registered` looks into a registered plain object: levels, entries.
_WALK_DEPTH = 3
_WALK_ENTRIES = 2048


def _walk_registered(
    value: Any, name: str, path: list[Any], out: dict[int, tuple[Any, ...]], budget: list[int]
) -> None:
    """The mutable objects inside a registered plain object (``hist = {"loss": [], ...}`` given
    to ``flor.checkpointing``, pickled whole), by their path from it: a local bound to one
    (``losses = hist["loss"]`` in the step loop, appended to through ``hist`` after it) is
    saved as a reference to the replay's (a copy lost the later appends: ``n_losses`` 19 for
    a full re-run's 20, silently: session 37)."""
    if len(path) >= _WALK_DEPTH:
        return
    items: Iterable[tuple[str, Any, Any]]
    if isinstance(value, dict):
        items = (("k", k, v) for k, v in value.items() if isinstance(k, (str, int)))
    elif isinstance(value, (list, collections.deque)):
        items = (("i", i, v) for i, v in enumerate(value))
    elif _plain_object(value):
        items = (("a", k, v) for k, v in vars(value).items())
    else:
        return
    for step, key, v in items:
        budget[0] -= 1
        if budget[0] < 0:
            return
        if isinstance(v, (*_IMMUTABLE, tuple, *_CODE)) or _of_torch(v):
            # torch objects in a registered container are restored their own way (a list of
            # models: by their state_dicts, or made anew): not a reference, which would bind
            # a name to whichever object the restore left there
            continue
        where = [*path, [step, key]]
        out.setdefault(id(v), ("item", name, where))
        _walk_registered(v, name, where, out, budget)


def _of_torch(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module == "torch" or module.startswith("torch.") or _torch_kind(value)


def _plain_object(value: Any) -> bool:
    """An instance of a plain class (its state in ``__dict__``), not a torch object."""
    return (
        hasattr(value, "__dict__")
        and not isinstance(value, (type, types.ModuleType))
        and not _torch_kind(value)
        and type(value).__module__ not in ("builtins", "torch")
    )


def resolve_object(objs: Mapping[str, Any], ref: Sequence[Any]) -> Any:
    """The replay's object at ``ref`` (:func:`registered_objects`)."""
    kind, name, arg = ref
    obj = objs[name]
    if kind == "param_groups":
        return obj.param_groups
    if kind == "group":
        return obj.param_groups[arg]
    if kind == "params":
        return obj.param_groups[arg]["params"]
    if kind == "pstate":
        params = [p for g in obj.param_groups for p in g["params"]]
        return obj.state[params[arg]]
    if kind == "module":
        return obj.get_submodule(arg)
    if kind == "item":
        for step, key in arg:
            obj = getattr(obj, key) if step == "a" else obj[key]
        return obj
    raise ValueError(f"unknown reference {ref!r}")


def registered_tensor(obj: Any, key: Key) -> Any:
    """The replay's tensor at ``key`` of the registered ``obj`` (:func:`registered_views`)."""
    if isinstance(key, (tuple, list)) and len(key) == 3 and key[0] == "state":
        return obj.state_dict()["state"][key[1]][key[2]]
    if isinstance(key, (tuple, list)) and len(key) == 2 and key[0] == "grad":
        return dict(obj.named_parameters())[key[1]].grad  # the gradient itself: its identity
    return obj.state_dict(keep_vars=True)[key].detach()


def _part_of(obj: Any, key: Key, offset: int, size: list[int], stride: list[int]) -> Any:
    base = registered_tensor(obj, key).detach()
    return base.as_strided(size, stride, base.storage_offset() + offset)


def _where(t: Any) -> tuple[Any, ...]:
    return (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()), t.device)


def _numpy_of_tensor(arr: Any, torch: Any) -> Any:
    """The tensor a numpy array is a view of (``w.detach().numpy()``, a slice of it), else None."""
    base = arr.base
    while base is not None and not isinstance(base, torch.Tensor):
        base = getattr(base, "base", None)
    return base


#: Types no persistent reference is made for (checked first: a list of 10,000 floats calls
#: ``persistent_id`` 10,000 times).
_SCALARS = frozenset({float, str, bool, bytes, type(None), complex})


#: What a list of values logged over a run holds.
_NUMBERS = frozenset({int, float, bool, str, type(None)})


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, registered: dict[int, str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.registered = registered
        self.views = _VIEWS.get()
        self.torch = sys.modules.get("torch") if self.views is not None else None
        self.np = sys.modules.get("numpy") if self.views is not None else None
        #: ints that may be an object's ``id()`` (:func:`_live_holders` looks them up)
        self.id_like: set[int] = set()
        self.named = _NAMED.get()
        self.tensor_type = getattr(sys.modules.get("torch"), "Tensor", None)
        self.np_type = getattr(sys.modules.get("numpy"), "ndarray", None)

    def _named_array_view(self, arr: Any) -> Any:
        """:meth:`_named_view` for a numpy view of the array a name holds."""
        base = arr.base
        if type(base) is not self.np_type or arr.dtype.hasobject or not arr.size:
            return None
        assert self.named is not None
        owner = self.named.owner(base)
        if owner is None:
            return None
        self.named.used.add(owner)
        offset = arr.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        shape = (tuple(arr.shape), tuple(arr.strides), arr.dtype.str)
        return ("local_numpy_view", owner, offset, shape, arr.copy())

    def _named_view(self, obj: Any) -> Any:
        """A view of the tensor a name of the frame holds (``parts = [stats[0]]``, ``meters =
        {"loss": total[:1]}``): a reference to the same view of that name's restored tensor,
        with a copy for where it is not there (session 40: a copy, and the loop's writes
        through one then missed the other, silently)."""
        if self.np_type is not None and type(obj) is self.np_type:
            return self._named_array_view(obj)
        if self.tensor_type is None or type(obj) is not self.tensor_type:
            return None
        base = obj._base
        if base is None or base.dtype != obj.dtype or not obj.numel() or obj.is_sparse:
            return None
        assert self.named is not None
        owner = self.named.owner(base)
        if owner is None:
            owner = self.named.covering(obj)
            if owner is None:
                return None
            base = self.named.values[owner]
        self.named.used.add(owner)
        offset = obj.storage_offset() - base.storage_offset()
        copy = obj.detach().to("cpu", copy=True)
        # (tuples: the lists of a reference would count as lists the value holds)
        return ("local_view", owner, offset, tuple(obj.shape), tuple(obj.stride()), copy)

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is int:
            if _id_like(obj):
                self.id_like.add(obj)
            return None
        if kind in _SCALARS:
            return None  # (most of what a history list holds: no reference can be one)
        found = self.registered.get(id(obj))
        if found is not None:
            return found
        if self.named is not None:
            ref = self._named_view(obj)
            if ref is not None:
                return ref
        if self.torch is None:
            return None
        assert self.views is not None
        if not isinstance(obj, (str, bytes, float, bool, type(None))):
            ref = self.views.object_ref(obj)
            if ref is not None:
                return ("ref", *ref)
        if self.np is not None and isinstance(obj, self.np.ndarray):
            return self._numpy_view(obj)
        if not isinstance(obj, self.torch.Tensor):
            return None
        if not obj.numel() or obj.is_sparse:
            return None
        hit = self.views.lookup(obj)
        if hit is None:
            part = self.views.part(obj)
            return None if part is None else ("part", *part)
        name, key, tid = hit
        return ("view", name, key, tid == id(obj))  # the tensor itself, or a view of its data

    def _numpy_view(self, arr: Any) -> Any:
        """A numpy array that is a view of a registered tensor (``w_np =
        net[0].weight.detach().numpy()``: the live weights, changed in place by code after the
        checkpoint, an epoch's end shrink): a reference to the same part of the replay's tensor
        (a copy was restored before session 37, frozen at the checkpoint)."""
        assert self.views is not None and self.torch is not None
        tensor = _numpy_of_tensor(arr, self.torch)
        if tensor is None or not arr.size or tensor.device.type != "cpu":
            return None
        part = self.views.part(tensor)
        if part is None:
            return None
        name, key, _, _, _ = part
        data = arr.__array_interface__["data"][0]
        first = registered_tensor(self.views.objs[name], key)
        offset = data - first.data_ptr()
        return ("numpy", name, key, offset, list(arr.shape), list(arr.strides), arr.dtype.str)


class _Unpickler(pickle.Unpickler):
    def __init__(
        self, file: io.BytesIO, objs: dict[str, Any], done: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(file)
        self.objs = objs
        self.states: dict[str, dict[str, Any]] = {}
        self.done = done  # the names restored so far (for ``local_view``)

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "local_numpy_view":
            _, name, offset, (shape, strides, dtype), copy = pid
            base = self.done.get(name) if self.done is not None else None
            view = _alias_of(["numpy", name, offset, shape, strides, dtype], base)
            return copy if view is None else view
        if isinstance(pid, tuple) and pid and pid[0] == "local_view":
            _, name, offset, size, stride, copy = pid
            base = self.done.get(name) if self.done is not None else None
            view = _alias_of(["tensor", name, offset, size, stride], base)
            if view is None or view.dtype != copy.dtype:
                return copy
            return view
        if isinstance(pid, tuple) and pid and pid[0] == "view":
            _, name, key, same = pid
            if isinstance(key, tuple):  # an optimizer's state tensor: the very tensor
                return registered_tensor(self.objs[name], key)
            if name not in self.states:
                self.states[name] = self.objs[name].state_dict(keep_vars=True)
            tensor = self.states[name][key]
            return tensor if same else tensor.detach()
        if isinstance(pid, tuple) and pid and pid[0] == "ref":
            return resolve_object(self.objs, pid[1:])
        if isinstance(pid, tuple) and pid and pid[0] == "part":
            _, name, key, offset, size, stride = pid
            return _part_of(self.objs[name], key, offset, size, stride)
        if isinstance(pid, tuple) and pid and pid[0] == "numpy":
            _, name, key, offset, shape, strides, dtype = pid
            return _numpy_part(self.objs[name], key, offset, shape, strides, dtype)
        return self.objs[pid]


def _numpy_part(
    obj: Any, key: Key, offset: int, shape: list[int], strides: list[int], dtype: str
) -> Any:
    """The numpy view (:meth:`_Pickler._numpy_view`) of the replay's registered tensor."""
    import numpy as np

    full = registered_tensor(obj, key).detach().numpy()
    flat = full.reshape(-1).view(np.uint8)[offset:]
    return np.lib.stride_tricks.as_strided(flat.view(dtype)[:1], shape, strides)


def _dumps(
    value: Any,
    registered: dict[int, str],
    ids: dict[int, int] | None = None,
    kinds: set[type] | None = None,
) -> bytes:
    """``value`` pickled; ``ids`` gets the memo index -> id of each mutable object in it, and
    ``kinds`` the types of those below its top."""
    buf = io.BytesIO()
    pickler = _Pickler(buf, registered)
    pickler.dump(value)
    if pickler.id_like:
        holders = _live_holders(pickler.id_like)
        if holders:
            raise _HoldsIds(
                f"holds the id() of a live object ({', '.join(holders[:3])}): a replay's"
                " objects have other ids"
            )
    if ids is not None and kinds is not None:
        memo = pickler.memo.copy()
        # an object's own __dict__ is pickled as its state: not a dict the script holds
        states = {id(o.__dict__) for _, o in memo.values() if hasattr(o, "__dict__")}
        torch = sys.modules.get("torch")
        inside = _TENSORS.get()
        np = sys.modules.get("numpy")
        for oid, (index, obj) in memo.items():
            if _mutable(obj):
                ids[index] = oid
                if obj is not value and oid not in states:
                    kinds.add(type(obj))
                if (
                    np is not None
                    and type(obj) is np.ndarray
                    and inside is not None
                    and obj is not value
                ):
                    inside.add(oid)  # (a container another holds too: one array back)
            elif torch is not None and isinstance(obj, torch.Tensor):
                # a tensor inside a container (``kept = [ema]``): another name may hold it
                # (``ema``), and both must get one tensor back
                ids[index] = oid
                if inside is not None and obj is not value:
                    inside.add(oid)
    return buf.getvalue()


#: While :func:`capture` runs: the ids of the tensors found inside pickled values.
_TENSORS: ContextVar[set[int] | None] = ContextVar("_TENSORS", default=None)


class _Named:
    """The frame's names that hold a whole tensor (no view), by the tensor's id, built on the
    first lookup; and the names a pickled value was found to hold views of (``used``)."""

    def __init__(self, values: Mapping[str, Any], registered: dict[int, str]) -> None:
        self.values = values
        self.registered = registered
        self._by_id: dict[int, str] | None = None
        self.used: set[str] = set()

    def owner(self, base: Any) -> str | None:
        if self._by_id is None:
            torch = sys.modules.get("torch")
            np = sys.modules.get("numpy")
            self._by_id = {}
            for name, v in sorted(self.values.items()):
                if name.startswith("__"):
                    continue
                if np is not None and type(v) is np.ndarray:
                    if v.base is None and v.size and v.flags.c_contiguous:
                        self._by_id.setdefault(id(v), name)
                    continue
                if torch is None or not isinstance(v, torch.Tensor):
                    continue
                if (
                    v._base is None
                    and id(v) not in self.registered
                    and v.numel()
                    and not isinstance(v, torch.nn.Parameter)
                    and not v.is_sparse
                ):
                    self._by_id.setdefault(id(v), name)
        return self._by_id.get(id(base))

    def covering(self, view: Any) -> str | None:
        """A name holding a contiguous view of ``view``'s base (no name holds that base:
        ``t = t[1:]`` in the loop) whose memory covers ``view``'s, else None."""
        torch = sys.modules["torch"]
        base = view._base
        lo = view.storage_offset()
        hi = lo + sum((n - 1) * st for n, st in zip(view.shape, view.stride(), strict=True))
        for name, v in sorted(self.values.items()):
            if name.startswith("__") or not isinstance(v, torch.Tensor) or v is view:
                continue
            if v._base is not base or v.dtype != view.dtype or not v.is_contiguous():
                continue
            if v.storage_offset() <= lo and hi < v.storage_offset() + v.numel():
                return name
        return None


#: While :func:`capture` runs: :class:`_Named` of the frame (a view of a name's tensor inside a
#: pickled value is saved as a reference to that name's restored tensor).
_NAMED: ContextVar[_Named | None] = ContextVar("_NAMED", default=None)


def _mutable(obj: Any) -> bool:
    """An object restore may fill in place (a container, a plain object)."""
    if isinstance(obj, (*_IMMUTABLE, tuple, *_CODE)):
        return False
    torch = sys.modules.get("torch")
    return not (torch is not None and isinstance(obj, torch.Tensor))


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
    merge = _Merge()
    merge.fill = set(cap.fill)
    done = merge.done  # what each restored name holds now
    for name, kind, data in _restore_order(cap):
        cur = current.get(name)
        if kind == "alias":
            spec, kind, data = data
            base = done[spec[1]] if spec[1] in done else current.get(spec[1])
            view = _alias_of(spec, base)
            if view is not None:
                done[name] = view
                _place(merge, cap, name, view)
                rebind_to(frame, rebind, optimized, own, name, view)
                continue
        new = _restored(kind, data, cur, objs, merge, cap.ids.get(name))
        done[name] = cur if new is _IN_PLACE else new
        _place(merge, cap, name, done[name])
        if new is _IN_PLACE:
            continue
        rebind_to(frame, rebind, optimized, own, name, new)
    if rebind:
        write_locals(frame, rebind)
    if cap.grads:
        from florsql.record.checkpoint import put_grad

        for name, grad in cap.grads.items():
            tensor = done.get(name)
            if getattr(tensor, "requires_grad", False) and getattr(tensor, "is_leaf", False):
                put_grad(tensor, grad)


def _place(merge: _Merge, cap: Capture, name: str, obj: Any) -> None:
    """``obj`` (restored for ``name``) stands for the recorded object whose id the capture kept
    (:func:`_own_ids`): a container entry that held that object gets ``obj``, and one that
    held another is not filled into ``obj``."""
    own_id = cap.ids.get(name, {}).get(_OWN)
    if own_id is not None:
        merge.placed.setdefault(own_id, obj)
        merge.owner.setdefault(id(obj), own_id)


def _restore_order(cap: Capture) -> list[tuple[str, str, Any]]:
    """The saved names in the order restore takes them: each after what it is made from (a
    view after its base, a view of a view after that view) and each container after the names
    whose very object it holds (its entry gets that object: :func:`_own_ids`); among those
    free to go, first the tensors, arrays and objects that are no pickled container, and the
    bases of views, then the views of those, then the containers, last the views of what the
    containers hold (a cycle, which capture does not make, is taken in that order)."""
    items = [(n, k, d) for n, (k, d) in cap.saved.items()]
    aliases = {n: d for n, k, d in items if k == "alias"}
    bases = {d[0][1] for d in aliases.values() if d[0][0] not in _OF_CONTAINER}
    owned = {n for n, ids in cap.ids.items() if _OWN in ids}
    own_of = {ids[_OWN]: n for n, ids in cap.ids.items() if _OWN in ids}

    def phase(name: str, kind: str, data: Any) -> int:
        if kind == "alias":
            return 3 if data[0][0] in _OF_CONTAINER else 1
        if kind not in ("pickle", "pickle_in_place") or name in owned or name in bases:
            return 0
        return 2

    after: dict[str, set[str]] = {}
    for name, kind, data in items:
        deps: set[str] = set()
        if kind == "alias" and data[0][1] in cap.saved and data[0][1] != name:
            deps.add(data[0][1])
        elif kind in ("pickle", "pickle_in_place") and name not in owned:
            for rid in cap.ids.get(name, {}).values():
                holder = own_of.get(rid)
                if holder is None or holder == name:
                    continue
                spec = aliases[holder][0] if holder in aliases else None
                if spec is not None and spec[0] in _OF_CONTAINER:
                    continue  # made of what a container holds: after the containers
                deps.add(holder)
        after[name] = deps
    rank = {n: (phase(n, k, d), i) for i, (n, k, d) in enumerate(items)}
    by_name = {n: (n, k, d) for n, k, d in items}
    out: list[tuple[str, str, Any]] = []
    left = set(by_name)
    while left:
        ready = [n for n in left if not (after[n] & left)]
        pick = min(ready or left, key=rank.__getitem__)
        out.append(by_name[pick])
        left.discard(pick)
    return out


#: Alias kinds made of what a container holds.
_OF_CONTAINER = ("held", "tensor_in", "numpy_in")


def rebind_to(
    frame: types.FrameType,
    rebind: dict[str, Any],
    optimized: bool,
    own: set[str],
    name: str,
    new: Any,
) -> None:
    if optimized and name not in own:
        frame.f_globals[name] = new  # a module global the function's loop changed
    else:
        rebind[name] = new


def frame_values(frame: types.FrameType) -> ChainMap[str, Any]:
    """What a name means in ``frame``: its locals, then its module's globals."""
    return ChainMap(frame.f_locals, frame.f_globals)


_IN_PLACE = object()


class _Merge:
    """One restore's bookkeeping: which current object stands for which recorded object.

    ``rid`` maps the id of each unpickled object to its id while recording (where the capture
    kept it); ``placed`` maps a recorded id to the object that now stands for it (a current one
    filled in place, or the unpickled one); ``owner`` maps a current object's id to the recorded
    id it was filled from. Two places that held one object while recording get one object; a
    current object is never filled from two recorded ones (the second place gets its own)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()  # filled objects, where no ids were recorded
        self.rid: dict[int, int] = {}
        self.placed: dict[int, Any] = {}
        self.owner: dict[int, int] = {}
        self.keep: list[Any] = []  # the unpickled objects: their ids stay theirs
        self.done: dict[str, Any] = {}  # what each restored name holds now
        self.fill: set[int] = set()  # recorded ids copied into the current object (Capture.fill)

    def load(self, data: bytes, objs: dict[str, Any], ids: dict[int, int] | None) -> Any:
        unpickler = _Unpickler(io.BytesIO(data), objs, self.done)
        saved = unpickler.load()
        if ids:
            for index, obj in unpickler.memo.copy().items():
                if index in ids:
                    self.rid[id(obj)] = ids[index]
                    self.keep.append(obj)
        return saved

    def adopt(self, saved: Any) -> Any:
        """``saved`` made live as it is, each object in it replaced by the one already standing
        for the same recorded object."""
        rid = self.rid.get(id(saved))
        if rid is None:
            return saved
        if rid in self.placed:
            return self.placed[rid]
        self.placed[rid] = saved
        self.owner[id(saved)] = rid
        if isinstance(saved, list):
            saved[:] = [self.adopt(v) for v in saved]
        elif isinstance(saved, dict):
            for k, v in list(saved.items()):
                saved[k] = self.adopt(v)
        elif _slots(type(saved)) and not hasattr(saved, "__dict__"):
            for name in _slots(type(saved)):
                if hasattr(saved, name):
                    setattr(saved, name, self.adopt(getattr(saved, name)))
        elif hasattr(saved, "__dict__") and not isinstance(saved, type):
            own = saved.__dict__
            for k, v in list(own.items()):
                own[k] = self.adopt(v)
        return saved


def _restored(
    kind: str,
    data: Any,
    cur: Any,
    objs: dict[str, Any],
    merge: _Merge,
    ids: dict[int, int] | None = None,
) -> Any:
    if kind == "value" or kind == "tensor":
        return data
    if kind == "view":
        # A view of a registered module's tensor (``w = net.state_dict()["0.weight"]``): the
        # same view of the replay's module, restored before the locals.
        name, key = data
        if name in objs:
            return registered_tensor(objs[name], key)
        return cur
    if kind == "registered":
        # A registered module's parameter bound by name (``w = net[2].weight``): the replay's
        # parameter itself, restored before the locals (session 39: a copy)
        name, key, copy = data
        own = objs[name].state_dict(keep_vars=True) if name in objs else {}
        if key in own:
            return own[key]
        return _restored("parameter", copy, cur, objs, merge)
    if kind == "ref":
        # A container or submodule of a registered object (``group = opt.param_groups[0]``):
        # the replay's own, restored before the locals (session 37: a copy, frozen)
        if data[1] in objs:
            return resolve_object(objs, data)
        return cur
    if kind == "part":
        # A part of a registered tensor (``row = net[0].weight.detach()[1]``): the same part
        # of the replay's (session 37: a copy, frozen at the checkpoint)
        name, key, offset, size, stride = data
        if name in objs:
            return _part_of(objs[name], key, offset, size, stride)
        return cur
    if kind == "tensor_at":
        # A tensor on an accelerator (``total = torch.zeros((), device="cuda")``): saved on the
        # CPU, put back on its device (a CPU accumulator met the loss on the GPU: an error).
        tensor, device = data
        try:
            moved = tensor.to(device)
        except (RuntimeError, AssertionError):  # that device is not here: left on the CPU
            moved = tensor
        if tensor.requires_grad and not moved.is_leaf:
            moved = moved.detach().requires_grad_(True)
        return moved
    if kind == "tensor_in_place":
        # The name held the tensor it held as the loop began (changed in place only, as by
        # ``total += x``): copied into the tensor it holds now, so what shares it stays true.
        return _copied_into(cur, data)
    if kind == "tensor_at_in_place":
        return _copied_into(cur, data[0])
    if kind == "pickle_in_place":
        # A numpy array the name has held since the loop began (``conf[i, j] += 1``): copied
        # into the array it holds now, so a dict holding it too stays true.
        saved = merge.load(data, objs, ids)
        if fill_in_place(cur, saved):
            return _IN_PLACE
        new = _merged(cur, saved, merge) if cur is not None else merge.adopt(saved)
        return _IN_PLACE if new is cur else new
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
            if path == _PARTS:
                continue
            obj = cur
            for part in path.split("."):
                obj = getattr(obj, part)
            obj.set_state(state)
        from florsql.record.checkpoint import _put_attributes

        for path, (attrs, pickled) in (data.get(_PARTS) or {}).items():
            obj = cur
            for part in path.split("."):
                obj = getattr(obj, part, None)
            if obj is not None:
                _put_attributes(obj, attrs, pickled)
        return _IN_PLACE
    if kind in ("state", "module_state") and not hasattr(cur, "load_state_dict"):
        # Saved by its state_dict, which only an object of its kind can take back: the name
        # held something else where the script starts (``teacher = None``, then a
        # ``copy.deepcopy(net)`` during the run). It cannot be remade from its state.
        from florsql.errors import StoreError

        raise StoreError(
            "cannot restore this checkpoint: a name held an object saved by its state_dict() "
            f"at it ({kind}), and holds a {type(cur).__name__} where the script starts (the "
            "object was made during the run), which cannot take that state; the values that "
            "need it stay NULL"
        )
    if kind == "state":
        from florsql.record.checkpoint import _load_state_dict

        _load_state_dict(cur, data)  # an optimizer keeps its group dicts (aliases hold)
        return _IN_PLACE
    if kind == "module_state":
        from florsql.record.checkpoint import (
            _load_state_dict,
            restore_inner_optimizers,
            restore_module_extras,
        )

        _load_state_dict(cur, data["state"])
        if data["extras"]:
            restore_module_extras(cur, data["extras"])
        restore_inner_optimizers(type(cur).__name__, cur, data.get("inner") or {})
        return _IN_PLACE
    if kind == "class" or kind == "function":
        if kind == "function":
            for attr in [a for a in cur.__dict__ if a not in data]:
                if not (attr.startswith("__") and attr.endswith("__")):
                    delattr(cur, attr)  # set after the checkpoint was taken
        for attr, blob in data.items():
            new = _Unpickler(io.BytesIO(blob), objs).load()
            old = cur.__dict__.get(attr)
            merged = new if old is None else _merged(old, new, merge)
            if merged is not old:
                setattr(cur, attr, merged)
        return _IN_PLACE
    if kind == "numpy_generator":
        cur.bit_generator.state = pickle.loads(data)
        return _IN_PLACE
    if kind == "sink":
        # In place, and only onto an object of the recorded class (a bar made again by the
        # replayed code before the loop it counts): its count and settings as they were.
        attrs = getattr(cur, "__dict__", None)
        if isinstance(attrs, dict) and _type_name(cur) == data["type"]:
            attrs.update(data["attrs"])
        return _IN_PLACE
    if kind == "method_self":
        owner = _bound_self(cur)
        if owner is None:
            return _IN_PLACE  # not a bound method here: nothing to fill
        new = _restored(data[0], data[1], owner, objs, merge, ids)
        if new is _IN_PLACE:
            return _IN_PLACE
        if isinstance(cur, types.MethodType):
            return types.MethodType(cur.__func__, new)
        return getattr(new, cur.__name__)
    saved = merge.load(data, objs, ids)
    new = _merged(cur, saved, merge) if cur is not None else merge.adopt(saved)
    return _IN_PLACE if new is cur else new


def _copied_into(cur: Any, data: Any) -> Any:
    """``data`` copied into the tensor ``cur`` (:data:`_IN_PLACE`) where it has the same shape
    and dtype, else ``data`` itself."""
    import torch

    if isinstance(cur, torch.Tensor) and cur.shape == data.shape and cur.dtype == data.dtype:
        with torch.no_grad():
            cur.copy_(data)
        return _IN_PLACE
    return data


def fill_in_place(cur: Any, saved: Any) -> bool:
    """Refill ``cur`` with ``saved`` (an unpickled copy of it), keeping ``cur`` and, wherever
    it can, what ``cur`` holds; False when ``cur`` cannot be refilled (the caller decides)."""
    if type(cur) is not type(saved):
        return False
    np = sys.modules.get("numpy")
    if np is not None and isinstance(cur, np.ndarray):
        if cur.shape != saved.shape or cur.dtype != saved.dtype or not cur.flags.writeable:
            return False
        np.copyto(cur, saved)  # a registered array changed in place
        return True
    if not _fillable(cur):
        return False
    return _fill(cur, saved, _Merge())


def _fill(cur: Any, saved: Any, merge: _Merge) -> bool:
    """Copy ``saved`` into ``cur`` in place (keeping aliases); False when it cannot.

    What ``cur`` holds is filled in place too, wherever the same place holds an object of the
    same kind: a meter in a dict (``meters["loss"]`` that is also ``train_meter``), a plain
    object in a list, a module's parameters (the optimizer holds them)."""
    if merge.rid.get(id(saved)) is None:
        if id(cur) in merge.seen:
            return True
        merge.seen.add(id(cur))
    if isinstance(cur, list):
        cur[:] = [_merged(c, v, merge) for c, v in zip(cur, saved, strict=False)] + [
            merge.adopt(v) for v in saved[len(cur) :]
        ]
    elif isinstance(cur, dict):
        merged = {
            k: _merged(cur[k], v, merge) if k in cur else merge.adopt(v) for k, v in saved.items()
        }
        cur.clear()
        cur.update(merged)
    elif isinstance(cur, set):
        cur.clear()
        cur.update(saved)
    elif isinstance(cur, (bytearray, array.array)):
        if isinstance(cur, array.array) and cur.typecode != saved.typecode:
            return False
        cur[:] = saved  # a buffer of values: refilled, its holders keep it
    elif isinstance(cur, collections.deque):
        if cur.maxlen != saved.maxlen:
            return False  # fixed when it was made
        items = [_merged(c, v, merge) for c, v in zip(cur, saved, strict=False)]
        cur.clear()
        cur.extend(items + [merge.adopt(v) for v in list(saved)[len(items) :]])
    elif isinstance(cur, random.Random):
        # Its state is the C generator's, not its __dict__ (filling that restored nothing).
        cur.setstate(saved.getstate())
        cur.__dict__.update(saved.__dict__)
    elif _pandas(cur):
        # A DataFrame's or Series' contents are its block manager's, which filling its
        # __dict__ left as they were (session 42: a frame grown each epoch came back empty)
        cur.__setstate__(saved.__getstate__())
    elif isinstance(cur, _BUFFERS) and type(cur) is type(saved):
        # Contents and position are the C object's, not its __dict__ (as for a Random).
        buffer: Any = cur
        buffer.__setstate__(saved.__getstate__())
    elif _slots(type(cur)) and not hasattr(cur, "__dict__"):
        for name in _slots(type(cur)):  # an object with __slots__: filled slot by slot
            if hasattr(saved, name):
                old = getattr(cur, name, None)
                new = getattr(saved, name)
                setattr(cur, name, merge.adopt(new) if old is None else _merged(old, new, merge))
            elif hasattr(cur, name):
                delattr(cur, name)
    elif hasattr(cur, "__dict__") and not isinstance(cur, type):
        own = cur.__dict__
        merged = {
            k: _merged(own[k], v, merge) if k in own else merge.adopt(v)
            for k, v in saved.__dict__.items()
        }
        own.clear()
        own.update(merged)
    else:
        return False
    return True


def _pandas(obj: Any) -> bool:
    """A pandas DataFrame or Series (pandas imported by the script)."""
    pd = sys.modules.get("pandas")
    frame, series = getattr(pd, "DataFrame", None), getattr(pd, "Series", None)
    return frame is not None and series is not None and isinstance(obj, (frame, series))


def _slots(cls: type) -> list[str]:
    """The slot names ``cls`` and its bases declare (``__dict__``/``__weakref__`` aside)."""
    out: list[str] = []
    for base in cls.__mro__:
        declared = base.__dict__.get("__slots__", ())
        for name in [declared] if isinstance(declared, str) else declared:
            if name not in ("__dict__", "__weakref__") and name not in out:
                out.append(name)
    return out


def _merged(cur: Any, saved: Any, merge: _Merge) -> Any:
    """``cur`` filled with ``saved`` where it can be (it keeps its identity), else ``saved``;
    where the recording held one object at two places, the object already standing for it."""
    rid = merge.rid.get(id(saved))
    if rid is not None and rid in merge.placed:
        return merge.placed[rid]
    if cur is saved or type(cur) is not type(saved) or isinstance(cur, _IMMUTABLE):
        return merge.adopt(saved)
    if isinstance(cur, types.MethodType) and isinstance(saved, types.MethodType):
        # a bound method held by a container (``hooks = {"loss": Meter().add}``): its object
        # is the state (session 44: it was taken for code and kept as the replay's fresh one,
        # its count 0.0 for 2.6083, silently)
        owner = _merged(cur.__self__, saved.__self__, merge)
        if owner is cur.__self__ and cur.__func__ is saved.__func__:
            return cur
        return types.MethodType(saved.__func__, owner)
    if rid is not None and rid in merge.fill and _copy_into(cur, saved):
        # where it was as the loop began (Capture.fill): the replay's, refilled
        merge.placed[rid] = cur
        return cur
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(cur, torch.Tensor):
        # Parameters are copied into (a module's, an optimizer's references stay true); other
        # tensors are replaced: one may be a view whose base the loop has since moved on from.
        if isinstance(cur, torch.nn.Parameter) and cur.shape == saved.shape:
            with torch.no_grad():
                cur.copy_(saved)
            new = cur
        else:
            new = saved
        if rid is not None:
            merge.placed[rid] = new  # another place that held it gets this one
        return new
    if rid is not None:
        if merge.owner.get(id(cur), rid) != rid or not _fillable(cur):
            return merge.adopt(saved)  # cur stands for another recorded object already
        merge.placed[rid] = cur
        merge.owner[id(cur)] = rid
    return cur if _fill(cur, saved, merge) else merge.adopt(saved)


def _copy_into(cur: Any, saved: Any) -> bool:
    """Copy the tensor or array ``saved`` into ``cur`` of the same kind, shape and dtype."""
    torch = sys.modules.get("torch")
    np = sys.modules.get("numpy")
    if torch is not None and isinstance(cur, torch.Tensor):
        if (cur.shape, cur.dtype, cur.device) != (saved.shape, saved.dtype, saved.device):
            return False
        with torch.no_grad():
            cur.copy_(saved)
        return True
    if np is not None and isinstance(cur, np.ndarray):
        if (cur.shape, cur.dtype) != (saved.shape, saved.dtype) or not cur.flags.writeable:
            return False
        np.copyto(cur, saved)
        return True
    return False


def _fillable(cur: Any) -> bool:
    return isinstance(
        cur, (list, dict, set, bytearray, array.array, collections.deque, random.Random)
    ) or (hasattr(cur, "__dict__") or bool(_slots(type(cur))))


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
