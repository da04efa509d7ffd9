"""Checkpoints of the objects given to ``flor.checkpointing`` plus the RNG states.

The copy happens on the training thread (so training can go on mutating the objects); the write
happens on the run's background writer. torch is used only where the script imported it.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import pickle
import random
import struct
import sys
import types
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florsql.errors import RecordError, StoreError

FORMAT = "florsql-checkpoint-1"


@dataclass(frozen=True)
class CheckpointRecord:
    """One line of a run's checkpoint manifest."""

    loop: str
    iteration: int
    position: str
    file: str
    bytes: int
    copy_seconds: float
    write_seconds: float


def check_registrable(name: str, obj: Any) -> None:
    """Raise :class:`RecordError` at ``flor.checkpointing`` for objects florsql cannot save."""
    if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
        return
    try:
        pickle.dumps(obj)
    except Exception as e:
        raise RecordError(
            f"flor.checkpointing({name}=...) got a {type(obj).__name__}, which has no "
            f"state_dict()/load_state_dict() and cannot be pickled ({e}); register the objects "
            f"whose state training changes (model, optimizer, scheduler) instead"
        ) from None


def capture(objs: dict[str, Any]) -> dict[str, Any]:
    """Copy the state of ``objs`` and the RNGs, detached from anything training mutates next."""
    states: dict[str, Any] = {}
    pickled: dict[str, bytes] = {}
    extras: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    for name, obj in objs.items():
        if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
            states[name] = _deep_copy(obj.state_dict())
            extra = module_extras(obj)
            if extra:
                extras[name] = extra
            elif (own := script_fields(obj)) is not None:
                fields[name] = list(own)
        else:
            pickled[name] = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "states": states,
        "pickled": pickled,
        "rng": capture_rng(),
    }
    if extras:
        payload["extras"] = extras
    if fields:
        payload["fields"] = fields
    loose = _loose_parameters(objs)
    if loose:
        payload["loose"] = loose
    torch = sys.modules.get("torch")
    if torch is not None:
        # a registered tensor the script trains by hand (``w = torch.zeros(3,
        # requires_grad=True)``): pickling keeps its values, not its ``.grad``
        trained = {
            name: _grad_copy(o)
            for name, o in objs.items()
            if isinstance(o, torch.Tensor) and o.requires_grad and o.is_leaf
        }
        if trained:
            payload["tensor_grads"] = trained
        # an optimizer's state_dict holds its buffers and groups, not what the script set on
        # it (``opt.steps_taken += 1``) nor its ``defaults`` (the settings of the groups
        # ``add_param_group`` adds: ``opt.defaults["lr"] = 0.05`` at one epoch, a group added
        # at a later one; a replay between the two added it at the start's rate: s34)
        kept = {
            name: _attributes(o, torch, skip=("state", "param_groups"))
            for name, o in objs.items()
            if isinstance(o, torch.optim.Optimizer)
        }
        kept = {name: v for name, v in kept.items() if v[0] or v[1]}
        if kept:
            payload["optimizer_attrs"] = {n: list(v) for n, v in kept.items()}
        registered = {id(o) for o in objs.values()}
        inner = {name: inner_optimizers(o, registered, wide=True) for name, o in objs.items()}
        # always there (empty too): a checkpoint without it predates it (see :func:`restore`)
        payload["inner"] = {name: v for name, v in inner.items() if v}
        # and those of schedulers and other objects saved by their state_dict (s36): one
        # without it predates that
        payload["inner_all"] = True
    return payload


def script_fields(obj: Any) -> tuple[dict, dict] | None:
    """The data attributes of a registered object of the script's (not torch's: a module,
    optimizer or scheduler, a ``GradScaler``), saved beside its own ``state_dict``, which may
    leave fields out: an augmenter keeping its probability there and not its ``random.Random``
    nor its count came back, from a later checkpoint, with the start's generator (other draws)
    and count 0, silently (s36). None where there are none."""
    torch = sys.modules.get("torch")
    if type(obj).__module__.split(".", 1)[0] == "torch" or not isinstance(
        getattr(obj, "__dict__", None), dict
    ):
        return None
    if torch is not None:
        kinds = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
        if isinstance(obj, kinds):
            return None
    attrs, pickled = _attributes(obj, torch)
    for k in [k for k in pickled if _holds_torch_objects(vars(obj)[k])]:
        del pickled[k]  # a list of the models it trains: theirs to restore, not copies
    return (attrs, pickled) if attrs or pickled else None


def _holds_torch_objects(value: Any) -> bool:
    """A container holding a torch module, optimizer or scheduler (one level down)."""
    torch = sys.modules.get("torch")
    if torch is None or type(value) not in _CONTAINERS:
        return False
    kinds = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    items = value.values() if isinstance(value, dict) else value
    return any(isinstance(v, kinds) for v in items)


def inner_optimizers(obj: Any, registered: set[int], *, wide: bool = False) -> dict[str, Any]:
    """The state of the optimizers and schedulers an optimizer or a torch module holds as
    attributes (``self.base_optimizer`` of a sharpness-aware wrapper; ``self.optimizer`` and
    ``self.scheduler`` of a Lightning-style model), by dotted path, where not registered
    themselves: the holder's ``state_dict`` leaves them out. A replay from a checkpoint stepped
    them from no momentum and the start's learning rate (silently where nothing recorded read
    them; ``KeyError: 'momentum_buffer'`` where today's statement read the buffers: s35).
    ``wide`` (an object given to ``flor.checkpointing``): also those held by any other object
    saved by its ``state_dict``, a scheduler's ``optimizer`` first (s36: a scheduler registered
    without the optimizer it steps, which no name of the loop held, restored its own state and
    left the optimizer's rate at the start's: lr 0.1 for a full re-run's 0.025, silently).
    Empty for anything else."""
    held = _held_optimizers(obj, registered, wide=wide)
    return {k: _deep_copy(v.state_dict()) for k, v in held.items()}


