"""Which global RNGs today's statements draw from in a replay.

A hindsight statement that draws from a global RNG (``evaluate(val_loader)``: iterating a torch
``DataLoader`` draws its base seed from torch's generator; dropout left on; ``random.random()``)
moves every later draw of the old code. A full run of today's script trains differently after
its first draw; a replay that restores the recorded state at a checkpoint after the statement
does not. The replay runs the draw as a full run of today's script would (its values equal such
a run where the replay runs from the top), and says so: a replay runs each placed statement (and
each piece of code carried with it) between ``flor._hindsight_begin(name)`` and
``flor._hindsight_end(name)``, which compare the global RNGs (Python's ``random``, numpy's legacy
global ``RandomState``, torch's CPU generator and, where initialised, its CUDA ones; and the
generator objects the code's frame reaches, save those today's code made) before and after it
and note those it moved (``drew``, and ``drew_in_loop`` for draws before the outer loop's end,
in the task's ``done.json``). A run whose tasks drew before the loop's end is
replayed again from its start with no checkpoint restored (``runner._from_the_start``), so its
values are a run of today's script's; the query warns (``StatementDrawWarning``). In a recording
process they do nothing.

Checking costs: torch's state ~5 us, Python's ~20 us, numpy's ~60 us (copying 624 words each).
torch's is checked at every execution; Python's and numpy's at the first
:data:`FIRST_CHECKS` executions of a statement in a task and every :data:`EVERY` one after,
and at every execution once one of them moved; the generator objects a frame reaches (a scan
of its locals and globals and what they hold two levels deep, ~0.2 us per entry: ~95 us for a
training script's 133 names and ~530 entries past them, before and after; a torch model's
submodules are walked once per model, and after that only the places found are read) where
Python's are.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterable
from types import FrameType
from typing import Any

#: Executions of a statement in a task whose Python and numpy RNG states are all checked.
FIRST_CHECKS = 16
#: After those, one in this many executions is checked (until one moved a state).
EVERY = 64


#: Draws made through the module functions of Python's ``random`` and numpy's legacy
#: ``np.random`` (the global generators) since this process hooked them (:func:`hook_draws`):
#: a statement that drew between its begin and end moved that generator. Counted at every
#: execution, at no cost, where comparing the states costs 20 and 50 us: before session 44
#: those were compared at a statement's first 16 executions in a task and one in 64 after,
#: and a probe drawing every 30 steps (``if gstep % 30 == 0: random.sample(...)``) was never
#: seen, its run restored from a checkpoint where a run of today's script had drawn: wrong
#: values for every later step, silently.
_DRAWS = {"python": 0, "numpy": 0}
_HOOKED: set[str] = set()
#: Functions that read a generator's state without moving it.
_READS = frozenset({"getstate", "get_state", "get_bit_generator"})


def hook_draws() -> None:
    """Count the draws through ``random``'s and (where loaded) ``np.random``'s module
    functions (:data:`_DRAWS`): each is replaced by a wrapper of itself. Called as a replay task
    starts (before the script imports ``from random import shuffle``) and at each check (numpy
    loaded later)."""
    if "python" not in _HOOKED:
        _HOOKED.add("python")
        import random

        _hook(random, random._inst, "python")
    if "numpy" not in _HOOKED:
        np = sys.modules.get("numpy")
        rand = getattr(getattr(getattr(np, "random", None), "mtrand", None), "_rand", None)
        if np is not None and rand is not None:
            _HOOKED.add("numpy")
            _hook(np.random, rand, "numpy")


def _hook(module: Any, owner: Any, kind: str) -> None:
    import functools

    for name in dir(module):
        fn = getattr(module, name, None)
        if name.startswith("_") or name in _READS or getattr(fn, "__self__", None) is not owner:
            continue

        def counted(*args: Any, _fn: Any = fn, **kw: Any) -> Any:
            _DRAWS[kind] += 1
            return _fn(*args, **kw)

        with contextlib.suppress(AttributeError, TypeError):
            functools.update_wrapper(counted, fn)  # type: ignore[arg-type]
        setattr(module, name, counted)


class RngGuard:
    """Snapshots of the global RNGs around today's statements, per statement name."""

    def __init__(self, objects: dict[str, Any] | None = None) -> None:
        #: the objects given to ``flor.checkpointing`` (name -> object; filled as the script
        #: runs): a statement that changes a registered module's tensors or training flags
        #: in place moves the run as a draw does (:func:`_module_state`)
        self.objects = objects if objects is not None else {}
        #: the registered modules' tensors and submodules, found at a full check
        self._tracked: list[tuple[str, Any]] = []
        #: those of the objects given to ``flor.checkpointing`` alone (their modes are put back)
        self._registered: list[tuple[str, Any]] = []
        #: name -> the snapshots of its pieces begun and not yet ended (innermost last: a
        #: piece of one name may run inside another's, or call itself)
        self._saved: dict[str, list[dict[str, Any]]] = {}
        self._counts: dict[str, int] = {}
        self._watched: set[str] = set()  # names whose statement moved Python's or numpy's
        #: generator objects today's code made (id -> the object, kept so the id stays its)
        self._own: dict[int, Any] = {}
        #: name -> the generators its statement moved
        self.moved: dict[str, set[str]] = {}

    def check_always(self, names: Iterable[str]) -> None:
        """Compare every state at every execution of these names' statements, not the first
        16 and one in 64: statements that may draw in some iterations and not in others
        (``spec.uneven``), whose from-the-start replay tells later queries that they drew
        nothing that far (``runner._clean_before``), a claim a sampled check cannot make."""
        self._watched.update(names)

    def begin(self, name: str, frame: FrameType | None = None) -> None:
        """Before ``name``'s statement (or code carried with it): snapshot the states, and
        those of the generator objects ``frame`` (the code's) names, where checked fully."""
        stack = self._saved.get(name)
        while stack and frame is not None and not _below(stack[-1].get("frame"), frame):
            # a piece of this name begun and not ended, in this frame or one that has
            # returned (not a caller of this one, as in a recursion): it raised part-way and
            # the old code caught the exception. What it drew before the raise is unknown:
            # what moved since counts as its (a run replayed from its start for nothing, at
            # worst; its draws went unnoticed before session 35)
            self.end(name)
        n = self._counts.get(name, 0)
        full = name in self._watched or n < FIRST_CHECKS or n % EVERY == 0
        hook_draws()
        saved = _snapshot(full=full)
        saved["draws"] = dict(_DRAWS)
        if full or not self._tracked:
            found = {**_frame_modules(frame, self.objects), **_frame_objects(frame, self.objects)}
            self._tracked = _tracked({**found, **self.objects})
            self._registered = _tracked(self.objects)
        if self._tracked:
            saved["modules"] = (self._tracked, _module_state(self._tracked))
        from florsql.record.modes import saving

        if self._registered and not saving():
            # the registered models' modes only: a model today's code made (``swa =
            # AveragedModel(net)``, ``swa.eval()`` in one piece, evaluated in the next) is
            # today's to switch. Not inside a switch today's code makes (a piece begun after
            # ``flor._save_modes(net); net.eval()``): its ``flor._restore_modes(net)`` puts the
            # modes back, and putting back the eval mode seen at this begin undid it (session
            # 48: a from-the-start replay trained on in eval mode after the first epoch)
            saved["modes"] = _modes(self._registered)
        saved["frame"] = frame
        if full and frame is not None:
            saved["objects"] = {
                k: v for k, v in _objects(frame).items() if self._own.get(k) is not v[1]
            }
            saved["names"] = _names(frame)
        self._saved.setdefault(name, []).append(saved)

    def end(self, name: str, frame: FrameType | None = None) -> None:
        """After it: note under ``name`` what moved. A generator object ``frame`` names that
        was not there at the start (today's code made it: ``vg = torch.Generator()`` carried
        with the statement) is today's own: its draws shift nothing of the old code's."""
        stack = self._saved.get(name)
        self._counts[name] = self._counts.get(name, 0) + 1
        if not stack:
            return
        saved = stack.pop()
        if frame is not None and "objects" in saved:
            before = {id(v[1]) for v in saved["objects"].values()}
            names, now = saved["names"], _names(frame)
            for key, (label, obj, _state) in _objects(frame).items():
                root = label.split(".", 1)[0].split("[", 1)[0]
                if key not in before and key not in self._own and names.get(root) != now.get(root):
                    # reached through a name today's code bound (a generator held by an
                    # object the old code held, not seen at the start, is not its own)
                    self._own[key] = obj
        moved = _restore_moved(saved)
        moved |= {k for k, v in (saved.get("draws") or {}).items() if _DRAWS[k] != v}
        from florsql.record.modes import saving

        # (not inside a switch today's code makes, between ``flor._save_modes(net)`` and
        # ``flor._restore_modes(net)``: its ``net.eval()`` is a piece of its own, and the
        # statement after it reads the model in that mode; the restore puts it back)
        for module, training in () if saving() else saved.get("modes") or ():
            if module.training is not training:
                # put back (session 44): an old helper today's statement calls that leaves
                # the model in eval mode (``evaluate()`` calling ``net.eval()``, the old code
                # calling ``net.train()`` only before its loop) trained the rest of the run
                # without dropout in an iteration run in full, and with it where a checkpoint
                # was restored: one answer from two trainings, silently. Today's statements
                # never change the old code's modes, as ``flor._restore_modes`` does for a
                # switch written in today's code
                module.training = training
        if moved:
            self.moved.setdefault(name, set()).update(moved)
            if moved - {"torch", "cuda"}:
                self._watched.add(name)


