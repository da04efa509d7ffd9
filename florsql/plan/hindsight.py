"""Finding ``flor.log("<name>", ...)`` statements in the current code, and the loops around them.

A hindsight column is a log name found here, in the working-tree version of a script that has
runs, that some of its runs never logged. The planner needs, for each such statement, the chain of
``flor.loop`` names around it (outermost first): it decides which iterations a replay must run and
which inner loops it may skip. A log inside a function takes the chains of the function's call
sites; a statement whose chain cannot be known gets ``chain=None`` (replay then runs everything).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from florsql.fold import fold
from florsql.store import layout
from florsql.store.replays import REPLAY_RULES as _STORED_RULES

__all__ = ["LogSite", "ScriptCode", "merge_code", "scan_script", "scan_source"]

FLOR_MODULES = frozenset({"florsql", "flordb", "flor"})
Where = Literal["head", "loop", "tail", "unknown"]


@dataclass(frozen=True)
class LogSite:
    """One ``flor.log`` call with a literal name.

    Attributes:
        name: the logged name.
        line: 1-based line of the call.
        chain: ``flor.loop`` names around it, outermost first (``()`` outside every loop);
            None when unknown (a helper function whose call sites are not found).
        where: ``"loop"`` inside a loop, ``"head"`` before the first top-level loop,
            ``"tail"`` after it, ``"unknown"`` when the chain is unknown.
        file: the repository-relative file the statement is in.
    """

    name: str
    line: int
    chain: tuple[str, ...] | None
    where: Where
    file: str = ""


@dataclass(frozen=True)
class ScriptCode:
    """What the current version of one script logs, and its loop structure."""

    filename: str
    sites: tuple[LogSite, ...]
    loops: tuple[tuple[str, ...], ...]  # every flor.loop chain in the file, e.g. ("epoch", "step")
    #: ``(file, name in lower case, key)`` of each log statement, in source order: what
    #: identifies the statement and its placement (:mod:`florsql.propagate.identity`).
    keys: tuple[tuple[str, str, str], ...] = ()
    #: ``(file, name, neighbour's name, anchor key)``: the other names' log statements beside
    #: each statement (:func:`florsql.propagate.identity.statement_anchors`).
    anchors: tuple[tuple[str, str, str, str], ...] = ()
    #: sha256 of the text scanned: a replay checks that propagation read this same text
    digest: str = ""
    #: names (lower case) whose every statement here surely draws from no RNG
    #: (:func:`florsql.propagate.identity.statement_quiet`); every other may draw
    quiet: frozenset[str] = frozenset()
    #: ``(name in lower case, dotted module, level)``: the modules each name's statements may
    #: read through the file's imports (:func:`florsql.propagate.modules.statement_modules`);
    #: today's text of one that some version lacks is part of the name's fingerprint
    modules: tuple[tuple[str, str, int], ...] = ()
    #: names (lower case) with a statement that runs in every iteration of its ``flor.loop``
    #: (:func:`florsql.plan.guards.always_runs`): a run that ended an iteration without a
    #: recorded value of one lacks it there
    every: frozenset[str] = frozenset()
    #: ``(line, loop names)``: per log statement outside every loop, the top ``flor.loop``
    #: loops of its own function after it (:func:`florsql.plan.guards.top_loops`): a run that
    #: failed in one of those reached the statement
    top_loops: tuple[tuple[int, tuple[str, ...]], ...] = ()

    def may_draw(self) -> tuple[str, ...]:
        """Distinct log names, in order of appearance, of which a statement may draw."""
        return tuple(n for n in self.names() if fold(n) not in self.quiet)

    def names(self) -> tuple[str, ...]:
        """Distinct log names, in order of appearance."""
        return tuple(dict.fromkeys(s.name for s in self.sites))

    def sites_of(self, name: str) -> tuple[LogSite, ...]:
        return tuple(s for s in self.sites if fold(s.name) == fold(name))  # names ignore case

    def inner_loops(self) -> tuple[str, ...]:
        """Loop names nested inside another flor.loop."""
        return tuple(dict.fromkeys(c[-1] for c in self.loops if len(c) > 1))


def merge_code(codes: list[ScriptCode]) -> ScriptCode | None:
    """The statements and loops of several files (one run's) as one :class:`ScriptCode`.

    Example:
        >>> a = scan_source("import florsql as flor\nflor.log('x', 1)\n", "a.py")
        >>> b = scan_source("import florsql as flor\nflor.log('y', 2)\n", "b.py")
        >>> [(s.name, s.file) for s in merge_code([a, b]).sites]
        [('x', 'a.py'), ('y', 'b.py')]
    """
    if not codes:
        return None
    if len(codes) == 1:
        return codes[0]
    loops = {c for code in codes for c in code.loops}
    # quiet where every file that logs it has it quiet
    loud = {fold(n) for code in codes for n in code.names() if fold(n) not in code.quiet}
    return ScriptCode(
        filename=codes[0].filename,
        sites=tuple(s for code in codes for s in code.sites),
        loops=tuple(sorted(loops, key=lambda c: (len(c), c))),
        keys=tuple(k for code in codes for k in code.keys),
        anchors=tuple(a for code in codes for a in code.anchors),
        quiet=frozenset(n for code in codes for n in code.quiet) - loud,
        modules=tuple(m for code in codes for m in code.modules),
        every=frozenset(n for code in codes for n in code.every),
    )


#: The version of replay's rules (what the planner restores, what recording captures). Bumped
#: by a fix that changes what replay computes for some script: every statement fingerprint
#: includes it, so values replayed under older rules stop counting and are computed again
#: (an upgrade never keeps serving a value a since-fixed bug computed). 2: wrappers of a loop
#: that write as it ends (``progress.wrap(flor.loop(...))``, a generator function adding to a
#: global) are restored by no checkpoint. 3: a ``with`` around the skipped loop whose
#: ``__enter__`` keeps state (``start = d["steps"]`` in a ``@contextmanager``) needs the
#: previous iteration replayed; a wrapper of the outer loop read as a value replays the whole
#: run. 4: the same ``with`` rule for a loop in a function the outer loop calls. 5: a registered
#: module's ``requires_grad`` flags are restored; ``print(..., file=f)`` changes ``f``; an
#: ``io.StringIO`` is saved and refilled, an open file is restored by nothing where its state
#: is read (``f.tell()``); a checkpoint whose module was swapped or hooked since the script's
#: start is refused (loud), not restored. 6: a run that entered its outer loop more than once
#: replays whole; a tensor a name has held since the loop began is restored in place (runs
#: recorded from now on), so a dict holding it too stays true; change sets also hold what a
#: ``with`` item, a script property or caching ``__getitem__``, ``globals()[...]`` and a method
#: called on a script function's result change; the first inner loop of a generator is never
#: skipped; checkpoints marked unsound start no task; each outer loop reads its own manifest
#: lines (two checkpointed loops had their iteration numbers mixed); a DataLoader's script
#: dataset or sampler that changes as it is read is in the change set, so is what a module's
#: forward changes; registered generators, deques, Random and containers are refilled in
#: place; optimizers' and modules' container attributes are kept; numpy arrays and tensors in
#: containers keep their aliases; propagation carries new compound statements, refuses an
#: update inside an old block, and counts a verbatim or similar statement as present only
#: when no other new statement stands for it.
#: 7 (session 24): propagation carries code into other blocks (updates inside the step loop,
#: initialisers above, the loop's tail, the module's definitions), lifts new blocks, renames by
#: what binds a name (loop targets), refuses decoys and code that changes what the old code
#: reads; names today's carried code changes are never restored from a checkpoint.
#: 8 (session 26): a log statement that wraps code the old version runs (``acc +=
#: flor.log("l", loss.item())``, ``flor.log("gn", clip_grad_norm_(...))``) replaces that old
#: statement; before, it went in beside it and the code ran twice.
#: 9 (session 29): a statement is no longer placed before an old statement that today's code
#: dropped or moved and that changes what it reads (``sched.step()`` moved into the step loop:
#: ``flor.log("lr", sched.get_last_lr()[0])`` read the old run's lr one epoch early); refused.
#: 10 (session 29): values thrown away by the old version (``l, _, out = step()``) and names
#: bound by an old log statement of their value (``acc = flor.log("acc", EXPR)``) are placed
#: where they were refused (or ``EXPR`` ran twice).
#: 11 (session 29): an old name bound again elsewhere is a rename, not a value thrown away
#: (``a, b_old = 1, 2`` ... ``b_old = f(a)``: rule 10 filled today's ``b`` from the first line
#: and a statement reading ``b`` read 2 every epoch).
#: 12 (session 29): a name renamed between versions whose bindings are all in blocks both
#: versions have, statement for statement (``loss`` was ``batch_loss`` in the step loop, ``opt``
#: was ``optimizer``), read after the step loop, is placed renamed (was refused).
#: 13 (session 30): carried code that stores into what the old version holds
#: (``opt.param_groups[0]["lr"] *= 0.5``, ``net.weight.data *= 0.99``) is refused (was carried:
#: the replayed runs trained at another rate than the recorded ones, silently), and so is a
#: method of an old object called by carried code; a statement that runs a module today's code
#: switches to evaluation mode before it (``net.eval()``) gets the switch, between a save and a
#: restore of the module's modes (was placed without the switch: dropout on, silently).
#: 14 (session 30): a switch to evaluation mode in a block around the statement (``net.eval()``
#: in the epoch body, today's ``va = ...`` inside the old ``with torch.no_grad():``) refuses
#: it (was placed: dropout on, silently); today's EMA update over ``zip(ema.parameters(),
#: net.parameters())`` travels with a statement evaluating ``ema`` (was left behind: the
#: untrained copy evaluated, silently); a loop changing the parameters an object gives
#: (``pe.mul_``) changes that object for the replay's plan (a step loop updating an EMA that no
#: checkpoint held was skipped, and the EMA read as the script made it, silently).
#: 15 (session 30): a statement inside a helper today's code added (``evaluate()`` called after
#: the step loop) is refused where its neighbours point elsewhere in the old block than the call
#: (was placed by an accidental neighbour, before the step loop: the accuracy before training).
#: 16 (session 30): carried code that changes training state by other routes is refused (a
#: learning-rate scheduler made today on an old optimizer, a helper defined today that changes
#: its argument, ``clip_grad_norm_`` through a list of old parameters: were carried, silently).
#: 17 (session 31): an in-place change through an alias of an old object before a statement
#: calling a method of it (``p.data.mul_(0.5)``, then ``p.sum()``) refuses it (was left out:
#: the un-halved weights logged, silently).
#: 18 (session 31): a statement reading a name the old code computes running a module that
#: today's code switches to another mode before it (``net.eval()`` before the old ``va = ...``)
#: is refused (was placed: the old, dropout-on value logged as today's, silently).
#: 19 (session 31, sweep s34): a restored optimizer keeps the parameter-group dicts and the
#: state mapping the script holds (``group = opt.param_groups[0]``; ``group["lr"] *= 0.5``
#: decayed a dict the optimizer no longer read after a restore, silently); a model's config
#: object and its parameters' attributes are restored (checkpoints recorded since); a script
#: object passed as a hook that changes itself is changed by every loop (a replay skipping the
#: step loop read the hook's counts as the script's start made them, silently); a model cast, a
#: layer replaced or a weight tied during the run marks the later checkpoints unsound.
#: 20 (session 33, sweep s33): ``flor.arg`` with a list, tuple or dict default gives a replay
#: the value its run got (was the string ``"Tagged('json', '[16, 8]')"``: ``len(widths)`` 24,
#: ``betas[0]`` ``'T'``, silently); a repository module whose functions pass its own objects to
#: library calls (``np.add.at(SEEN, i, 1)``, ``torch.randn(n, generator=G)``) keeps state (the
#: step loop was skipped and ``SEEN`` read as a fresh import made it, silently); a step loop
#: whose code after it back-propagates is not skipped (losses summed over it with their graph,
#: ``total.backward()`` after it: the checkpoint's detached ``total`` failed the task, and the
#: failure was remembered as the statement's). The number lives in florsql.store.replays, where
#: a failed task's ``source_hash`` includes it: an upgrade retries what the older rules failed.
#: 21 (session 33): replays run today's statements between ``flor._hindsight_begin`` and
#: ``_hindsight_end``, which note the global RNGs a statement drew from (a DataLoader's base
#: seed: silent before), for ``StatementDrawWarning``; values unchanged.
#: 22 (session 34): a replay task imports the version's modules where its run found them
#: outside the script's folder too: ``PYTHONPATH`` entries, ``.pth`` lines and editable
#: installs naming the user's checkout follow into the worktree (``florsql.replay.imports``;
#: was today's ``src/mypkg`` in every version's replay, silently).
#: 23 (session 34): a run whose tasks saw today's statements draw from a global RNG, where a
#: checkpoint was restored after the draw, is replayed again from its start with none restored
#: (``runner._from_the_start``): the values are a run of today's script's (were the recorded
#: run's after the draw, matching neither, with a warning); a line wrapping an old one is not
#: guarded (its draws are the run's own: was a false ``StatementDrawWarning``).
#: 24 (session 34, sweep s34h1): a ``DataLoader`` with ``persistent_workers`` (and worker
#: processes) is restored by no checkpoint: its workers keep their RNGs (a dataset's random
#: augmentation) across epochs, and a replay task starting at a checkpoint started new ones
#: seeded elsewhere (other batches: per-step values silently wrong where no old statement
#: depended on them); such runs now replay the step loop from the top. A replay task reads a
#: file of the user's checkout that the version holds, opened by its path there (an absolute
#: ``--config $PWD/configs/base.json``), from the worktree: it read today's file (an old
#: version's batch size and learning rate were today's, silently). git in a replay task
#: answers for the commit the run's checkout had (``GIT_DIR`` of
#: ``florsql.replay.worktree.head_gitdir``): ``git rev-parse HEAD`` gave today's HEAD for
#: every old run, silently.
#: 25 (session 35): a Ray task on a node that also sees the user's checkout (one machine, a
#: shared filesystem) follows the import paths and editable installs naming the driver's
#: repository into the shipped tree, as a local task does (rule 22): an editable install's
#: finder gave a v1 replay v2's ``mypkg``, silently.
#: A run recorded with ``PYTHONHASHSEED`` set replays with that seed (a fresh interpreter
#: where it is not the warm worker's 0): every replay hashed strings with seed 0, so
#: ``list(set(text))`` gave another vocabulary order and the values another encoding, silently;
#: a run with random hashing whose strings come back in another order warns, naming them.
#: Sweep h3: an optimizer or scheduler held as an attribute of a checkpointed
#: optimizer or module (``self.base_optimizer`` of a sharpness-aware wrapper, a Lightning-style
#: model's ``self.optimizer`` and ``self.scheduler``), registered or in a change set, is saved
#: by its state_dict and restored in place (checkpoints recorded since; older ones of such are
#: refused): a replay from a checkpoint stepped it from no momentum and the start's rate
#: (sharpness at epoch 3, step 3: 0.0213, a full re-run 0.0181; lr 0.16 for 0.1024, silently;
#: ``KeyError: 'momentum_buffer'`` where today's statement read it); an optimizer in a change
#: set keeps its parameter-group dicts as a registered one does. A task
#: that restored a checkpoint and reads a file its run wrote while it ran (``during:``), or
#: finds none, is replayed again from the run's start (weight files of the last epochs averaged
#: after the loop: NULL with a FileNotFoundError where the folder was not ignored; another
#: seed's files where it was, 0.2654 for a full re-run's 0.2579, with a data warning only).
#: Sweep h1: the RNG guard's end runs in a ``finally`` around a compound piece (a new
#: ``if`` carried whole) and a jumping one (``return flor.log(...)``): a piece left through
#: ``continue``, ``break``, ``return`` or ``raise`` skipped it, so its draw went unnoticed and
#: the run was not replayed again from its start (values after a restored checkpoint followed
#: the recorded generator, silently); each name keeps its own snapshots (one piece inside
#: another's overwrote the outer's). The guard also compares the generator objects the code's
#: frame names (a numpy ``Generator``, a ``random.Random``, a ``torch.Generator``): a statement
#: drawing from one the loop draws from (``rng.normal()``) left the values after a restored
#: checkpoint on the recorded generator, silently; one today's code made is its own. A piece
#: before the script's first ``flor`` call was not checked; a statement that raised part-way,
#: caught by the old code, skipped its end (now the next begin of its name ends it).
#: 26 (session 35, gap 2): a replay also places and runs (not storing their values) today's
#: other statements its version lacks that may draw from an RNG (all but calls of value
#: builtins and tensor reads: ``pieces_quiet``, ``statement_quiet``), the planner analyses the
#: script with them, and a name's fingerprint covers theirs: ``w0`` asked alone (``WHERE
#: step = 5``) beside today's ``val_acc`` over a DataLoader followed the recorded run
#: (-3.783543 at epoch 2, step 5, for -3.77595 in a run of today's script), silently; one of
#: two drawing statements asked alone missed the other's draws; a stored value stayed served
#: after a drawing statement was added.
#: 27 (session 36, sweep h4): the RNG guard also watches the generator objects the frame's
#: names hold, up to two attributes or container entries deep (``self.rng`` of a trainer,
#: ``cfg.rng``, ``rngs["aug"]``, ``self.loader.generator``): a statement drawing from one
#: the loop draws from went unnoticed, and the values after a restored checkpoint followed
#: the recorded generator (``d`` 0.1049 for a full re-run's 0.3616, silently). An
#: optimizer or scheduler held as an attribute by a registered scheduler (its
#: ``optimizer``) or by another registered object saved by its ``state_dict`` (a trainer
#: keeping only its model's) is saved and restored in place as one held by a module is
#: (checkpoints recorded since; older ones of such holders are refused): a scheduler
#: registered without its optimizer restored the scheduler alone, and the rate after it was
#: the start's (lr 0.1 for a full re-run's 0.025, silently). A run lists the files it
#: wrote (``outputs``): from the point a replay task skips iterations, reading one raises
#: ``SkippedWriteError`` (the run is replayed from its start) until the task writes it anew
#: (a file written before the loop and in it, read by today's statement, read the task's
#: pre-loop copy: 0.0 for 0.77241; one only today's statement reads after the loop, another
#: seed's: 3.532 for 2.120; both silently); a ``FileNotFoundError`` is retried from the start
#: only for a file the run wrote (today's statement's own was retried, failing twice); a
#: task that reads an output before writing it (a run resumed from its own ``last.json``)
#: warns, naming it (silent before).
#: 28 (session 36, sweep h3; merged in session 37): the RNG guard also walks a torch
#: model's submodules for generators, once per model (a ``DropPath``'s own
#: ``torch.Generator`` three modules down, drawn by today's ``net(XV)`` in training mode:
#: 0.5093 for a run of today's script's 0.5196, under a NondeterminismWarning only). A
#: restored wrapper optimizer sharing its base optimizer's parameter groups (timm's
#: ``Lookahead``) shares them again (``lookahead_step`` 10 at every later step, silently).
#: Checkpoints recorded since also hold a script module's or optimizer's private attributes
#: (``self._samples_seen``: 0 for a full re-run's 192; a hand-written Adam's ``self._t``;
#: silently) and any module's generators, the data attributes of a registered script object
#: beside its partial ``state_dict`` (an augmenter's ``random.Random`` and count), and mark a
#: parameter hooked during the run (``p.register_hook(clamp)`` after the warm-up) as no start.
#: 29 (session 37, sweep h1): checkpoints recorded since keep a local that aliases a
#: registered tensor as that alias: a part of one (``w.detach()[1]``), a numpy view of one
#: (``w.detach().numpy()``: ``w00`` 1.3041 for a full re-run's 1.1737 after an epoch's end
#: shrink), a registered optimizer's state tensor (``buf = opt.state[p]["momentum_buffer"]``:
#: 0.5926 for 0.2963 after a damping), a registered optimizer's group dict or a model's
#: submodule (``group = opt.param_groups[0]`` in the step loop, read after ``sched.step()``:
#: 0.0686 for 0.04802), a list inside a registered plain dict (``losses = hist["loss"]``: 19
#: for 20), each restored as a copy frozen at the checkpoint, silently; they leave out a
#: local holding the ``id()`` of a live object (``gema[id(p)]``: ``g0`` 0.0164 for 0.0996,
#: 8 entries for 4, silently), and a run whose registered object's ``state_dict()`` raises
#: takes no checkpoint there (its training ended on the exception).
#: 30 (session 39, sweep h2): a carried ``def`` or ``class`` keeps its decorators (a
#: ``@functools.lru_cache`` helper ran every call: 43 for a full re-run's 33; a decorator
#: doubling the value: 8 for 16; silently), and a carried binding whose counterpart the old
#: version has at another place (in an ``if`` today's code left, out of one it added, with an
#: edited constant) is refused, not run a second time there (4 for 2, silently); a name
#: today's file imports as another module than the old file (``import json`` today, ``import
#: pickle as json`` then) is refused (24 for 10, silently), and today's ``import math`` reads
#: the old ``import math as m`` (was refused: "unbound name").
#: 31 (session 39, sweep h1): checkpoints recorded since keep a local that shares memory with
#: another name's value as a view of it: a view of a local tensor (``loss_slot = stats[0]``,
#: ``loss_slot += loss`` in the step loop: ``stats.sum()`` 0.0 for a full re-run's 22.09), a
#: numpy view of an array or a tensor (``row = acc[epoch]``, ``flat = conf.reshape(-1)``,
#: ``counts.numpy()``), a view of a tensor a saved dict holds (``head = bank["m"][:2]``,
#: ``head.mul_(0.5)`` after the step loop: 3.7786 for 1.8893) or a tensor one holds (``e0 =
#: ema[0]``, ``e0.mul_(0.5)``: 0.9292 for 0.4646), a tensor of a torch module or optimizer a
#: name holds unregistered (``rm = probe.running_mean``: -0.0488 for -0.0244;
#: ``mbuf = head_opt.state[w]["momentum_buffer"]``: 0.3308 for 0.1654 after a damping), each
#: restored as a copy the replay's later writes parted from its base, silently; the base is
#: saved too (in place where the loop does not rebind it) and the view made again of the
#: replay's (a copy where that base is not found). A registered model's parameter bound by
#: name (``w = net[2].weight``) is the replay's parameter itself (a copy: ``w_norm`` 2.4412
#: for 2.1971 after an epoch's end shrink, ``w is net[2].weight`` false). Also in 31 (a
#: property test over random aliasing scripts): ``torch.from_numpy(arr)`` and ``t[::2].numpy()``
#: made again over the restored base; a tensor or array a saved container and a name both
#: hold comes back as one object; a name the loop does not rebind holding an array that a
#: container holds, or a view made before the loop, is refilled in place (each was a copy).
#: 32 (session 39): a carried binding the old version has already under its old name (``b =
#: (b * b) % 97`` beside the old ``b_old = (b_old * b_old) % 97``) is refused, not run twice
#: (64 for 18, silently; found by the renames property in CI).
#: 33 (session 40): ``acc = total`` in the epoch loop (or before it), ``acc += loss`` in the
#: step loop: both loops change ``total`` (an augmented assignment changes in place, through
#: a binding anywhere in the scope), and a tensor or array two names hold is restored as one
#: object (``total`` was not saved: ``total_seen`` 0.0 for 6.09, silently).
#: 34 (session 42, a stranger's sweep): checkpoints hold the parameters' gradients (of the
#: registered modules, of the tensors a registered optimizer trains that no module holds, of
#: registered tensors and of locals trained by hand) and a restore puts them back: an
#: ``opt.step()`` after the step loop flushing the rest of an accumulation stepped on nothing
#: in a ``rest`` iteration (``val_loss`` 15.1973 for a full re-run's 16.4703), and an
#: accumulation across epochs lost the gradient carried into a task's first epoch (``wst``
#: 1.2195 for 1.1997), silently. Values replayed before are replayed again (from checkpoints
#: recorded before, as before: they hold no gradient). Also in 34: a statement that changes a
#: registered module in place (a spectral-normed layer's ``weight`` read in train mode: its
#: power iteration's vectors; batch norm's statistics; gradients; training flags) counts as a
#: draw, and its run is replayed from the start (``wn`` 1.6243 for 1.6344, silently); a task
#: that failed putting a checkpoint back runs again from its run's start (NULL before); a
#: DataLoader local keeps its script-class dataset's and samplers' data attributes, and a pandas
#: DataFrame or Series is refilled by ``__setstate__`` (each came back as the script's start
#: made it, or empty, silently).
#: 35 (session 43, a stranger's sweep): state a script keeps in its functions (a default
#: argument a function changes, ``def smoothed(v, _state={})``; what a ``functools.partial``
#: binds; an ``lru_cache`` of drawn values) replays the whole run (``smoothed``'s running mean
#: was the epoch's own loss: 0.1243 for 0.2077, silently); today's statement keeps its side of
#: each old statement that changes what it reads, and ``sched.step()`` changes ``opt`` (a
#: renamed version that stepped its scheduler before ``evaluate`` got the next epoch's rate,
#: silently); a local bound to a registered module's gradient is restored as a reference to it.
#: 36 (session 44): a class changed through an instance (``type(self).total += 1``,
#: ``self.__class__``, a classmethod called on the instance, a bound method kept in a dict or
#: reached by ``getattr``) and a global changed as ``__main__.cnt`` count as changed (6 for 9,
#: silently); a replay writes every path outside the repository to private copies too (a
#: replayed ``torch.save`` to ``/tmp/last.pt`` overwrote the user's file), and a run lists the
#: files it wrote there among its outputs.
#: 37 (session 45): a task that skipped iterations while today's placed texts may draw in some
#: and not others (``if epoch % 2 == 1: noise = random.random()``) has its run replayed from
#: the start; a draw seen in a run's loop sets aside earlier tasks of it that skipped
#: iterations with that statement placed (their values were served: -2.5219 for -2.4853);
#: ``getattr(stats, "train").append(v)`` changes ``stats`` (0 for 20, silently).
#: 38 (session 46): the code today's placed texts call counts too: a helper, a method of the
#: user's class (the checkpointed model's own ``probe``), a function of another module of the
#: version that branches around a draw, or ``torch.dropout(h, 0.5, epoch == 1)``, makes them
#: uneven (a query for epoch 3 restored the checkpoint after epoch 2, past epoch 1's draw:
#: -1.1192 for a run of today's script's value, silently).
#: 39 (session 47, sweep K): an outer ``flor.loop`` iterated through a call that pairs its
#: items with state of its own (``enumerate(flor.loop("epoch", ...), start=1)``, ``zip(flor.loop(
#: ...), lrs)``) replays every iteration from the first: a task starting at epoch 4 handed the
#: wrapper that epoch as its first item (``n`` 1 for 5, ``lr`` 0.3 for 0.02, silently, and
#: the value stayed served); so does one whose ``flor.loop`` sits in a generator of the
#: script that yields to the statement's ``for`` (``def epochs(): k += 1; yield e, k``: k 1
#: for 4 at a restored epoch 3, silently; sweep M).
#: 40 (session 48): a run that iterated a ``flor.loop`` on after it was taken as left replays
#: whole (sweep O); an ``evaluate`` putting a model in eval mode first no longer hides a draw
#: of the user's own layer (sweep Q).
#: 41 (session 49): a placed text that calls code which may draw is uneven where it branches
#: nowhere too (sweep P: dropout ``p`` annealed to 0 by the old loop, eval mode every other
#: epoch, a draw sized by the data: a task restored past the skipped iterations' draws and
#: answered 19.2867 for a run of today's script's 19.3711, silently and for good); the draw
#: guard no longer puts back a mode seen inside today's own mode switch.
#: 42 (session 49, sweep R): a replay finds none of the files the run made (``created_outputs``:
#: not there when the run first wrote them, the target of a move too) until it writes it:
#: the first run of a resume-if-present pattern read a later run's state file (values
#: warned, or a failed task naming no file), ``exists(f"e{epoch}.done")`` markers skipped
#: epochs the run ran (warned).
#: 43 (session 49, sweep S): a task that runs an inner iteration its run never reached (a
#: loop the run stopped on a preemption flag, a caught Ctrl-C) fails at that outer iteration
#: (its values were the full epoch's: -0.5048 for -0.9891, under a generic warning).
#: 44 (session 50): a name the version logs where the run never did (an ``if do_eval:`` the
#: run did not take, an ``epoch % 2`` today's code dropped) gets today's statement placed for
#: the iterations it lacks, unless that very statement is there (before, the replay ran the
#: version's own and stored nothing: NULL, said nowhere); a task of the code before the loops
#: stops where the outer loop begins (it ran the whole script: a failed run's values NULL); a
#: run that raised after its loop is replayed past it, up to its own error (its statements
#: there were NULL), and the sandbox no longer lets a write the run could not make succeed.
#: 45 (sessions 50-51, sweep U): a file saved once at the worktree's root (a link to the
#: repository's ignored ``best.pt``) and read back after the loop is read from the task's own
#: copy (the sandbox's stat redirection made ``realpath`` resolve the link to itself: the last
#: recorded run's weights, 0.775 for 0.875, silently but for a data warning); a name today's
#: statement logs in every iteration is replayed in the iterations a run recorded none of it
#: (``if epoch % 2 == 0:`` old: NULL in the odd epochs, said nowhere).
#: 46 (session 51, sweep W): a run that recorded a name in some iterations with another
#: statement than today's keeps its values unmixed, the other iterations NULL, said (session
#: 50's rule filled them with today's values: ``*3`` and ``*4`` taking turns in one run's
#: column, silently); values replayed so under 44-45 are computed again.
#: 47 (session 52, sweep W's W2): so does a run that recorded it with the same statement in
#: another place (before the update of what it reads, today's after it: the odd epochs took
#: today's placement, silently); the statements both versions have that may change what it
#: logs must lie on the same side of both (``florsql.plan.guards.other_statement``).
#: 48 (session 57, sweep AJ): a replayed ``flor.log`` of an ``nn.Parameter`` (any Tensor
#: subclass) of one element stores the number (was its repr, "Parameter containing: ..."),
#: and a list or dict past 64 KB its JSON (was its repr); propagation pairs statements alike
#: but for literals by their spelling (a placement decided by that tie may differ), and a new
#: block alike but for literals to an old one travels whole (its statement went into the old
#: block: values of the old guard, silently).
#: 49 (session 58, sweeps AL, AM): new code that changes in place an object the old version
#: holds (a method in an expression, ``out=``, a function changing its argument, a helper
#: called with it, through an alias or an optimizer or scheduler holding it, a new
#: ``backward``) travels or is refused; it was left behind and the replay logged the old
#: object's value (``len(xs)`` without today's ``xs.extend([2])``), silently: values replayed
#: so are computed again (refused now: NULL, said).
REPLAY_RULES = _STORED_RULES


def statement_fingerprints(
    codes: Iterable[ScriptCode],
    recorded: Collection[str] | None = None,
    modules: Mapping[str, Sequence[str]] | None = None,
    complete: Collection[str] = (),
) -> dict[str, str]:
    """Per log name (lower case): a fingerprint of today's statements for it in ``codes`` (every
    file some run executed): the keys of each of its statements, with their files, and the
    anchor keys of the log statements of other names beside them that some run recorded
    (``recorded``, lower case; None: every neighbour): an old version that logs such a name
    places the statement by it; and those of every other name's statements in ``codes`` that
    may draw from an RNG (:attr:`ScriptCode.quiet`): a replay runs the ones its version lacks
    beside it; and ``modules`` (name -> ``path\0sha256`` of today's repository modules its
    statements read that some version lacks: :func:`module_parts`), whose text a replay of
    such a version runs. A replayed value of a name counts only while the replay's fingerprint
    for it is this one. ``complete`` (lower case): names every run that executed a file logging
    them today recorded: no version lacks them, so a replay never runs today's statements of
    theirs, and their keys are not part of the other names' fingerprints (session 52, sweep Y
    N1: a print added beside ``loss``, which any torch script's ``loss.item()`` makes "may
    draw", made every replayed column replay again).

    Example:
        >>> a = scan_source("import florsql as flor\nflor.log('x', 1)\nflor.log('y', 2)\n", "a.py")
        >>> b = scan_source("import florsql as flor\nflor.log('x', 1)\nflor.log('y', 3)\n", "a.py")
        >>> c = scan_source("import florsql as flor\nflor.log('x', 1)\nflor.log('y', f())", "a.py")
        >>> fa, fb, fc = (statement_fingerprints([s]) for s in (a, b, c))
        >>> sorted(fa), fa["x"] == fb["x"], fa["y"] == fb["y"], fa["x"] == fc["x"]
        (['x', 'y'], True, False, False)
    """
    codes = list(codes)
    per: dict[str, list[str]] = {}
    for code in sorted(codes, key=lambda c: c.filename):
        for file, name, key in code.keys:
            per.setdefault(name, []).append(f"{file}\0{key}")
        for file, name, other, key in code.anchors:
            if name in per and (recorded is None or other in recorded):
                per[name].append(f"{file}\0anchor\0{key}")
    for name, parts in (modules or {}).items():
        if name in per:
            per[name] += [f"module\0{part}" for part in parts]
    rules = f"rules {REPLAY_RULES}"
    own = {
        name: hashlib.sha256("\0\0".join([rules, *parts]).encode()).hexdigest()[:32]
        for name, parts in per.items()
    }
    # A replay of a name also runs today's other statements its version lacks that may draw
    # from an RNG (a run of today's script has their draws: session 35, gap 2), so its values
    # stand on theirs too: such a statement edited, added or removed computes them again.
    loud = {n for code in codes for n in (fold(x) for x in code.names()) if n not in code.quiet}
    loud -= {fold(n) for n in complete}
    return {
        name: hashlib.sha256(
            "\0\0".join(
                [mine, *(f"{o}\0{own[o]}" for o in sorted(own) if o != name and o in loud)]
            ).encode()
        ).hexdigest()[:32]
        for name, mine in own.items()
    }


def module_parts(
    repo: Path, codes: Iterable[ScriptCode], lacking: Callable[[str, str | None], bool]
) -> dict[str, list[str]]:
    """Per name (lower case): ``path\0sha256`` of today's text of each repository module its
    statements in ``codes`` read (and of those such a module imports), where ``lacking(path)``
    (some recorded version lacks it: a replay of that version runs today's text,
    :func:`florsql.propagate.modules.added_modules`). Empty for names reading none."""
    from florsql.propagate.modules import module_digests

    out: dict[str, list[str]] = {}
    for code in codes:
        per: dict[str, list[tuple[str, int]]] = {}
        for name, dotted, level in code.modules:
            per.setdefault(name, []).append((dotted, level))
        for name, mods in per.items():
            parts = module_digests(Path(repo), code.filename, mods, lacking)
            if parts:
                out.setdefault(name, []).extend(parts)
    return {n: sorted(set(p)) for n, p in out.items()}


def scan_script(repo: Path, filename: str) -> ScriptCode | None:
    """The log statements of ``repo/filename`` as it is now (None if missing or unparsable).

    Cached in memory and on disk (``.florsql/cache/scan/``, per scanner code too) per file
    content, so a process that queries an unchanged script neither parses it nor imports
    libcst. Not per size and modification time: an edit that keeps both (``* 2`` to ``* 3``
    saved within one timestamp tick, a file put back by ``cp -p`` or ``rsync -t``) served the
    old statement's scan, so its replayed values as the new statement's, without a word.

    Example:
        >>> code = scan_script(Path("."), "examples/train.py")  # doctest: +SKIP
        >>> [(s.name, s.chain) for s in code.sites]  # doctest: +SKIP
        [('loss', ('epoch', 'step')), ('val_acc', ('epoch',)), ('final_acc', ())]
    """
    path = Path(repo) / filename
    store = str(layout.store_dir(repo))
    for _ in range(3):
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None
        try:
            return _scan_cached(str(path), store, filename, digest)
        except _Changed:
            continue  # written again between the two reads: look again
    return None


class _Changed(Exception):
    """The file changed between hashing it and reading it to scan (not cached)."""


@lru_cache(maxsize=256)
def _scan_cached(path: str, store: str, filename: str, digest: str) -> ScriptCode | None:
    """The scan of ``path`` whose content has sha256 ``digest`` (:class:`_Changed` if it has
    not any more)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != digest:
        raise _Changed(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    key = hashlib.sha256(_scanner_key() + filename.encode() + b"\0" + data).hexdigest()
    where = Path(store) / SCAN_CACHE / f"{key}.json"
    try:
        return _decode(json.loads(where.read_bytes()))
    except (OSError, ValueError, TypeError, KeyError):
        pass  # not cached yet (or unreadable): scan it
    code = scan_source(text, filename)
    _store_scan(where, code)
    return code


SCAN_CACHE = "cache/scan"
#: The modules of :mod:`florsql.propagate` that statement keys are computed with.
_KEY_MODULES = ("identity", "cache", "find", "helpers", "modules", "normalize", "slice", "source")
SCAN_CACHE_FILES = 512  # the newest kept; each is a few hundred bytes


@lru_cache(maxsize=1)
def _scanner_key() -> bytes:
    """The scanner's own code: a cached scan is only used by the code that made it."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    propagate = here.parent / "propagate"
    for path in (
        here / "hindsight.py",
        here / "scan_code.py",
        here / "scan_ast.py",
        here / "guards.py",
        here / "patched.py",  # (guards reads its decorator rules)
        here.parent / "fold.py",  # how names are folded in the keys
        *(propagate / f"{m}.py" for m in _KEY_MODULES),
    ):
        try:
            digest.update(path.read_bytes())
        except OSError:  # no source (a frozen install): a per-process key, no reuse
            digest.update(os.urandom(16))
    return digest.digest()


def _encode(code: ScriptCode | None) -> Any:
    if code is None:
        return None
    sites = [[s.name, s.line, s.chain, s.where, s.file] for s in code.sites]
    keys = [list(k) for k in code.keys]
    anchors = [list(a) for a in code.anchors]
    return {
        "filename": code.filename,
        "sites": sites,
        "loops": code.loops,
        "keys": keys,
        "anchors": anchors,
        "digest": code.digest,
        "quiet": sorted(code.quiet),
        "modules": [list(m) for m in code.modules],
        "every": sorted(code.every),
        "top_loops": [[line, list(names)] for line, names in code.top_loops],
    }


def _decode(doc: Any) -> ScriptCode | None:
    if doc is None:
        return None
    sites = tuple(
        LogSite(str(n), int(line), None if c is None else tuple(map(str, c)), w, str(f))
        for n, line, c, w, f in doc["sites"]
    )
    loops = tuple(tuple(map(str, c)) for c in doc["loops"])
    keys = tuple((str(f), str(n), str(k)) for f, n, k in doc["keys"])
    anchors = tuple((str(f), str(n), str(o), str(k)) for f, n, o, k in doc["anchors"])
    return ScriptCode(
        filename=str(doc["filename"]),
        sites=sites,
        loops=loops,
        keys=keys,
        anchors=anchors,
        digest=str(doc["digest"]),
        quiet=frozenset(map(str, doc.get("quiet") or ())),
        modules=tuple((str(n), str(d), int(v)) for n, d, v in doc.get("modules") or ()),
        every=frozenset(map(str, doc.get("every") or ())),
        top_loops=tuple(
            (int(line), tuple(map(str, names))) for line, names in doc.get("top_loops") or ()
        ),
    )


def _store_scan(where: Path, code: ScriptCode | None) -> None:
    """Best effort: a store that cannot be written (read-only, absent) only loses the cache."""
    if not where.parent.parent.parent.is_dir():  # no .florsql/ here: nothing to cache in
        return
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        layout.write_bytes_atomic(where, json.dumps(_encode(code)).encode())
        kept = sorted(where.parent.glob("*.json"), key=_mtime, reverse=True)
        for old in kept[SCAN_CACHE_FILES:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def scan_source(text: str, filename: str = "<string>") -> ScriptCode | None:
    """Like :func:`scan_script` for source text.

    Example:
        >>> src = "import florsql as flor\\nfor e in flor.loop('epoch', range(3)):\\n"
        >>> src += "    flor.log('acc', e)\\n"
        >>> [(s.name, s.chain, s.where) for s in scan_source(src).sites]
        [('acc', ('epoch',), 'loop')]
    """
    from florsql.plan.scan_ast import loose_loop, scan_ast
    from florsql.propagate.identity import statement_anchors, statement_keys, statement_quiet
    from florsql.propagate.modules import statement_modules

    try:
        code = scan_ast(text, filename)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # Syntax newer than this interpreter's, say: libcst's own parser may still read it.
        from florsql.plan.scan_code import scan_text

        code = scan_text(text, filename)
    if code is None:
        return None
    if loose_loop(text) is not None:
        # a flor.loop iterated where no ``for`` says so (``it = iter(flor.loop(...))``, then
        # ``next(it)`` in a ``while`` loop): the chains found leave that loop out (session 42:
        # "outside loops", so no iteration was replayed: 0 rows, no word). Unknown: whole runs.
        code = replace(
            code, sites=tuple(replace(s, chain=None, where="unknown") for s in code.sites)
        )
    return replace(
        code,
        keys=tuple((filename, n, k) for n, k in statement_keys(text)),
        anchors=tuple((filename, n, o, k) for n, o, k in statement_anchors(text)),
        digest=text_digest(text),
        quiet=statement_quiet(text),
        every=_every(text),
        top_loops=_top_loops(text),
        modules=tuple(
            (n, dotted, level)
            for n, mods in (statement_modules(text) if "import" in text else {}).items()
            for dotted, level in mods
        ),
    )


def _every(text: str) -> frozenset[str]:
    """:attr:`ScriptCode.every` of ``text``."""
    from florsql.plan.guards import every_iteration

    return every_iteration(text)


def _top_loops(text: str) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """:attr:`ScriptCode.top_loops` of ``text``."""
    from florsql.plan.guards import top_loops

    return top_loops(text)


def text_digest(text: str) -> str:
    """The sha256 of a script's text, as :attr:`ScriptCode.digest` has it."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