def _held_optimizers(obj: Any, registered: set[int], *, wide: bool = False) -> dict[str, Any]:
    """:func:`inner_optimizers`' objects themselves, by dotted path."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    if isinstance(obj, torch.optim.Optimizer):
        holders: list[tuple[str, Any]] = [("", obj)]
    elif isinstance(obj, torch.nn.Module):
        holders = list(obj.named_modules())
    elif wide and _by_state_dict(obj) and isinstance(getattr(obj, "__dict__", None), dict):
        holders = [("", obj)]  # a scheduler, a trainer with a state_dict of its own
    else:
        return {}
    kinds = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    out: dict[str, Any] = {}
    for prefix, holder in holders:
        for k, v in vars(holder).items():
            if isinstance(v, kinds) and v is not obj and id(v) not in registered:
                out[f"{prefix}.{k}" if prefix else k] = v
    return out


def _holds_optimizers(obj: Any, objs: dict[str, Any], *, wide: bool = False) -> bool:
    """Whether ``obj`` holds an unregistered optimizer or scheduler (for :func:`restore`)."""
    return bool(_held_optimizers(obj, {id(o) for o in objs.values()}, wide=wide))


def _by_state_dict(obj: Any) -> bool:
    return hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")


def restore_inner_optimizers(name: str, obj: Any, inner: dict[str, Any]) -> None:
    """Load :func:`inner_optimizers`' states back into ``obj``'s optimizers, in place."""
    for path, state in inner.items():
        prefix, _, attr = path.rpartition(".")
        try:
            holder = obj.get_submodule(prefix) if prefix else obj
        except (AttributeError, TypeError):
            holder = None
        held = getattr(holder, attr, None)
        if not hasattr(held, "load_state_dict"):
            raise StoreError(
                f"cannot restore this checkpoint: {name!r} held an optimizer or a scheduler as "
                f"{path!r} and holds none where the script starts; the values that need it "
                "stay NULL"
            )
        _load_state_dict(held, state)


def _loose_parameters(objs: dict[str, Any]) -> dict[str, list[Any]]:
    """Per registered optimizer: the values of the parameters it trains that no registered
    module (or registered tensor) holds, as ``[group, position, tensor]``.

    An optimizer's ``state_dict`` keeps its buffers (momentum), not the parameters it updates:
    those are the model's. Tensors made by hand (``w = torch.zeros(6, 2,
    requires_grad=True)``, handed to ``SGD([w])``) or a model left out of
    ``flor.checkpointing(optimizer=opt)`` were restored by nothing, and a replay from the
    checkpoint computed with their values at the script's start, silently."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    optimizers = {n: o for n, o in objs.items() if isinstance(o, torch.optim.Optimizer)}
    if not optimizers:
        return {}
    held: set[int] = set()
    for obj in objs.values():
        if isinstance(obj, torch.nn.Module):
            held.update(id(p) for p in obj.parameters())
        elif isinstance(obj, torch.Tensor):
            held.add(id(obj))
    out: dict[str, list[Any]] = {}
    for name, opt in optimizers.items():
        rows = [
            [g, i, p.detach().to("cpu", copy=True), _grad_copy(p)]
            for g, group in enumerate(opt.param_groups)
            for i, p in enumerate(group["params"])
            if id(p) not in held
        ]
        if rows:
            out[name] = rows
    return out


def _grad_copy(p: Any) -> Any:
    """A detached copy of ``p``'s gradient on the CPU (None: it holds none)."""
    return None if p.grad is None else p.grad.detach().to("cpu", copy=True)


def _restore_loose(name: str, opt: Any, rows: list[Any]) -> None:
    """Copy :func:`_loose_parameters`' values (and gradients) into ``opt``'s parameters, in
    place."""
    torch = sys.modules["torch"]
    for row in rows:
        g, i, value = row[:3]
        try:
            param = opt.param_groups[g]["params"][i]
        except (IndexError, KeyError):
            param = None
        if param is None or param.shape != value.shape:
            raise StoreError(
                f"cannot restore this checkpoint: {name!r}'s parameter {i} of group {g} "
                "is not in the replay's optimizer as the checkpoint saved it (its parameters "
                "changed during the run); the values that need it stay NULL"
            )
        with torch.no_grad():
            param.copy_(value)
        if len(row) > 3:  # rows of checkpoints before session 42 hold no gradient
            put_grad(param, row[3])