def _names(frame: FrameType) -> dict[str, int]:
    """The names of ``frame`` (its globals, then its locals over them) and what they hold."""
    out = {k: id(v) for k, v in frame.f_globals.items()}
    if frame.f_locals is not frame.f_globals:
        out.update((k, id(v)) for k, v in frame.f_locals.items())
    return out


def _below(pending: FrameType | None, frame: FrameType) -> bool:
    """Whether ``pending`` (the frame a piece was begun in) is a caller of ``frame``: the piece
    is still running (None: unknown, taken as running)."""
    if pending is None:
        return True
    caller = frame.f_back
    while caller is not None:
        if caller is pending:
            return True
        caller = caller.f_back
    return False


def _snapshot(*, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.get_rng_state()
        cuda = getattr(torch, "cuda", None)
        if cuda is not None and cuda.is_available() and cuda.is_initialized():
            out["cuda"] = cuda.get_rng_state_all()
    if full:
        import random

        out["python"] = random.getstate()
        np = sys.modules.get("numpy")
        if np is not None and hasattr(np, "random"):
            out["numpy"] = np.random.get_state()
    return out


def _restore_moved(saved: dict[str, Any]) -> set[str]:
    """The names of the generators of ``saved`` whose state changed (left as they are)."""
    moved: set[str] = set()
    torch = sys.modules.get("torch")
    if "torch" in saved and torch is not None:
        if not torch.equal(torch.get_rng_state(), saved["torch"]):
            moved.add("torch")
        if "cuda" in saved:
            now = torch.cuda.get_rng_state_all()
            if len(now) != len(saved["cuda"]) or not all(
                torch.equal(a, b) for a, b in zip(now, saved["cuda"], strict=False)
            ):
                moved.add("cuda")
    if "python" in saved:
        import random

        if random.getstate() != saved["python"]:
            moved.add("python")
    if "numpy" in saved:
        np = sys.modules.get("numpy")
        if np is not None:
            _kind, keys, pos, has_gauss, cached = saved["numpy"]
            now = np.random.get_state()
            if (
                now[2] != pos
                or now[3] != has_gauss
                or now[4] != cached
                or not np.array_equal(now[1], keys)
            ):
                moved.add("numpy")
    for label, obj, state in saved.get("objects", {}).values():
        if not _same(_state_of(obj), state):
            moved.add(f"{label} (a {type(obj).__name__} of the script)")
    if "modules" in saved:
        tracked, before = saved["modules"]
        changed = _changed(tracked, before, _module_state(tracked))
        if changed is not None:
            moved.add(changed)
    return moved


def _frame_modules(frame: FrameType | None, registered: dict[str, Any]) -> dict[str, Any]:
    """The torch modules ``frame`` names (its globals, then its locals) that are not given to
    ``flor.checkpointing``: a model left out is saved with the frame's locals, and a statement
    that changes it in place (a forward pass in train mode moving batch norm's statistics)
    moves the run as for a registered one (before session 43 it was not watched: a rest
    iteration restored the recorded statistics, and a later epoch's ``running_mean`` read
    1.4774 for a full re-run's 1.5481, silently)."""
    torch = sys.modules.get("torch")
    if frame is None or torch is None:
        return {}
    module = torch.nn.Module
    seen = {id(v) for v in registered.values()}
    out: dict[str, Any] = {}
    scopes = (
        [frame.f_globals]
        if frame.f_locals is frame.f_globals
        else [frame.f_globals, frame.f_locals]
    )
    for scope in scopes:
        for name, value in list(scope.items()):
            if isinstance(value, module) and id(value) not in seen:
                seen.add(id(value))
                out[name] = value
    return out


def _frame_objects(frame: FrameType | None, registered: dict[str, Any]) -> dict[str, Any]:
    """The objects of the user's classes (defined in the script or in a module of the
    repository) that ``frame`` names and ``flor.checkpointing`` was not given: a checkpoint
    saves them with the frame's locals, so state today's statement keeps in them (``history.
    improved()`` updating ``self.best``) is put back by a restore as the old run had it
    (session 46, sweep H: 1 for 0, silently)."""
    if frame is None:
        return {}
    seen = {id(v) for v in registered.values()}
    scopes = (
        [frame.f_globals]
        if frame.f_locals is frame.f_globals
        else [frame.f_globals, frame.f_locals]
    )
    out: dict[str, Any] = {}
    for scope in scopes:
        for name, value in list(scope.items()):
            if id(value) not in seen and _user_object(value):
                seen.add(id(value))
                out[name] = value
    return out


def _user_object(obj: Any) -> bool:
    """An instance of a class defined in ``__main__`` or in a module under the working folder
    (a replay's worktree), not in an installed package."""
    kind = type(obj)
    if isinstance(obj, type) or not hasattr(obj, "__dict__"):
        return False
    module = kind.__module__ or ""
    if module == "__main__":
        return True
    if module.split(".", 1)[0] in ("florsql", "flor"):
        return False  # the record API's own objects (a replay's guard, its run)
    path = getattr(sys.modules.get(module), "__file__", None) or ""
    here = os.getcwd() + os.sep
    return path.startswith(here) and "site-packages" not in path


def _tracked(objects: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(label, tensor or module)`` of every parameter, buffer and submodule of the registered
    torch modules, and ``(name, object)`` of each registered object of the user's class."""
    torch = sys.modules.get("torch")
    out: list[tuple[str, Any]] = []
    for name, obj in objects.items():
        if torch is None or not isinstance(obj, torch.nn.Module):
            if _own_class(obj):  # a registered object of the user's class: its attributes
                out.append((name, obj))
            continue
        with contextlib.suppress(Exception):  # a module whose walk raises: not tracked
            out += [(f"{name}.{k}", t) for k, t in obj.named_parameters()]
            out += [(f"{name}.{k}", t) for k, t in obj.named_buffers()]
            out += [(f"{name}.{k}" if k else name, m) for k, m in obj.named_modules()]
    return out


def _modes(tracked: list[tuple[str, Any]]) -> list[tuple[Any, bool]]:
    """``(module, training)`` of the tracked modules (each submodule: its own flag)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    module = torch.nn.Module
    return [(obj, obj.training) for _, obj in tracked if isinstance(obj, module)]


def _module_state(tracked: list[tuple[str, Any]]) -> list[Any]:
    """What a statement may change in place of the tracked objects: each tensor's version
    counter (bumped by every in-place write: a batch norm's running statistics as a forward
    pass in train mode updates them, the vectors a spectral norm's power iteration updates as
    its ``weight`` is read in train mode), a small buffer's values (:func:`_buffer_digest`) and
    gradient (``loss.backward()`` in a statement); a module's or a registered object's own
    attributes (:func:`_attributes`)."""
    out: list[Any] = []
    torch = sys.modules.get("torch")
    if torch is None:
        return [_attributes(obj, None) for _, obj in tracked]
    parameter, tensor = torch.nn.Parameter, torch.Tensor
    for _, obj in tracked:
        # A module's ``training`` flag is not compared: propagation saves the modes of the
        # modules a statement switches and puts them back after it (``flor._save_modes``,
        # ``flor._restore_modes``), after this guard's end, so ``net.eval()`` before an
        # evaluation would count as a change and replay every such run from its start. (Until
        # session 43 a module was taken for a tensor here, by its state_dict format's
        # ``_version``, to the same effect.)
        if isinstance(obj, tensor):
            grad = obj.grad
            out.append(
                (
                    obj._version,
                    id(grad),
                    grad._version if grad is not None else -1,
                    _buffer_digest(obj, parameter),
                )
            )
        else:
            out.append(_attributes(obj, torch))
    return out


#: Methods that change the object they are called on (a list's ``append``, a tensor's ``add_``).
_MUTATING = frozenset({
    "append", "appendleft", "extend", "insert", "update", "add", "pop", "popleft",
    "setdefault", "clear", "remove", "discard", "copy_", "add_", "mul_", "sub_", "div_",
    "zero_", "fill_", "lerp_", "clamp_", "__setitem__",
})  # fmt: skip
_ACCUMULATES: dict[tuple[type, str], bool] = {}


def accumulates(kind: type, attr: str) -> bool:
    """Whether the code of class ``kind`` (and of its user-written bases) may carry attribute
    ``attr`` from one call to the next: an augmented assignment to ``self.attr``, an assignment
    whose value reads it (``self.ema = 0.5 * self.ema + ...``, ``self.best = min(self.best,
    v)``), one under a test of it (``if self._ref is None: self._ref = ...``), a store into it
    or a call changing it (``self.hist.append(v)``). An attribute only ever overwritten
    (``self.last = h.detach()`` in ``forward``) carries nothing: a restore leaves it as a
    run of today's script has it at its next write (session 46, sweep H: every query replayed
    such a model from its start). True where the code cannot be read.

    Example:
        >>> import ast
        >>> src = "class Meter:\\n    def add(self, v):\\n        self.total += v\\n"
        >>> tree = ast.parse(src + "        self.last = v\\n")
        >>> _carries(tree, "total"), _carries(tree, "last")
        (True, False)
    """
    key = (kind, attr)
    if key not in _ACCUMULATES:
        try:
            _ACCUMULATES[key] = _accumulates(kind, attr)
        except Exception:  # no source (a class made at run time, a C extension): counted
            _ACCUMULATES[key] = True
    return _ACCUMULATES[key]


def _accumulates(kind: type, attr: str) -> bool:
    import ast
    import inspect
    import textwrap

    for klass in kind.__mro__:
        root = (klass.__module__ or "").split(".", 1)[0]
        if root in ("builtins", "torch", "numpy", "collections", "abc", "typing"):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        if _carries(tree, attr):
            return True
    return False


def _carries(tree: Any, attr: str) -> bool:
    import ast

    def is_attr(node: Any) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == attr
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        )

    def reads(node: Any) -> bool:
        return any(
            is_attr(n) and isinstance(getattr(n, "ctx", None), ast.Load) for n in ast.walk(node)
        )

    for node in ast.walk(tree):
        if isinstance(node, ast.AugAssign) and is_attr(node.target):
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_attr(t) for t in targets) and reads(node.value):
                return True
        if isinstance(node, ast.If) and reads(node.test):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Assign) and any(is_attr(t) for t in inner.targets):
                    return True
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store | ast.Del)
            and is_attr(node.value)
        ):
            return True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MUTATING
            and is_attr(node.func.value)
        ):
            return True
    return False


def _own_class(obj: Any) -> bool:
    """An object of a class the user wrote (not torch's, numpy's or Python's own)."""
    module = type(obj).__module__ or ""
    root = module.split(".", 1)[0]
    return hasattr(obj, "__dict__") and root not in ("torch", "numpy", "builtins", "collections")


_MODULE_KEYS: frozenset[str] | None = None


def _attributes(obj: Any, torch: Any | None) -> tuple[tuple[str, int, int], ...] | None:
    """A module's own attributes (those a plain ``nn.Module`` lacks: ``self.ema``,
    ``self._ref``, ``self.hist``) or a registered object's: each one's identity and, for a
    container, its length. A statement that rebinds one (``self.ema = 0.5 * self.ema + ...``
    in a method today's statement calls) or grows one keeps state no checkpoint holds (a
    module's checkpoint is its ``state_dict``): session 46, a task restoring epoch 1's
    checkpoint read ``ema`` as the script's start made it (0.3047 for a full re-run's 0.5039;
    a drift from a reference the method caches on its first call: 0.0 at every epoch),
    silently. None: no such attribute."""
    global _MODULE_KEYS
    try:
        own = vars(obj)
    except TypeError:
        return None
    if torch is not None and isinstance(obj, torch.nn.Module):
        if _MODULE_KEYS is None:
            _MODULE_KEYS = frozenset(vars(torch.nn.Module()))
        keys = own.keys() - _MODULE_KEYS
        # what a forward pre-hook recomputes from parameters at every call (weight norm's
        # and spectral norm's ``weight``): derived, not kept (spectral norm's own state is
        # its buffers, compared by value)
        hooks = own.get("_forward_pre_hooks") or {}
        keys -= {getattr(h, "name", None) for h in hooks.values()}
    else:
        keys = own.keys()
    if not keys:
        return None
    out = []
    for k in sorted(keys):
        v = own[k]
        size = len(v) if isinstance(v, list | dict | set) else -1
        out.append((k, id(v), size))
    return tuple(out)


#: Buffers up to this many elements are compared by value too (a batch norm's statistics).
BUFFER_DIGEST_MAX = 1 << 16


def _buffer_digest(obj: Any, parameter: Any) -> int | None:
    """A digest of a small buffer's values: some kernels write buffers in place without
    bumping the version counter (``F.batch_norm`` on a custom layer's running statistics:
    before session 43 a statement's forward pass in train mode went unseen, and a later
    epoch's ``rm`` read 0.9392 for a full re-run's 1.0428). None for a parameter (an
    optimizer's writes bump it) or a large buffer."""
    if isinstance(obj, parameter) or obj.numel() > BUFFER_DIGEST_MAX or obj.is_sparse:
        return None
    try:
        return hash(obj.detach().cpu().numpy().tobytes())
    except Exception:  # a dtype numpy lacks (bfloat16), a meta tensor: by its version only
        return None


def _changed(tracked: list[tuple[str, Any]], before: list[Any], now: list[Any]) -> str | None:
    """The first tracked object a statement changed, as the query's warning names it."""
    for (label, obj), a, b in zip(tracked, before, now, strict=True):
        if a == b:
            continue
        if a is None or b is None or isinstance(a[0], tuple) or isinstance(b[0], tuple):
            old = {k: (i, n) for k, i, n in a or ()}
            new = {k: (i, n) for k, i, n in b or ()}
            which = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            kept = [k for k in which if accumulates(type(obj), k)]
            if not kept:
                continue  # overwritten at each call (``self.last = h``): no state carried on
            return f"{label}.{kept[0]} (an attribute of a model or object, changed)"
        if a[0] != b[0] or a[3] != b[3]:
            return f"{label} (a model's tensor, changed in place)"
        return f"{label}.grad (a model's gradient, changed)"
    return None


def _generator_types() -> tuple[type, ...]:
    """The classes of generator objects a script keeps (those of modules it imported)."""
    import random

    kinds: list[type] = [random.Random]
    np = sys.modules.get("numpy")
    if np is not None and hasattr(np, "random"):
        kinds += [np.random.Generator, np.random.RandomState]
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "Generator"):
        kinds.append(torch.Generator)
    return tuple(kinds)


#: How deep the scan looks past a frame's names: ``self.rng``, ``rngs["aug"]`` (1),
#: ``self.loader.generator``, ``cfg.rngs["aug"]`` (2).
DEPTH = 2
#: A container or an object with more entries than this is not looked into (a dataset's dict).
MAX_ENTRIES = 256
#: The most entries one scan looks at past a frame's names (its cost bound: ~0.1 us each).
BUDGET = 2048

# How the scan treats a value of a type (cached per type): a generator, a container or an
# object whose entries it looks into, or nothing (numbers, strings, tensors of no attributes,
# modules, functions, classes of libraries).
_SKIP, _GEN, _MAP, _SEQ, _ATTRS = range(5)

#: per set of generator classes: type -> how the scan treats its values (each type is looked
#: up once)
_KINDS: dict[tuple[type, ...], dict[type, int]] = {}
_CODE = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.BuiltinMethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    property,
    staticmethod,
    classmethod,
)
_ATOMS = (int, float, complex, str, bytes, bytearray, bool, type(None), range, slice)
_ATOM_SET = frozenset(_ATOMS)