def module_extras(obj: Any) -> dict[str, Any]:
    """What a torch module's ``state_dict`` leaves out, per submodule (by its name in
    ``named_modules``): its ``training`` flag, its non-persistent buffers, its plain data
    attributes (``net.global_step = 0``, then ``net.global_step += 1`` in the loop: numbers,
    strings, tensors, and lists, tuples and dicts of them) and which of its parameters need no
    gradient (``net[0].requires_grad_(False)`` at epoch 1: a task starting at epoch 2 trained
    the frozen layer, silently), and the plain attributes the script set on its parameters
    (``p.lr_mult = 1.0`` at a milestone: s34). Code reading them after a restore read the
    replay process's fresh values (0), silently. Empty for anything else."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.nn.Module):
        return {}
    out: dict[str, Any] = {}
    for prefix, module in obj.named_modules():
        attrs, pickled = _attributes(module, torch, skip=("training",))
        non_persistent: set[str] = getattr(module, "_non_persistent_buffers_set", set())
        buffers = {
            k: b.detach().clone()
            for k, b in module._buffers.items()
            if k in non_persistent and b is not None
        }
        frozen = [k for k, p in module._parameters.items() if p is not None and not p.requires_grad]
        # what the script set on a parameter (``p.lr_mult = 0.1``): in no state_dict either
        tagged = {
            k: list(_attributes(p, torch))
            for k, p in module._parameters.items()
            if p is not None and vars(p)
        }
        out[prefix] = {
            "training": module.training,
            "attrs": attrs,
            "pickled": pickled,
            "buffers": buffers,
            "frozen": frozen,  # always there: a checkpoint without it predates it
            "tagged": {k: v for k, v in tagged.items() if v[0] or v[1]},
            "type": _type_name(module),
            "hooks": _hooks(module),
            # the gradients its parameters hold (in no state_dict): the code after a skipped
            # step loop steps on them (the rest of an accumulation, ``opt.step()`` after the
            # loop), and accumulation across epochs carries them into the next (session 42:
            # both replayed on empty gradients, silently); always there: a checkpoint
            # without it predates it
            "grads": _grads(module._parameters),
        }
    return out


def _grads(params: dict[str, Any]) -> dict[str, Any]:
    """The gradient of each parameter that holds one, detached copies (None: no parameter
    has one; absent from the map: that parameter's ``.grad`` is None)."""
    return {
        k: p.grad.detach().clone()
        for k, p in params.items()
        if p is not None and p.grad is not None
    }


def put_grad(param: Any, grad: Any) -> None:
    """Make ``param.grad`` the saved ``grad`` (None: no gradient), in place where it holds
    one of the same kind (code may hold the gradient tensor itself)."""
    if grad is None:
        param.grad = None
        return
    current = param.grad
    torch = sys.modules["torch"]
    if (
        current is not None
        and current.shape == grad.shape
        and current.dtype == grad.dtype
        and not current.is_sparse
        and not grad.is_sparse
    ):
        with torch.no_grad():
            current.copy_(grad)
        return
    try:
        param.grad = grad.to(param.device, copy=True)
    except RuntimeError as e:  # another shape or dtype than the parameter's
        raise StoreError(
            f"cannot restore this checkpoint: a saved gradient does not fit its parameter "
            f"({e}); the values that need it stay NULL"
        ) from e


def structure(objs: dict[str, Any]) -> dict[str, Any]:
    """What a replay's objects must match for a checkpoint of ``objs`` to be put back into them:
    per torch module, each submodule's class, hooks, parameter and buffer names, and their
    dtypes and devices (``net.double()`` during the run: its later checkpoints hold float64
    tensors, which ``load_state_dict`` casts into a float32 model made as at the start); per
    optimizer, its parameter groups' sizes. Compared with the same at the
    ``flor.checkpointing`` block's start (:func:`structure_change`): a replay builds its objects
    as the script's start does."""
    torch = sys.modules.get("torch")
    out: dict[str, Any] = {}
    if torch is None:
        return out
    for name, obj in objs.items():
        if isinstance(obj, torch.nn.Module):
            out[name] = [
                (
                    prefix,
                    _type_name(m),
                    _hooks(m),
                    [k for k, p in m._parameters.items() if p is not None],
                    [k for k, b in m._buffers.items() if b is not None],
                    _kinds(m),
                )
                for prefix, m in obj.named_modules()
            ]
        elif isinstance(obj, torch.optim.Optimizer):
            out[name] = [len(g["params"]) for g in obj.param_groups]
    if out:
        out[LINKS] = _links(objs, torch)
    return out


#: The key of :func:`structure` that holds how the registered objects share parameters.
LINKS = "<links>"


def _links(objs: dict[str, Any], torch: Any) -> dict[str, Any]:
    """How the registered objects share parameters: which name of a registered model each
    optimizer's parameter is (None: no registered model's), and which parameter names of the
    models are another's (tied). A state_dict keeps values, not these: a head replaced during
    the run while the optimizer still held the old one's parameters (``net[2] = nn.Linear(...)``)
    or a weight tied during it (``dec.weight = enc.weight``) came back, from a later checkpoint,
    as the script's start made them: the head trained, the weights untied, silently."""
    first: dict[int, str] = {}
    tied: list[tuple[str, str]] = []
    for name, obj in objs.items():
        if isinstance(obj, torch.nn.Module):
            for k, p in obj.named_parameters(remove_duplicate=False):
                where = f"{name}.{k}"
                was = first.setdefault(id(p), where)
                if was != where:
                    tied.append((where, was))
    optimizers = {n: o for n, o in objs.items() if isinstance(o, torch.optim.Optimizer)}
    held = {
        name: [first.get(id(p)) for g in obj.param_groups for p in g["params"]]
        for name, obj in optimizers.items()
    }
    # ``opt.register_step_post_hook(clip)`` at a milestone: in no state_dict either
    hooks = {name: _optimizer_hooks(obj) for name, obj in optimizers.items()}
    return {"tied": tied, "held": held, "hooks": hooks}


def _optimizer_hooks(opt: Any) -> list[str]:
    out = []
    for attr in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks"):
        for hook in (getattr(opt, attr, None) or {}).values():
            func = getattr(hook, "func", hook)
            name = getattr(func, "__qualname__", None) or type(func).__qualname__
            out.append(f"{attr.removeprefix('_optimizer_')}:{name}")
    return sorted(out)


def _links_change(start: dict[str, Any], now: dict[str, Any]) -> str | None:
    for where, same in now["tied"]:
        if (where, same) not in start["tied"]:
            return f"{where} became {same} during the run (tied)"
    for where, same in start["tied"]:
        if (where, same) not in now["tied"]:
            return f"{where} was {same} where the block starts and was untied during the run"
    for name, was in start.get("hooks", {}).items():
        if now.get("hooks", {}).get(name, was) != was:
            return f"{name!r} got a step hook during the run (or lost one)"
    for name, was in start["held"].items():
        cur = now["held"].get(name, was)
        for i, (a, b) in enumerate(zip(was, cur, strict=False)):
            if a != b:
                return (
                    f"{name!r}'s parameter {i} is {b or 'no registered model parameter'} at this "
                    f"checkpoint and was {a or 'no registered model parameter'} where the block "
                    "starts (a layer or parameter replaced during the run)"
                )
    return None


def _kinds(module: Any) -> dict[str, str]:
    """The dtype and device of each of a module's own parameters and buffers."""
    out = {}
    for table in (module._parameters, module._buffers):
        for k, t in table.items():
            if t is not None:
                out[k] = f"{str(t.dtype).removeprefix('torch.')} on {t.device}"
    return out


def structure_change(start: dict[str, Any], now: dict[str, Any]) -> str | None:
    """Why a checkpoint taken with structure ``now`` cannot be put into objects made as at the
    block's start (``start``), or None."""
    for name, was in start.items():
        cur = now.get(name)
        if cur == was:
            continue
        if name == LINKS:
            continue  # after the objects' own changes, which say more
        if cur is None or not isinstance(was, list) or not was or not isinstance(was[0], tuple):
            if isinstance(was, list) and isinstance(cur, list):
                return (
                    f"{name!r} has parameter groups of sizes {cur}, {was} where the block "
                    "starts (add_param_group during the run)"
                )
            return f"{name!r} changed its kind during the run"
        before = {m[0]: m for m in was}
        for prefix, kind, hooks, params, buffers, kinds in cur:
            where = f"{name}{'.' + prefix if prefix else ''}"
            old = before.pop(prefix, None)
            if old is None:
                return f"{where} was added during the run"
            if old[1] != kind:
                return f"{where} became a {kind.rsplit('.', 1)[-1]} during the run"
            if old[2] != hooks:
                return f"{where} got a hook during the run"
            if old[3] != params or old[4] != buffers:
                return f"{where}'s parameters or buffers changed during the run (pruning)"
            if old[5] != kinds:
                k, then, now_ = next(
                    (k, v, kinds.get(k)) for k, v in old[5].items() if kinds.get(k) != v
                )
                return (
                    f"{where}.{k} became {now_} during the run (it was {then} where the block "
                    "starts: .double(), .half() or .to())"
                )
        if before:
            return f"{name}.{next(iter(before))} was removed during the run"
    if LINKS in start and LINKS in now:
        return _links_change(start[LINKS], now[LINKS])
    return None


#: Containers an object's attribute may hold beyond plain values (``net.seen = set()``,
#: ``net.label_counts = Counter()``): pickled beside the checkpoint's tensors. Other objects
#: (a config, a tokenizer) are left out: shared by many submodules, costly to copy each time.
_CONTAINERS = (
    set,
    frozenset,
    list,
    tuple,
    dict,
    collections.Counter,
    collections.defaultdict,
    collections.OrderedDict,
    collections.deque,
)


#: An attribute pickled larger than this is left out (a data set kept on the module).
_MAX_ATTRIBUTE_BYTES = 16 * 1024 * 1024


def _attributes(obj: Any, torch: Any, skip: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """An object's own data attributes: plain values as they are, containers of other values
    and random generators pickled (bytes, so the file stays loadable with
    ``weights_only=True``); what does not pickle is left out. ``_private`` ones only where the
    script's own class set them (:func:`_internals`), and only plain values, numpy values and
    generators: torch's own are its machinery (hooks, flat weights)."""
    attrs: dict[str, Any] = {}
    pickled: dict[str, bytes] = {}
    internals = _internals(obj, torch)
    for k, v in vars(obj).items():
        if k in skip:
            continue
        if k.startswith("_") and (
            internals is None
            or k in internals
            or not (_plain(v, torch) or _numpy_value(v) or _generator(v))
        ):
            continue
        if _plain(v, torch):
            attrs[k] = _deep_copy(v)
        elif type(v) in _CONTAINERS or _numpy_value(v) or _generator(v) or _plain_object(v, torch):
            if getattr(v, "nbytes", 0) > _MAX_ATTRIBUTE_BYTES:
                continue  # a data array kept on the module, not training state
            with contextlib.suppress(Exception):  # whatever a user's object raises
                data = pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
                if len(data) <= _MAX_ATTRIBUTE_BYTES:
                    pickled[k] = data
    return attrs, pickled


#: per torch base class: the private attribute names its ``__init__`` sets (its machinery)
_BASE_INTERNALS: dict[type, frozenset[str]] = {}


def _internals(obj: Any, torch: Any) -> frozenset[str] | None:
    """The private attribute names of ``obj`` that are torch's (a module's ``_parameters`` and
    hooks, an optimizer's hook dicts), or None where ``obj``'s class is torch's own: all of its
    private attributes are then. A private attribute the script's class sets
    (``self._samples_seen += len(x)`` in its ``forward``) is state like a public one: left
    out, a replay from a later checkpoint read it as the script's start made it, silently
    (s36: 0 samples seen where a full re-run logs 192)."""
    if type(obj).__module__.split(".", 1)[0] == "torch":
        return None
    if torch is None:
        return frozenset()
    base: type | None = None
    if isinstance(obj, torch.nn.Module):
        base = torch.nn.Module
    elif isinstance(obj, torch.optim.Optimizer):
        base = torch.optim.Optimizer
    if base is None:
        return frozenset()
    names = _BASE_INTERNALS.get(base)
    if names is None:
        if base is torch.nn.Module:
            names = frozenset(vars(torch.nn.Module()))
        else:
            names = frozenset(vars(torch.optim.Optimizer([torch.nn.Parameter(torch.zeros(1))], {})))
        _BASE_INTERNALS[base] = names
    return names


def _generator(v: Any) -> bool:
    """A random generator object (``self.rng = np.random.default_rng(seed)``, ``self.gen =
    torch.Generator()``): its state is the C object's, and a module that draws from it in
    ``forward`` changes it at every step. Left out, a replay from a checkpoint drew from a
    generator as the script's start made it: values after it wrong, silently where no
    recorded value depended on the draws (s36)."""
    import random

    if isinstance(v, random.Random):
        return True
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, (np.random.Generator, np.random.RandomState)):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(v, torch.Generator)


def _refill_generator(cur: Any, saved: Any) -> bool:
    """Put ``saved``'s state into the generator ``cur`` (in place: code may hold it); False
    where ``cur`` is no generator of the same kind."""
    import random

    if type(cur) is not type(saved) or not _generator(cur):
        return False
    if isinstance(cur, random.Random):
        cur.setstate(saved.getstate())
        return True
    np = sys.modules.get("numpy")
    if np is not None and isinstance(cur, np.random.Generator):
        cur.bit_generator.state = saved.bit_generator.state
    elif np is not None and isinstance(cur, np.random.RandomState):
        cur.set_state(saved.get_state())
    else:
        cur.set_state(saved.get_state())  # a torch.Generator
    return True


def _plain_object(v: Any, torch: Any) -> bool:
    """An object of plain fields only (a config: ``SimpleNamespace``, a dataclass,
    ``argparse.Namespace``, the script's own small class), as a model keeps one
    (``self.config``): left out, a field the loop changed (``net.config.drop *= 0.5`` each
    epoch) came back, from a later checkpoint, as the script's start made it, silently (s34).
    Not a tokenizer or another object holding more than plain values."""
    code = (type, types.ModuleType) if torch is None else (type, types.ModuleType, torch.nn.Module)
    if isinstance(v, code) or callable(v):
        return False
    fields = getattr(v, "__dict__", None)
    return (
        isinstance(fields, dict)
        and bool(fields)
        and all(isinstance(k, str) and _plain(x, torch, 1) for k, x in fields.items())
    )


def _numpy_value(v: Any) -> bool:
    """A numpy scalar or array (``net.best = np.float32(0.5)``)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(v, (np.generic, np.ndarray))


def _put_attributes(obj: Any, attrs: dict[str, Any], pickled: dict[str, bytes]) -> None:
    from florsql.record import frame_state

    for k, v in attrs.items():
        cur, new = getattr(obj, k, None), _deep_copy(v)
        if type(cur) is list and type(new) is list:
            cur[:] = new  # in place: a name the script bound to it before the loop holds it
        elif type(cur) is dict and type(new) is dict:
            cur.clear()
            cur.update(new)
        else:
            setattr(obj, k, new)
    for k, blob in pickled.items():
        saved = pickle.loads(blob)
        cur = getattr(obj, k, None)
        if _refill_generator(cur, saved):
            continue
        if not frame_state.fill_in_place(cur, saved):  # in place where it can: aliases hold
            setattr(obj, k, saved)


def _type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


#: The hook dicts of a torch module that change what its forward and backward compute.
_HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")


#: The hook dicts of a parameter (``p.register_hook(...)``,
#: ``p.register_post_accumulate_grad_hook(...)``): they change its gradient or act on it.
_TENSOR_HOOK_DICTS = ("_backward_hooks", "_post_accumulate_grad_hooks")


def _hooks(module: Any) -> list[str]:
    """The hooks on ``module`` and on its own parameters by their functions' names, sorted (a
    multiset). A parameter's hook is in no state_dict either: gradients clamped by
    ``p.register_hook(lambda g: g.clamp(-0.05, 0.05))`` from epoch 1 on were not clamped in a
    replay from a later checkpoint (the largest gradient 0.1178 where a full re-run has 0.05,
    silently: s36)."""
    out = []
    for attr in _HOOK_DICTS:
        for hook in (getattr(module, attr, None) or {}).values():
            out.append(f"{attr}:{_hook_name(hook)}")
    for k, param in (getattr(module, "_parameters", None) or {}).items():
        for attr in _TENSOR_HOOK_DICTS:
            for hook in (getattr(param, attr, None) or {}).values():
                out.append(f"{k}.{attr}:{_hook_name(hook)}")
    return sorted(out)


def _hook_name(hook: Any) -> str:
    func = getattr(hook, "func", hook)  # a functools.partial: its function
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{getattr(func, '__module__', '')}.{name}"


def _structure_differs(prefix: str, module: Any, saved: dict[str, Any]) -> str | None:
    """Why ``module`` (the replay's, as the script's start made it) cannot take the state saved
    from the recording's ``prefix`` submodule, or None. A submodule replaced during the run
    (``net[1] = nn.LeakyReLU()``: the same state_dict) or a hook registered during it (it
    counted, or changed the output) is not in the checkpoint: a replay from it computed with
    the start's module, silently."""
    where = f"the registered model's {prefix or 'top module'}"
    if module is None:
        return f"{where} is not in the replay's model (added or renamed during the run)"
    if "type" in saved and saved["type"] != _type_name(module):
        return (
            f"{where} was a {saved['type']} at this checkpoint and is a {_type_name(module)} "
            "where the script starts (replaced during the run)"
        )
    if "hooks" in saved:
        now = list(_hooks(module))
        for hook in saved["hooks"]:
            if hook not in now:
                return (
                    f"{where} had a hook ({hook.split(':', 1)[1]}) at this checkpoint that the "
                    "script's start does not register (registered during the run)"
                )
            now.remove(hook)
    return None


def _plain(value: Any, torch: Any, depth: int = 0) -> bool:
    """A value a checkpoint keeps loadable with ``weights_only=True`` (and cheap to copy)."""
    if isinstance(value, (bool, int, float, str, type(None))):
        return True
    if torch is not None and isinstance(value, torch.Tensor):
        return not isinstance(value, torch.nn.Parameter)
    if depth < 3 and type(value) in (list, tuple):
        return all(_plain(v, torch, depth + 1) for v in value)
    if depth < 3 and type(value) is dict:
        return all(
            isinstance(k, (str, int)) and _plain(v, torch, depth + 1) for k, v in value.items()
        )
    return False


def restore_module_extras(obj: Any, extras: dict[str, Any]) -> None:
    """Put :func:`module_extras` back into ``obj`` (buffers in place)."""
    modules = dict(obj.named_modules())
    for prefix, saved in extras.items():
        module = modules.get(prefix)
        if module is None and "type" not in saved:
            continue  # an older checkpoint (no structure kept): as it was restored then
        why = _structure_differs(prefix, module, saved)
        if why is not None:
            raise StoreError(
                f"cannot restore this checkpoint: {why}; its state is not in the checkpoint, "
                "so the values that need it stay NULL"
            )
        assert module is not None
        module.training = saved["training"]
        if "frozen" in saved:  # an older checkpoint did not keep it: left as it is
            frozen = set(saved["frozen"])
            for k, param in module._parameters.items():
                if param is not None and param.requires_grad == (k in frozen):
                    param.requires_grad_(k not in frozen)
        _put_attributes(module, saved["attrs"], saved.get("pickled") or {})
        for k, (attrs, pickled) in (saved.get("tagged") or {}).items():
            param = module._parameters.get(k)
            if param is not None:
                _put_attributes(param, attrs, pickled)
        if "grads" in saved:  # an older checkpoint did not keep them: left as they are
            grads = saved["grads"]
            for k, param in module._parameters.items():
                if param is not None:
                    put_grad(param, grads.get(k))
        for k, v in saved["buffers"].items():
            current = module._buffers.get(k)
            if current is not None and current.shape == v.shape and current.dtype == v.dtype:
                with sys.modules["torch"].no_grad():
                    current.copy_(v)  # in place: code may hold the buffer itself
            else:
                module._buffers[k] = v.clone()