def _kind(cls: type, kinds: tuple[type, ...]) -> int:
    try:
        return _kind_of(cls, kinds)
    except Exception:  # a class whose subclass checks raise: nothing to look into
        return _SKIP


def _kind_of(cls: type, kinds: tuple[type, ...]) -> int:
    if issubclass(cls, kinds):
        return _GEN
    if issubclass(cls, _ATOMS) or issubclass(cls, _CODE):
        return _SKIP
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None and issubclass(cls, torch.Tensor):
        return _SKIP  # (its attributes: grad, names of dimensions)
    if np is not None and issubclass(cls, np.ndarray | np.generic):
        return _SKIP
    if issubclass(cls, dict):
        return _MAP
    if issubclass(cls, list | tuple):
        return _SEQ
    if issubclass(cls, type):
        return _ATTRS  # a class: its own attributes, where the script defined it (below)
    if getattr(cls, "__dictoffset__", 0) and cls.__module__ != "builtins":
        return _ATTRS
    return _SKIP


def _objects(frame: FrameType) -> dict[int, tuple[str, Any, Any]]:
    """The generator objects the code of ``frame`` reaches (its locals, then its globals, then
    what those hold up to :data:`DEPTH` levels: an object's attributes, a dict's values, a
    list's or a tuple's items; at most :data:`BUDGET` entries, none of a container or an
    object of more than :data:`MAX_ENTRIES`, nor of a list of numbers): per object, a name for
    it (``rng``, ``self.rng``, ``rngs['aug']``), itself and its state. A statement drawing from
    one the old code draws from too (``rng.normal()`` where the loop draws ``rng``'s numbers, a
    ``random.Random(seed)``, a ``DataLoader``'s ``generator=g``, a trainer's ``self.rng``)
    shifts the old code's later draws as a global RNG's draw does (session 35: those went
    unnoticed; session 36: those held by an attribute or a container did). Modules,
    functions and classes of other modules are not looked into: a module's generators are its
    own (``random``'s is the global one, compared as such)."""
    kinds = _generator_types()
    known = _KINDS.get(kinds)
    if known is None:
        known = _KINDS[kinds] = {}
    out: dict[int, tuple[str, Any, Any]] = {}
    seen: set[int] = set()
    here = frame.f_globals.get("__name__")
    level: list[tuple[Any, Any, int]] = []
    scopes = [frame.f_locals]
    if frame.f_locals is not frame.f_globals:
        scopes.append(frame.f_globals)
    for scope in scopes:  # (``__builtins__`` and other dunder names aside)
        _keep(level, ((k, v) for k, v in scope.items() if k[:2] != "__"), None, 0, known, kinds)
    budget = BUDGET
    module = getattr(sys.modules.get("torch"), "nn", None)
    module = getattr(module, "Module", None)
    for depth in range(DEPTH + 1):
        deeper: list[tuple[Any, Any, int]] = []
        for label, value, kind in level:
            if id(value) in seen:
                continue
            seen.add(id(value))
            if kind == _GEN:
                with contextlib.suppress(Exception):  # a generator whose state cannot be read
                    out[id(value)] = (_label(label), value, _state_of(value))
                continue
            if module is not None and kind == _ATTRS and isinstance(value, module):
                # its submodules' too, at any depth (``net.blocks[2].drop_path.gen`` of a
                # DropPath: today's ``net(XV)`` in training mode draws from it; s36)
                for path, gen in _module_generators(value, kinds):
                    if id(gen) not in out:
                        with contextlib.suppress(Exception):
                            out[id(gen)] = (f"{_label(label)}.{path}", gen, _state_of(gen))
            if depth == DEPTH or budget <= 0:
                continue
            entries = _entries(value, kind, here)
            if entries is None:
                continue
            # (a subclass's own len/items/__iter__ are not called: a lazy container loads)
            if kind == _SEQ:
                size = list.__len__(entries) if isinstance(entries, list) else len(entries)
            else:
                size = dict.__len__(entries) if isinstance(entries, dict) else len(entries)
            if size > MAX_ENTRIES:
                continue
            if kind == _SEQ and size > 8 and _numbers(entries):
                continue  # a list of numbers or strings (a loss history): no generator in it
            budget -= size
            try:
                if kind == _SEQ:
                    items = list.__iter__(entries) if isinstance(entries, list) else None
                    pairs: Any = enumerate(items if items is not None else tuple.__iter__(entries))
                else:
                    pairs = dict.items(entries) if isinstance(entries, dict) else entries.items()
                # (what the last level holds is looked at only where it is a generator)
                _keep(deeper, pairs, label, kind, known, kinds, depth + 1 == DEPTH)
            except RuntimeError:  # changed by another thread meanwhile
                continue
        level = deeper
    return out