def capture_rng() -> dict[str, Any]:
    """The RNG states. The Mersenne Twister states (Python's and numpy's: 624 words each) are
    kept as bytes: as lists of ints, torch.save called back into Python once per int (1,250
    calls, most of a small model's checkpoint write, on the writer thread, holding the GIL the
    training thread waits for)."""
    version, internal, gauss = random.getstate()
    rng: dict[str, Any] = {"python": [version, _words(internal), gauss]}
    np = sys.modules.get("numpy")
    if np is not None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        rng["numpy"] = [kind, keys.astype("<u4").tobytes(), int(pos), int(has_gauss), float(cached)]
    torch = sys.modules.get("torch")
    if torch is not None:
        rng["torch"] = torch.get_rng_state().clone()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return rng


def _words(values: tuple[int, ...]) -> bytes:
    """Unsigned 32-bit words as little-endian bytes (Python's state: 624 words and an index)."""
    return struct.pack(f"<{len(values)}I", *values)


def _unwords(data: bytes | list[int]) -> list[int]:
    """The words :func:`_words` packed; a list as is (checkpoints before the bytes form)."""
    if isinstance(data, bytes):
        return list(struct.unpack(f"<{len(data) // 4}I", data))
    return list(data)


def revive_lazy(values: Iterable[Any]) -> None:
    """Make again the state that a restored object makes lazily, where the recorded object had
    it at the checkpoint: a ``torch.amp.GradScaler`` unpickled (its ``__getstate__`` drops
    its scale tensor) or loaded by ``load_state_dict`` into one that has not scaled yet makes
    its scale at its next ``scale()``; a restore after the step loop (rest mode) or mid-way
    through an iteration calls ``unscale_``/``step``/``update`` first, which raised "Attempted
    unscale_ but _scale is None" (session 46's sweep J). ``values`` and their attributes (a
    trainer's ``self.scaler``) are looked at, one level deep."""
    torch = sys.modules.get("torch")
    scaler_type = getattr(getattr(torch, "amp", None), "GradScaler", None)
    if torch is None or scaler_type is None:
        return
    seen: set[int] = set()

    def revive(v: Any) -> None:
        if id(v) in seen:
            return
        seen.add(id(v))
        if (
            isinstance(v, scaler_type)
            and getattr(v, "_enabled", False)
            and getattr(v, "_scale", 0) is None
            and getattr(v, "_growth_tracker", 0) is None
        ):
            with contextlib.suppress(Exception):  # its device is not here: as before
                v._lazy_init_scale_growth_tracker(torch.device(v._device))

    for value in values:
        revive(value)
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict) and type(value).__module__.split(".", 1)[0] != "torch":
            for v in list(attrs.values()):
                revive(v)