#: id of a torch module -> the module and where its submodules' generators are (the
#: submodule's dotted path, the submodule, the attribute), found at its first scan: a model
#: makes its generators in ``__init__``, and walking a large model at every check would cost
#: more than the rest of the scan
_MODULES: dict[int, tuple[Any, list[tuple[str, Any, str]]]] = {}


def _module_generators(module: Any, kinds: tuple[type, ...]) -> list[tuple[str, Any]]:
    """The generators ``module``'s submodules hold as attributes (below the two levels the
    scan reaches: a ``DropPath`` three modules down), by dotted path."""
    entry = _MODULES.get(id(module))
    if entry is None or entry[0] is not module:
        if len(_MODULES) > 256:
            _MODULES.clear()
        try:
            found = [
                (path, sub, attr)
                for path, sub in module.named_modules()
                if path
                for attr, v in vars(sub).items()
                if isinstance(v, kinds)
            ]
        except Exception:  # a module whose walk raises: its generators are not watched
            found = []
        entry = _MODULES[id(module)] = (module, found)
    out = []
    for path, sub, attr in entry[1]:
        gen = vars(sub).get(attr)
        if isinstance(gen, kinds):
            out.append((f"{path}.{attr}", gen))
    return out


def _keep(
    level: list[tuple[Any, Any, int]],
    pairs: Any,
    parent: Any,
    how: int,
    known: dict[type, int],
    kinds: tuple[type, ...],
    last: bool = False,
) -> None:
    """Add to ``level`` the entries of ``pairs`` (key, value) that are generators or hold
    something (``last``: generators only): each with its label (the key under ``parent``, or
    the name) and its kind."""
    for key, value in pairs:
        cls = type(value)
        kind = known.get(cls)
        if kind is None:
            kind = known[cls] = _kind(cls, kinds)
        if kind == _GEN or (kind and not last):
            level.append((key if parent is None else (parent, how, key), value, kind))