def restore_rng(rng: dict[str, Any]) -> None:
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(_unwords(internal)), gauss))
    if "numpy" in rng:
        import numpy as np

        kind, keys, pos, has_gauss, cached = rng["numpy"]
        words = np.array(_unwords(keys), dtype=np.uint32)
        np.random.set_state((kind, words, pos, has_gauss, cached))
    if "torch" in rng:
        import torch

        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


def restore(objs: dict[str, Any], payload: dict[str, Any], *, rng: bool = True) -> None:
    """Load a captured payload back into ``objs`` (in place) and, by default, the RNGs."""
    for name, obj in objs.items():
        if name in payload["states"]:
            why = _dtype_differs(name, obj, payload["states"][name])
            if why is not None:
                raise StoreError(
                    f"cannot restore this checkpoint: {why}; load_state_dict would cast it, so "
                    "the values that need it stay NULL"
                )
            _load_state_dict(obj, payload["states"][name])
            if name in payload.get("extras", {}):
                restore_module_extras(obj, payload["extras"][name])
            if name in payload.get("loose", {}):
                _restore_loose(name, obj, payload["loose"][name])
            if name in payload.get("optimizer_attrs", {}):
                _put_attributes(obj, *payload["optimizer_attrs"][name])
            if name in payload.get("fields", {}):
                _put_attributes(obj, *payload["fields"][name])
            if "inner" in payload:
                restore_inner_optimizers(name, obj, payload["inner"].get(name) or {})
            if ("inner" not in payload and _holds_optimizers(obj, objs)) or (
                not payload.get("inner_all")
                and not _holds_optimizers(obj, objs)
                and _holds_optimizers(obj, objs, wide=True)
            ):
                raise StoreError(
                    f"cannot restore this checkpoint: {name!r} holds another optimizer, whose "
                    "state checkpoints recorded before florsql saved it do not hold; the "
                    "values that need it stay NULL (record the run again)"
                )
        elif name in payload["pickled"]:
            _restore_in_place(obj, pickle.loads(payload["pickled"][name]))
            if name in payload.get("tensor_grads", {}):
                put_grad(obj, payload["tensor_grads"][name])
        else:
            raise StoreError(f"the checkpoint has no state for {name!r}")
    if rng:
        restore_rng(payload["rng"])


def _load_state_dict(obj: Any, state: Any) -> None:
    """``obj.load_state_dict(state)``; an optimizer keeps its parameter-group dicts (and their
    list) and its ``state`` mapping: torch's ``load_state_dict`` puts new ones in their place,
    so a name the script bound to one before the loop (``group = opt.param_groups[0]``, then
    ``group["lr"] *= 0.5`` each epoch; ``state = opt.state``, then momentum halved through it)
    changed what the optimizer no longer used, after a restore only: the recorded run decayed
    its learning rate, the replay did not, silently (s34)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.optim.Optimizer):
        obj.load_state_dict(state)
        return
    # and the optimizers it holds: a wrapper sharing its base optimizer's groups (timm's
    # ``Lookahead``: ``self.param_groups = base.param_groups``, its ``load_state_dict`` the
    # base's) got new group dicts in the base and kept the old ones itself: the base trained
    # on one set, the script (a scheduler, a statement) read and set the other (s36)
    held = [
        o for o in _held_optimizers(obj, set()).values() if isinstance(o, torch.optim.Optimizer)
    ]
    kept = [(o, o.param_groups, list(o.param_groups), o.state) for o in [obj, *held]]
    obj.load_state_dict(state)
    for opt, groups, dicts, per_param in kept:
        _keep_identity(opt, groups, dicts, per_param)


def _keep_identity(opt: Any, groups: list[Any], dicts: list[Any], per_param: Any) -> None:
    """Put ``opt``'s group dicts (and their list ``groups``) and its ``state`` mapping from
    before a ``load_state_dict`` back in place, refilled with what it loaded."""
    if opt.state is not per_param:  # ``state = opt.state`` before the loop: the same holds
        loaded = dict(opt.state)
        per_param.clear()
        per_param.update(loaded)
        opt.state = per_param
    if len(opt.param_groups) != len(dicts):
        return
    for old, new in zip(dicts, opt.param_groups, strict=True):
        if old is not new:
            old.clear()
            old.update(new)
    groups[:] = dicts
    opt.param_groups = groups


def _dtype_differs(name: str, obj: Any, state: Any) -> str | None:
    """Why a torch module's saved ``state`` is not of the dtypes of ``obj`` (the replay's, as
    the script's start made it), or None: a model cast during the run (``net.double()`` at a
    milestone) saved tensors that ``load_state_dict`` casts back, silently. (Checkpoints
    recorded since the cast is marked are not restored here at all: the guard for older
    ones.)"""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.nn.Module) or not isinstance(state, dict):
        return None
    for k, now in obj.state_dict(keep_vars=True).items():
        saved = state.get(k)
        if not isinstance(saved, torch.Tensor) or not isinstance(now, torch.Tensor):
            continue
        if saved.dtype != now.dtype:
            return (
                f"the registered model {name!r}'s {k} was {saved.dtype} at this checkpoint "
                f"and is {now.dtype} where the script starts (cast during the run)"
            )
    return None


_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, frozenset, range)


def _restore_in_place(obj: Any, saved: Any) -> None:
    if isinstance(obj, _IMMUTABLE):
        # ``flor.checkpointing(model=m, scheduler=None)``: the object registered is the one
        # still there, and it cannot have changed; nothing to restore.
        return
    if type(obj) is tuple and type(saved) is tuple and len(obj) == len(saved):
        for item, was in zip(obj, saved, strict=True):  # a tuple's parts may be mutable
            _restore_in_place(item, was)
        return
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        with torch.no_grad():
            obj.copy_(saved)  # a registered plain tensor changed in place (``w += 1``)
        return
    if torch is not None and isinstance(obj, torch.Generator):
        obj.set_state(saved.get_state())  # a registered generator: its state is the C one's
        return
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.random.Generator):
        obj.bit_generator.state = saved.bit_generator.state
        return
    from florsql.record import frame_state

    # In place down to what it holds, as a local is: a list in a registered dict that a name
    # also holds stays that name's list (dict.update put the unpickled lists in, silently
    # parting them); a deque and a random.Random are refilled too.
    if frame_state.fill_in_place(obj, saved):
        return
    raise StoreError(f"cannot restore a {type(obj).__name__} in place")


def serialize(payload: dict[str, Any]) -> bytes:
    """torch.save where torch is loaded (so loading can use weights_only=True), else pickle."""
    torch = sys.modules.get("torch")
    buf = io.BytesIO()
    if torch is not None:
        torch.save(payload, buf)
    else:
        pickle.dump(payload, buf, protocol=pickle.HIGHEST_PROTOCOL)
    return buf.getvalue()


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint file (one of the run's own, which florsql wrote).

    A torch file is loaded from its path, not from its bytes: torch then reads the zip with its
    own reader, where from a ``BytesIO`` it goes through Python file calls (a 2.4 MB checkpoint:
    1.5 ms against 6.0 ms, measured; a replay task loads one per replayed iteration). Its
    tensors are mapped from the file, privately (copy on write: nothing a replay does to them
    reaches the file), rather than read and copied: 0.9 ms against 1.7 ms for 2.7 MB, measured.
    A file torch cannot map is read."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK":
        return load_bytes(path.read_bytes(), path)
    import mmap

    import torch

    try:
        # Private whatever the script set as torch's default: a shared map would write the
        # replay's updates (optimizer buffers, in place) into the recorded checkpoint.
        with torch.serialization.set_default_mmap_options(mmap.MAP_PRIVATE):
            payload = torch.load(path, weights_only=False, map_location="cpu", mmap=True)
    except (RuntimeError, ValueError, OSError):  # an old zip layout, a filesystem without mmap
        payload = torch.load(path, weights_only=False, map_location="cpu")
    return _checked(payload, path)


def load_bytes(data: bytes, path: Path | str) -> dict[str, Any]:
    """A checkpoint from its bytes (``path``: where they came from, for the error).

    torch files load with ``weights_only=False``: the file is the run's own, written by florsql,
    and may hold content outside torch's safe list (a custom class in a state_dict), which a
    safe load would refuse anyway and have to load in full. torch's safe unpickler was 2.5 ms of
    a 2.4 MB checkpoint's 3.2 ms load, measured: a replay task restoring 20 checkpoints paid it
    20 times. The files stay loadable with ``weights_only=True`` (:func:`serialize`)."""
    if data[:2] == b"PK":  # torch's zip format
        import torch

        payload = torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")
    else:
        payload = pickle.loads(data)
    return _checked(payload, path)


def _checked(payload: Any, path: Path | str) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise StoreError(f"{path} is not a florsql checkpoint")
    return payload


def _deep_copy(value: Any) -> Any:
    """A copy of a state_dict that training cannot change: containers rebuilt as their own
    kinds (a ``Counter``, a ``defaultdict`` with its factory, a namedtuple, a subclass with its
    attributes; a module's ``OrderedDict`` with its ``_metadata``), tensors detached and cloned,
    anything else deep-copied."""
    kind = type(value)
    if kind is dict:
        return {k: _deep_copy(v) for k, v in value.items()}
    if kind is OrderedDict:
        out = OrderedDict((k, _deep_copy(v)) for k, v in value.items())
        if value.__dict__:  # torch's state_dict keeps each submodule's version in _metadata
            out.__dict__.update(copy.deepcopy(value.__dict__))
        return out
    if kind is list:
        return [_deep_copy(v) for v in value]
    if kind is tuple:
        return tuple(_deep_copy(v) for v in value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return kind(*(_deep_copy(v) for v in value))
    if isinstance(value, dict):  # Counter, defaultdict...: same kind, factory and attributes
        copied = copy.copy(value)
        for k, v in value.items():
            dict.__setitem__(copied, k, _deep_copy(v))
        return copied
    if isinstance(value, list):
        items = copy.copy(value)
        list.__setitem__(items, slice(None), [_deep_copy(v) for v in value])
        return items
    if kind.__module__.startswith("torch") and hasattr(value, "detach"):
        detached = value.detach()
        if detached.is_cpu:  # clone: the same copy as .to("cpu", copy=True), 7 us against 45
            return detached.clone()  # a tensor (measured; a checkpoint copies every tensor)
        return detached.to("cpu", copy=True)
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    return copy.deepcopy(value)