def _numbers(entries: Any) -> bool:
    """Whether a list's or a tuple's first and last items are numbers, strings or None."""
    get = list.__getitem__ if isinstance(entries, list) else tuple.__getitem__
    return type(get(entries, 0)) in _ATOM_SET and type(get(entries, -1)) in _ATOM_SET


def _label(label: Any) -> str:
    """A name for what the scan reached (``self.rng``, ``rngs['aug']``), written only for a
    generator it found."""
    if isinstance(label, str):
        return label
    parent, kind, key = label
    return f"{_label(parent)}.{key}" if kind == _ATTRS else f"{_label(parent)}[{key!r}]"


def _entries(value: Any, kind: int, here: Any) -> Any:
    """What a container or an object holds (None: nothing to look into)."""
    if kind != _ATTRS:
        return value
    if isinstance(value, type) and value.__module__ != here:
        return None  # a class of a library: its attributes are code and constants
    try:
        held = object.__getattribute__(value, "__dict__")  # never a __getattr__ of the class
    except Exception:
        return None
    return held if isinstance(held, dict | types.MappingProxyType) else None


def _state_of(obj: Any) -> Any:
    """A copy of a generator object's state."""
    import random

    if isinstance(obj, random.Random):
        return obj.getstate()
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.random.Generator):
        return obj.bit_generator.state
    if np is not None and isinstance(obj, np.random.RandomState):
        return obj.get_state(legacy=False)
    return obj.get_state()  # a torch.Generator


def _same(a: Any, b: Any) -> bool:
    """Whether two generator states (ints, tuples, dicts, numpy arrays, tensors) are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a).__module__ == "numpy" or type(b).__module__ == "numpy":
        np = sys.modules["numpy"]
        return bool(np.array_equal(a, b))
    if type(a).__name__ == "Tensor":
        torch = sys.modules["torch"]
        return bool(torch.equal(a, b))
    return bool(a == b)
