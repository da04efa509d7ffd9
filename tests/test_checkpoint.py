"""Checkpoints: taken where design section 6 says, restoring objects and RNGs exactly."""

from __future__ import annotations

import json
import mmap
import pickle
import random
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from florsql.errors import StoreError
from florsql.record import checkpoint as ckpt
from florsql.record import frame_state
from florsql.record.policy import CheckpointPolicy
from florsql.store.index import Index
from tests.helpers import run_dirs, run_script, script_frame, write

SCRIPT = """
import random, sys
import numpy as np
import pytest
import torch
import florsql as flor

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
counter = {"seen": 0}

def one_step():
    x = torch.randn(16, 4) + float(np.random.rand()) + random.random()
    loss = net(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    counter["seen"] += 1
    return loss

with flor.checkpointing(model=net, optimizer=opt, scheduler=sched, counter=counter):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(3)):
            flor.log("loss", one_step())
        # the checkpoint of this epoch was taken as the step loop exited: what follows is the
        # "next step" the restored state must reproduce bit for bit
        sched.step()
        one_step()
        torch.save({k: v.clone() for k, v in net.state_dict().items()}, f"{sys.argv[1]}/{epoch}.pt")
    for epoch2 in flor.loop("tail", range(2)):
        pass
"""


def _fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer, object, dict[str, int]]:
    torch.manual_seed(123)  # different init: everything must come from the checkpoint
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    return net, opt, sched, {"seen": -1}


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_restored_state_reproduces_the_next_step_bit_for_bit(
    tiny_repo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    write(tiny_repo / "ck.py", SCRIPT)
    run_script(tiny_repo, "ck.py", str(out), FLORSQL_CHECKPOINT_PERIOD="1")
    run = run_dirs(tiny_repo)[0]
    with Index.open(tiny_repo) as ix:
        ix.refresh()
        rows = ix.con.sql(
            "SELECT loop_name, iteration, position, file FROM checkpoints ORDER BY 1, 2"
        ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("epoch", e, "after:step") for e in range(4)]
    for _, epoch, _, name in rows:
        payload = ckpt.load(run / "checkpoints" / name)
        net, opt, sched, counter = _fresh()
        ckpt.restore(
            {"model": net, "optimizer": opt, "scheduler": sched, "counter": counter}, payload
        )
        assert counter["seen"] == 3 * (epoch + 1) + epoch
        # the code after the inner loop, run on restored state
        x = torch.randn(16, 4) + float(np.random.rand()) + random.random()
        sched.step()
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        expected = torch.load(out / f"{epoch}.pt", weights_only=True)
        for k, v in net.state_dict().items():
            assert torch.equal(v, expected[k]), (epoch, k)


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_replay_never_writes_into_the_checkpoint_it_loaded(tiny_repo: Path, tmp_path: Path) -> None:
    """Loads map the file privately: a replay's in-place updates of restored tensors (the
    optimizer's momentum buffers, the weights) stay in memory, even where the script made
    torch's default map shared."""
    out = tmp_path / "out"
    out.mkdir()
    write(tiny_repo / "ck.py", SCRIPT)
    run_script(tiny_repo, "ck.py", str(out), FLORSQL_CHECKPOINT_PERIOD="1")
    files = sorted((run_dirs(tiny_repo)[0] / "checkpoints").glob("*.pt"))
    before = {f: f.read_bytes() for f in files}
    with torch.serialization.set_default_mmap_options(mmap.MAP_SHARED):
        for f in files:
            payload = ckpt.load(f)
            net, opt, sched, counter = _fresh()
            ckpt.restore(
                {"model": net, "optimizer": opt, "scheduler": sched, "counter": counter}, payload
            )
            for _ in range(2):
                opt.zero_grad()
                net(torch.randn(8, 4)).pow(2).mean().backward()
                opt.step()
            with torch.no_grad():
                for t in payload["states"]["model"].values():
                    t.add_(1.0)
    assert {f: f.read_bytes() for f in files} == before


def test_torch_checkpoints_load_with_weights_only(tiny_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    write(tiny_repo / "ck.py", SCRIPT)
    run_script(tiny_repo, "ck.py", str(out), FLORSQL_CHECKPOINT_PERIOD="1")
    first = sorted((run_dirs(tiny_repo)[0] / "checkpoints").glob("*.pt"))[0]
    torch.load(first, weights_only=True)  # raises if anything outside the safe list is inside


def test_loop_without_inner_loop_checkpoints_at_iteration_end(tiny_repo: Path) -> None:
    write(
        tiny_repo / "flat.py",
        """
        import florsql as flor
        state = {"w": 0.0}
        with flor.checkpointing(state=state):
            for epoch in flor.loop("epoch", range(3)):
                state["w"] += 1.5
                flor.log("w", state["w"])
        """,
    )
    run_script(tiny_repo, "flat.py", FLORSQL_CHECKPOINT_PERIOD="1")
    run = run_dirs(tiny_repo)[0]
    files = sorted((run / "checkpoints").glob("*.pkl"))  # no torch imported: plain pickle
    assert [f.name for f in files] == [f"epoch-00000{i}.pkl" for i in range(3)]
    payload = ckpt.load(files[1])
    assert pickle.loads(payload["pickled"]["state"]) == {"w": 3.0}


def test_a_loop_made_before_checkpointing_and_run_inside_it_checkpoints(tiny_repo: Path) -> None:
    """``bar = wrap(flor.loop("epoch", ...))`` before ``with flor.checkpointing(...)``, iterated
    inside it, as a progress bar often is: it took no checkpoint at all (every replay ran from
    the top of the script)."""
    write(
        tiny_repo / "late.py",
        """
        import florsql as flor
        def wrap(it):
            yield from it
        state = {"w": 0.0}
        epochs = wrap(flor.loop("epoch", range(3)))
        with flor.checkpointing(state=state):
            for epoch in epochs:
                for step in flor.loop("step", range(2)):
                    state["w"] += 0.5
                flor.log("w", state["w"])
        """,
    )
    run_script(tiny_repo, "late.py", FLORSQL_CHECKPOINT_PERIOD="1")
    run = run_dirs(tiny_repo)[0]
    files = sorted((run / "checkpoints").glob("*.pkl"))
    assert [f.name for f in files] == [f"epoch-00000{i}.pkl" for i in range(3)]
    assert pickle.loads(ckpt.load(files[1])["pickled"]["state"]) == {"w": 2.0}


def test_adaptive_period_keeps_cost_under_budget(tiny_repo: Path) -> None:
    write(
        tiny_repo / "fast.py",
        """
        import florsql as flor
        blob = {"data": list(range(200_000))}
        with flor.checkpointing(blob=blob):
            for epoch in flor.loop("epoch", range(60)):
                blob["data"][0] = epoch
        """,
    )
    run_script(tiny_repo, "fast.py")
    with Index.open(tiny_repo) as ix:
        ix.refresh()
        taken, loop_s, ck_s = ix.con.sql(
            """SELECT (SELECT count(*) FROM checkpoints),
                      (SELECT sum(seconds) FROM loops),
                      (SELECT sum(copy_seconds) FROM checkpoints)"""
        ).fetchall()[0]
    assert 1 <= taken < 60  # far fewer than one per iteration: each costs more than 2%
    assert ck_s is not None and loop_s is not None


def test_policy_widens_and_fixed_period() -> None:
    p = CheckpointPolicy(budget=0.02)
    p.taken(0, 0.004, 0.0)
    p.iteration_done(0.1)
    assert p.period == 2 and not p.due(1) and p.due(2)
    fixed = CheckpointPolicy(period=3)
    fixed.taken(0, 10.0, 10.0)
    fixed.iteration_done(0.001)
    assert fixed.period == 3


def test_rng_roundtrip_in_process() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = ckpt.capture({})
    a = (random.random(), float(np.random.rand()), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(3)
    ckpt.restore({}, state)
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == a


class Meter:
    """An average meter, as training code keeps them (pickled with a checkpoint's locals)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0


def test_restored_locals_keep_the_aliases_inside_containers() -> None:
    """A saved dict, list or object is refilled in place down to what it holds: the meter in
    ``meters`` stays ``train_meter``, an unregistered module keeps the parameters its
    optimizer steps."""
    train_meter = Meter()
    meters = {"loss": train_meter}
    ema = torch.nn.Linear(2, 2)
    holder = [ema]
    ema_opt = torch.optim.SGD(ema.parameters(), lr=0.1)
    weight = ema.weight
    train_meter.total, train_meter.count = 3.5, 7
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["meters", "holder"], {}, {})
    want = weight.detach().clone()
    train_meter.total, train_meter.count = 0.0, 0
    with torch.no_grad():
        weight.add_(1.0)
    frame_state.restore(frame, cap, {})
    assert meters["loss"] is train_meter and (train_meter.total, train_meter.count) == (3.5, 7)
    assert holder[0] is ema and ema.weight is weight
    assert ema_opt.param_groups[0]["params"][0] is weight
    assert torch.equal(weight.detach(), want)


def test_a_container_entry_the_loop_replaced_is_not_refilled_into_its_old_alias() -> None:
    """``meters["train"]`` replaced by a new meter while ``first`` still holds the old one: a
    replay starts where ``meters["train"] is first`` again, and refilling that entry in place
    gave ``first`` the new meter's state."""
    first = Meter()
    meters = {"train": first}
    first.total, first.count = 1.5, 3
    meters["train"] = Meter()  # as the loop leaves it: first keeps its state
    meters["train"].total, meters["train"].count = 2.5, 5
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["meters"], {}, {})
    first = Meter()  # the replay's start: the script's own code made the alias again
    meters = {"train": first}
    frame_state.restore(frame, cap, {})
    assert (meters["train"].total, meters["train"].count) == (2.5, 5)
    assert (first.total, first.count) == (1.5, 3) and meters["train"] is not first


def test_two_places_that_held_one_object_hold_one_after_restore() -> None:
    """Saved under two names (``m = meters["train"]`` in the loop), one object stays one."""
    m = Meter()
    meters = {"train": m}
    m.total = 4.0
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["meters", "m"], {}, {})
    m = Meter()
    meters = {"train": Meter()}  # the replay's objects: not aliased yet
    frame_state.restore(frame, cap, {})
    assert meters["train"] is m and m.total == 4.0


class Tracked:
    """A meter with an update method (bound to a name before the loop)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0
        self.seen: list[int] = []

    def update(self, v: float) -> None:
        self.total += v
        self.count += 1


def test_a_bound_method_restores_its_object() -> None:
    """``upd = meter.update`` before the loop, ``upd(v)`` in it: the loop changes ``upd``, a
    bound method, which was taken for code (saved nothing: a replay's meter started empty)."""
    meter = Tracked()
    upd = meter.update
    add = meter.seen.append
    upd(2.0)
    add(7)
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["upd", "add"], {}, {})
    meter.total, meter.count, meter.seen[:] = 0.0, 0, []
    frame_state.restore(frame, cap, {})
    assert (meter.total, meter.count, meter.seen) == (2.0, 1, [7])
    assert upd.__self__ is meter and add.__self__ is meter.seen


class Tally:
    """Class attributes used as counters (the script's own class: its data is saved)."""

    n = 0
    items: ClassVar[list[int]] = []

    def bump(self) -> None:
        Tally.n += 1


def test_restored_locals_bring_back_a_script_class_s_attributes() -> None:
    Tally.n, Tally.items[:] = 3, [1, 2]
    items = Tally.items
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["Tally"], {}, {})
    assert cap.saved["Tally"][0] == "class" and set(cap.saved["Tally"][1]) == {"n", "items"}
    Tally().bump()
    Tally.items.append(9)
    frame_state.restore(frame, cap, {})
    assert (Tally.n, Tally.items) == (3, [1, 2]) and Tally.items is items
    assert callable(Tally.bump)  # methods are code: untouched


def tally_fn() -> None:
    """A function whose attributes hold state (``tally_fn.n += 1``)."""


def test_restored_locals_bring_back_a_script_function_s_attributes() -> None:
    f: Any = tally_fn
    f.n, f.calls = 3, [1, 2]
    calls = f.calls
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["tally_fn"], {}, {})
    assert cap.saved["tally_fn"][0] == "function" and set(cap.saved["tally_fn"][1]) == {
        "n",
        "calls",
    }
    f.n += 1
    f.calls.append(9)
    f.later = "set after the checkpoint"
    frame_state.restore(frame, cap, {})
    assert (f.n, f.calls) == (3, [1, 2]) and f.calls is calls
    assert not hasattr(f, "later") and f.__doc__ and tally_fn is f


def test_a_function_defined_inside_the_loop_is_missed_not_saved() -> None:
    """An LBFGS closure is defined in the step loop: saved by its attributes, a replay that
    starts from the checkpoint has no such function to fill (it failed with AttributeError)."""
    here = sys._getframe()

    def closure() -> int:
        return 1

    line = closure.__code__.co_firstlineno
    span = (here.f_code.co_filename, line - 1, line + 2)
    values = frame_state.frame_values(here)
    cap = frame_state.capture(values, ["closure", "tally_fn"], {}, {}, span)
    assert "closure" in cap.missed and "closure" not in cap.restores()
    assert cap.saved["tally_fn"][0] == "function"  # defined elsewhere: saved as before


def test_restored_locals_bring_back_a_random_instance_s_state() -> None:
    """random.Random keeps its state in C, not in its __dict__: filling the __dict__ in place
    restored nothing (a replayed draw repeated the generator's first values)."""
    rng = random.Random(3)
    rng.random()
    alias = [rng]
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["rng"], {}, {})
    want = random.Random()
    want.setstate(rng.getstate())
    for _ in range(5):
        rng.random()
    frame_state.restore(frame, cap, {})
    assert alias[0] is rng and rng.random() == want.random()


class Slotted:
    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.total, self.n = 0.0, 0


def test_restored_locals_refill_an_object_with_slots_in_place() -> None:
    """An object with ``__slots__`` (no ``__dict__``) inside a dict is refilled slot by slot,
    so a name that aliases it sees the restored values."""
    meter = Slotted()
    meters = {"train": meter}
    meter.total, meter.n = 1.5, 2
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["meters"], {}, {})
    meter.total, meter.n = 9.0, 7
    frame_state.restore(frame, cap, {})
    assert meters["train"] is meter and (meter.total, meter.n) == (1.5, 2)


def test_immutable_objects_in_checkpointing_restore_as_themselves() -> None:
    """``flor.checkpointing(model=m, scheduler=None)`` (a run without a scheduler): replay
    failed with 'cannot restore a NoneType in place'. An immutable object cannot have
    changed; a tuple's mutable parts are refilled."""
    history: list[int] = [1]
    objs: dict[str, Any] = {"scheduler": None, "steps": 3, "pair": ("a", history)}
    payload = ckpt.capture(objs)
    history.append(2)
    ckpt.restore(objs, payload, rng=False)
    assert objs["scheduler"] is None and objs["steps"] == 3
    assert objs["pair"][1] is history and history == [1]


def test_a_state_dict_keeps_its_containers_kinds() -> None:
    """An object's state_dict holding a Counter, a defaultdict, a namedtuple or a list subclass
    is copied as those kinds (a Counter came back counting its (key, value) pairs, silently; a
    defaultdict raised TypeError on the training thread and killed the run)."""
    from collections import Counter, OrderedDict, defaultdict, namedtuple

    Span = namedtuple("Span", "lo hi")

    class Tags(list[str]):
        pass

    class Tracker:
        def __init__(self) -> None:
            self.counts: Counter[int] = Counter({1: 3, 0: 2})
            self.by_label: defaultdict[int, list[float]] = defaultdict(list, {1: [0.5]})
            self.span = Span(0.1, torch.tensor(0.9))
            self.tags = Tags(["a"])
            self.sum = torch.ones(2)

        def state_dict(self) -> dict[str, Any]:
            return OrderedDict(
                counts=self.counts,
                by_label=self.by_label,
                span=self.span,
                tags=self.tags,
                sum=self.sum,
            )

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

    tracker = Tracker()
    payload = ckpt.capture({"tracker": tracker})
    tracker.by_label[1].append(2.0)  # training goes on mutating what the state_dict held
    tracker.sum.add_(1)
    tracker.counts[1] += 1
    state = payload["states"]["tracker"]
    assert type(state["counts"]) is Counter and state["counts"] == Counter({1: 3, 0: 2})
    assert type(state["by_label"]) is defaultdict and state["by_label"].default_factory is list
    assert state["by_label"] == {1: [0.5]} and state["by_label"][7] == []
    assert type(state["span"]) is Span and state["span"].lo == 0.1
    assert float(state["span"].hi) == pytest.approx(0.9)
    assert type(state["tags"]) is Tags and state["tags"] == ["a"]
    assert state["sum"].tolist() == [1.0, 1.0]


def test_a_module_state_dict_keeps_its_metadata() -> None:
    """The copy of a module's state_dict keeps ``_metadata`` (per-submodule versions that
    ``load_state_dict`` reads to convert old layouts)."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    state = ckpt.capture({"net": net})["states"]["net"]
    assert state._metadata == net.state_dict()._metadata


def test_a_module_s_attributes_and_non_persistent_buffers_come_back(tmp_path: Path) -> None:
    """What a module's state_dict leaves out (a plain attribute the loop counts in, a
    non-persistent buffer, the training flag) is saved beside it and restored in place; the
    file still loads with weights_only=True (a replay read the fresh module's 0, silently)."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(2, 2)
            self.register_buffer("seen", torch.zeros(()), persistent=False)

    net = Net()
    net.global_step = 7
    net.body.history = [1.5, {"k": torch.ones(2)}]
    net.eval()
    net.seen += 5
    path = tmp_path / "c.pt"
    path.write_bytes(ckpt.serialize(ckpt.capture({"net": net})))
    torch.load(path, weights_only=True)
    fresh = Net()
    seen = fresh.seen
    ckpt.restore({"net": fresh}, ckpt.load(path), rng=False)
    assert fresh.global_step == 7 and not fresh.training and not fresh.body.training
    assert fresh.body.history[0] == 1.5 and fresh.body.history[1]["k"].tolist() == [1.0, 1.0]
    assert float(fresh.seen) == 5.0 and fresh.seen is seen


class _Wrapper:
    """Counts in a local its generator writes back when the loop ends (as tqdm does)."""

    def __init__(self) -> None:
        self.n = 0
        self.caps: list[frame_state.Capture] = []

    def wrap(self, it: Any) -> Any:
        n = self.n
        for x in it:
            yield x
            n += 1
        self.n = n


def test_an_object_iterating_the_loop_as_the_checkpoint_is_taken_is_a_miss() -> None:
    """``for x in progress.wrap(flor.loop(...))``: ``progress`` is mid-iteration when the loop's
    checkpoint is taken (its count is still in the generator's local), so it is not saved: a
    restore would land after the generator read it (replay answered 0 for 12, silently)."""
    progress, meter = _Wrapper(), Meter()
    script = sys._getframe()

    def loop() -> Any:  # stands for flor.loop's generator: the checkpoint at its end
        yield from range(3)
        busy = frame_state.busy_objects(script)
        values = frame_state.frame_values(script)
        progress.caps.append(frame_state.capture(values, ["progress", "meter"], {}, {}, None, busy))

    for _ in progress.wrap(loop()):
        meter.count += 1
    (cap,) = progress.caps
    assert progress.n == 3 and "progress" in cap.missed and "meter" in cap.saved
    assert cap.missed["progress"] == frame_state.BUSY_REASON


HOOKED = """
import torch
from torch import nn
import florsql as flor

torch.manual_seed(0)
net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
calls = [0]


def count(module, inputs, output):
    calls[0] += 1


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        if epoch == 1:
            net[0].register_forward_hook(count)
        for step in flor.loop("step", range(3)):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
            flor.log("calls", calls[0])  # hindsight
"""


def test_a_checkpoint_whose_model_was_hooked_since_the_start_is_never_a_start(
    tmp_path: Path,
) -> None:
    """A hook registered at epoch 1 is in no state_dict: a task restoring a later checkpoint
    into the model the script's start makes ran without it, silently (``calls`` stayed 6 in
    epoch 3, for 7, 8, 9); then (REPLAY_RULES 5) the task refused it, values NULL. Now the
    recording marks such checkpoints (their structure differs from the block's start), the
    planner starts from none of them, and the values are exact."""
    import warnings

    import florsql
    from florsql.errors import ReplayFailedWarning
    from tests.helpers import make_repo
    from tests.helpers_replay import old_source, patched_source

    repo = make_repo(tmp_path / "r", {"train.py": old_source(HOOKED)})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    manifest = next((repo / ".florsql" / "runs").iterdir()) / "checkpoints" / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    marked = {r["iteration"]: r.get("unsound") for r in lines if r["loop"] == "epoch"}
    assert marked[0] is None and all("hook" in marked[i] for i in (1, 2, 3)), marked
    write(repo / "train.py", patched_source(HOOKED))
    sql = "SELECT epoch, step, calls FROM logs WHERE epoch = 3 ORDER BY step"
    with florsql.connect(repo, replay="auto") as con, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        plan = "\n".join(r[0] for r in con.execute("EXPLAIN " + sql).fetchall())
        rows = con.execute(sql).fetchall()
    assert "from checkpoint epoch 0 " in plan, plan  # the last one taken before the hook
    assert [calls for *_, calls in rows] == [7, 8, 9], rows
    assert not [w for w in seen if issubclass(w.category, ReplayFailedWarning)]


def test_restoring_a_hooked_checkpoint_into_an_unhooked_model_raises() -> None:
    """The guard for checkpoints recorded before they were marked: loud, never silent."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    net[0].register_forward_hook(lambda *_: None)
    payload = ckpt.capture({"net": net})
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    with pytest.raises(StoreError, match="hook"):
        ckpt.restore({"net": fresh}, payload, rng=False)


def test_frozen_parameters_are_restored_with_the_registered_model() -> None:
    """``requires_grad`` is in no state_dict: a layer frozen during the run came back
    trainable in a replay that restored a later checkpoint (it trained, silently)."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    net[0].requires_grad_(False)
    payload = ckpt.capture({"net": net})
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    ckpt.restore({"net": fresh}, payload, rng=False)
    assert [p.requires_grad for p in fresh.parameters()] == [False, False, True, True]
    net[0].requires_grad_(True)  # unfrozen again later: restored trainable
    ckpt.restore({"net": fresh}, ckpt.capture({"net": net}), rng=False)
    assert all(p.requires_grad for p in fresh.parameters())


class PartialStopper:
    """Its own state_dict keeps ``best`` only (a common shortcut)."""

    def __init__(self) -> None:
        self.best, self.history = float("inf"), []  # type: ignore[var-annotated]

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best}

    def load_state_dict(self, d: dict[str, float]) -> None:
        self.best = d["best"]


def test_a_tensor_changed_in_place_since_the_loop_began_is_restored_in_place() -> None:
    """``total += x`` with ``stats = {"total": total}``: the restore copies into the tensor the
    name holds, so the dict sees it (it was rebound, and the dict kept 0: s22 G)."""
    total = torch.zeros(())
    stats = {"total": total}
    frame = sys._getframe()
    born, kinds = frame_state.held_at_start(frame_state.frame_values(frame), ["total"])
    total += 2.5
    values = frame_state.frame_values(frame)
    cap = frame_state.capture(values, ["total"], {}, {}, born=born, kinds=kinds)
    assert cap.saved["total"][0] == "tensor_in_place"
    total.zero_()
    frame_state.restore(frame, cap, {})
    assert stats["total"] is total and float(stats["total"]) == 2.5


def test_a_tensor_the_loop_rebound_is_replaced_and_what_kept_the_first_keeps_it() -> None:
    total = torch.zeros(())
    first = total
    frame = sys._getframe()
    born, _ = frame_state.held_at_start(frame_state.frame_values(frame), ["total"])
    total = total + 2.5
    cap = frame_state.capture(frame_state.frame_values(frame), ["total"], {}, {}, born=born)
    assert cap.saved["total"][0] == "tensor"
    restored = frame_state._restored(*cap.saved["total"], first, {}, frame_state._Merge())
    assert float(restored) == 2.5 and float(first) == 0.0


def test_a_state_dict_kept_without_a_copy_is_restored_as_the_live_weights() -> None:
    """``snap = net.state_dict()`` holds views of the live weights: saved as references to the
    registered module's tensors, restored as the same views of the replay's module (it was
    restored as copies, frozen at the checkpoint: s22 H)."""
    net = torch.nn.Linear(2, 2)
    snap = net.state_dict()
    frame = sys._getframe()
    views = frame_state.RegisteredViews({"model": net})
    values = frame_state.frame_values(frame)
    cap = frame_state.capture(values, ["snap"], {id(net): "model"}, {}, views=views)
    replayed = torch.nn.Linear(2, 2)
    new = frame_state._restored(*cap.saved["snap"], None, {"model": replayed}, frame_state._Merge())
    assert new["weight"].data_ptr() == replayed.weight.data_ptr()
    with torch.no_grad():
        replayed.weight.add_(1.0)
    assert torch.equal(new["weight"], replayed.weight.detach())
    del snap


def test_an_object_of_a_script_class_is_saved_whole_not_by_its_partial_state_dict() -> None:
    stopper = PartialStopper()
    stopper.best, stopper.history = 0.5, [0.9, 0.5]
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["stopper"], {}, {})
    assert cap.saved["stopper"][0] == "pickle"
    stopper.best, stopper.history = float("inf"), []
    frame_state.restore(frame, cap, {})
    assert (stopper.best, stopper.history) == (0.5, [0.9, 0.5])


def test_a_called_lru_cache_function_is_noted_busy() -> None:
    """Its entries and statistics cannot be put back: the planner takes it as restored only
    where the patched code reads it as a value (``ones.cache_info().hits``)."""
    import functools

    @functools.cache
    def ones(n: int) -> torch.Tensor:
        return torch.ones(n)

    fresh = frame_state.capture({"ones": ones}, ["ones"], {}, {})
    assert "ones" not in fresh.busy
    ones(2)
    cap = frame_state.capture({"ones": ones}, ["ones"], {}, {})
    assert cap.busy == ["ones"] and "ones" not in cap.saved


def test_structure_changes_are_named() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    opt = torch.optim.SGD(net[0].parameters(), lr=0.1)
    start = ckpt.structure({"net": net, "opt": opt})
    assert ckpt.structure_change(start, ckpt.structure({"net": net, "opt": opt})) is None
    net[1] = torch.nn.Tanh()
    assert "became a Tanh" in str(ckpt.structure_change(start, ckpt.structure({"net": net})))
    net[1] = torch.nn.ReLU()
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})
    assert "parameter groups" in str(
        ckpt.structure_change(start, ckpt.structure({"net": net, "opt": opt}))
    )


def test_a_model_cast_during_the_run_is_a_structure_change() -> None:
    """``net.double()`` at a milestone (s34): the later checkpoints hold float64 tensors that
    ``load_state_dict`` cast into the replay's float32 model, and the replay trained on in
    float32, silently. They are marked now (the planner starts before the cast)."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    start = ckpt.structure({"net": net})
    net.double()
    why = str(ckpt.structure_change(start, ckpt.structure({"net": net})))
    assert "net.0.weight became float64 on cpu" in why and "float32" in why, why
    net.float()
    assert ckpt.structure_change(start, ckpt.structure({"net": net})) is None


def test_a_layer_replaced_or_a_weight_tied_during_the_run_is_a_structure_change() -> None:
    """A state_dict keeps values, not which parameters the optimizer holds or which a model
    shares (s34): a head replaced during the run, the optimizer still holding the old one's
    parameters, came back from a later checkpoint trained by the optimizer; a weight tied
    during the run came back untied. Both silently; marked now."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    start = ckpt.structure({"net": net, "opt": opt})
    old_head = net[2]
    net[2] = torch.nn.Linear(2, 2)
    why = str(ckpt.structure_change(start, ckpt.structure({"net": net, "opt": opt})))
    assert "'opt''s parameter 2 is no registered model parameter" in why, why
    assert "was net.2.weight" in why, why
    net[2] = old_head
    assert ckpt.structure_change(start, ckpt.structure({"net": net, "opt": opt})) is None
    head_weight = net[2].weight
    net[2].weight = net[0].weight
    why = str(ckpt.structure_change(start, ckpt.structure({"net": net, "opt": opt})))
    assert "net.2.weight became net.0.weight during the run (tied)" in why, why
    net[2].weight = head_weight
    opt.register_step_post_hook(lambda *_: None)  # in no state_dict either
    why = str(ckpt.structure_change(start, ckpt.structure({"net": net, "opt": opt})))
    assert "'opt' got a step hook during the run" in why, why
    # tied where the block starts: the same at every checkpoint, nothing to say
    tied_start = ckpt.structure({"net": net})
    assert ckpt.structure_change(tied_start, ckpt.structure({"net": net})) is None


def test_a_restored_optimizer_keeps_the_parameter_group_dicts_names_hold() -> None:
    """``group = opt.param_groups[0]`` before the loop, ``group["lr"] *= 0.5`` each epoch:
    torch's load_state_dict put new group dicts in the optimizer, so after a restore the
    decay went to a dict the optimizer no longer read, silently (s34)."""
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    opt.param_groups[0]["lr"] = 0.05
    payload = ckpt.capture({"opt": opt})
    fresh_net = torch.nn.Linear(2, 2)
    fresh = torch.optim.SGD(fresh_net.parameters(), lr=0.1, momentum=0.9)
    groups, group, state = fresh.param_groups, fresh.param_groups[0], fresh.state
    ckpt.restore({"opt": fresh}, payload, rng=False)
    assert fresh.param_groups is groups and fresh.param_groups[0] is group
    assert fresh.state is state and float(state[fresh_net.weight]["momentum_buffer"].abs().sum())
    assert group["lr"] == 0.05 and group["params"] == list(fresh_net.parameters())
    group["lr"] *= 0.5
    assert fresh.state_dict()["param_groups"][0]["lr"] == 0.025
    assert fresh.state[fresh_net.weight]["momentum_buffer"] is not None


def test_a_config_object_the_model_keeps_is_restored_in_place() -> None:
    """``net.config.drop *= 0.5`` each epoch, on a config of plain fields the model keeps (as
    Hugging Face models do): it was left out of the checkpoint, and came back as the script's
    start made it, silently (s34). One config shared by submodules stays one."""
    from types import SimpleNamespace

    def make() -> torch.nn.Sequential:
        config = SimpleNamespace(drop=0.5, name="x", sizes=[2, 3])
        net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        net.config = net[0].config = config
        return net

    net = make()
    net.config.drop *= 0.25
    net.config.sizes.append(4)
    payload = ckpt.capture({"net": net})
    fresh = make()
    config = fresh.config
    ckpt.restore({"net": fresh}, payload, rng=False)
    assert fresh.config is config and fresh[0].config is config
    assert (config.drop, config.name, config.sizes) == (0.125, "x", [2, 3, 4])


def test_attributes_set_on_parameters_are_restored() -> None:
    """``p.lr_mult = 1.0`` at a milestone, read by the step loop and today's statement: in no
    state_dict, so a replay from a later checkpoint kept the start's 0.1, silently (s34)."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    net[0].weight.lr_mult = 1.0
    net[0].weight.tags = ["body"]
    payload = ckpt.capture({"net": net})
    fresh = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    fresh[0].weight.lr_mult = 0.1
    ckpt.restore({"net": fresh}, payload, rng=False)
    assert fresh[0].weight.lr_mult == 1.0 and fresh[0].weight.tags == ["body"]
    assert not vars(fresh[1].weight)


def test_an_optimizers_defaults_are_restored() -> None:
    """``opt.defaults["lr"] = 0.05`` at one epoch, a group added at a later one: the defaults
    are in no state_dict, so a replay between the two added the group at the start's rate
    (caught by verification, recomputed in full, with a NondeterminismWarning: s34)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.2, momentum=0.9)
    opt.defaults["lr"] = 0.05
    payload = ckpt.capture({"opt": opt})
    fresh = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.2, momentum=0.9)
    ckpt.restore({"opt": fresh}, payload, rng=False)
    fresh.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})
    assert fresh.param_groups[1]["lr"] == 0.05 and fresh.param_groups[1]["momentum"] == 0.9


def test_restoring_a_cast_checkpoint_into_a_model_of_other_dtypes_raises() -> None:
    """The guard for checkpoints recorded before the cast was marked: loud, never cast."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)).double()
    payload = ckpt.capture({"net": net})
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    with pytest.raises(StoreError, match=r"0.weight was torch.float64 .* is torch.float32"):
        ckpt.restore({"net": fresh}, payload, rng=False)
    ckpt.restore({"net": fresh.double()}, payload, rng=False)  # the same dtypes: restored
    assert torch.equal(fresh[0].weight, net[0].weight)


def test_registered_objects_without_a_state_dict_are_refilled_in_place() -> None:
    """A torch or numpy generator, a deque, a random.Random, a dict whose list a name also
    holds: the restore could not take the first three back (StoreError), put a Random's
    __dict__ only, and parted the dict from the list (s24 kinds 7-9)."""
    import collections

    gen = torch.Generator().manual_seed(1)
    npgen = np.random.default_rng(1)
    window: collections.deque[float] = collections.deque(maxlen=3)
    rnd = random.Random(1)
    history: dict[str, list[int]] = {"train": []}
    train_log = history["train"]
    objs = {"gen": gen, "npgen": npgen, "window": window, "rnd": rnd, "history": history}
    torch.rand(3, generator=gen)
    npgen.random(3)
    window.extend([1.0, 2.0, 3.0, 4.0])
    rnd.random()
    train_log.extend([1, 2])
    payload = ckpt.load_bytes(ckpt.serialize(ckpt.capture(objs)), "t")
    want = (torch.rand(1, generator=gen), npgen.random(), rnd.random())
    # what the replay made at the script's start, then the restore
    gen.manual_seed(1)
    npgen.bit_generator.state = np.random.default_rng(1).bit_generator.state
    window.clear()
    rnd.seed(1)
    train_log.clear()
    ckpt.restore(objs, payload, rng=False)
    assert list(window) == [2.0, 3.0, 4.0]
    assert history["train"] is train_log and train_log == [1, 2]
    assert torch.equal(torch.rand(1, generator=gen), want[0])
    assert npgen.random() == want[1] and rnd.random() == want[2]


def test_container_attributes_of_modules_and_plain_attributes_of_optimizers_are_kept() -> None:
    from collections import Counter

    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.seen = {1, 2}  # type: ignore[assignment]
    net.counts = Counter({"a": 3})  # type: ignore[assignment]
    opt.steps_taken = 7  # type: ignore[attr-defined]
    payload = ckpt.load_bytes(ckpt.serialize(ckpt.capture({"net": net, "opt": opt})), "t")
    fresh = torch.nn.Linear(2, 2)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1)
    fresh.seen = set()  # type: ignore[assignment]
    kept = fresh.seen
    ckpt.restore({"net": fresh, "opt": fresh_opt}, payload, rng=False)
    assert fresh.seen == {1, 2} and fresh.seen is kept  # refilled in place
    assert fresh.counts == Counter({"a": 3})
    assert fresh_opt.steps_taken == 7  # type: ignore[attr-defined]


def test_a_numpy_array_changed_in_place_since_the_loop_began_keeps_its_alias() -> None:
    conf = np.zeros((2, 2))
    metrics = {"conf": conf}
    frame = sys._getframe()
    born, _ = frame_state.held_at_start(frame_state.frame_values(frame), ["conf"])
    conf[0, 1] += 3
    cap = frame_state.capture(frame_state.frame_values(frame), ["conf"], {}, {}, born=born)
    assert cap.saved["conf"][0] == "pickle_in_place"
    conf[:] = 0
    frame_state.restore(frame, cap, {})
    assert metrics["conf"] is conf and conf[0, 1] == 3


def test_a_tensor_in_a_saved_list_that_a_name_holds_too_comes_back_as_one_tensor() -> None:
    """``ema = kept[0]`` before the loop, ``kept[0].add_(2.0)`` in it: the name is saved too,
    and restored into the tensor the replay's ``ema`` holds (since session 39 in place: what
    else shares it stays true), which the restored list holds as its entry: one tensor, as
    recorded."""
    kept = [torch.zeros(())]
    ema = kept[0]
    kept[0].add_(2.0)
    frame = sys._getframe()
    cap = frame_state.capture(frame_state.frame_values(frame), ["kept"], {}, {})
    assert "ema" in cap.saved  # the alias is saved too
    assert float(ema) == 2.0
    ns: dict[str, Any] = {"kept": [torch.zeros(())]}  # the replay, where the loop begins
    ns["ema"] = ns["kept"][0]
    replay_ema = ns["ema"]
    frame_state.restore(script_frame(ns), cap, {})
    assert ns["ema"] is replay_ema and ns["kept"][0] is replay_ema  # one tensor, as recorded
    assert float(replay_ema) == 2.0


def test_a_loader_whose_persistent_workers_run_is_missed_not_saved() -> None:
    """A DataLoader with ``persistent_workers`` whose worker processes were started keeps their
    RNGs and the dataset's state in them from epoch to epoch: no checkpoint can hold it, so
    capture notes a miss with the reason (the planner then replays its loop from the top); one
    without worker processes, or not yet iterated, is saved by its generators' states."""
    from torch.utils.data import DataLoader, TensorDataset

    ds = TensorDataset(torch.arange(8.0))
    live = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    idle = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    plain = DataLoader(ds, batch_size=4, shuffle=True, generator=torch.Generator())
    for _ in live:
        pass
    for _ in plain:
        pass
    names = ["live", "idle", "plain"]
    cap = frame_state.capture({"live": live, "idle": idle, "plain": plain}, names, {}, {})
    assert set(cap.missed) == {"live"}
    assert "persistent worker processes" in cap.missed["live"]
    assert not cap.missed["live"].startswith("_")  # the reason, not an exception's class
    assert {"idle", "plain"} <= set(cap.saved)


class _Wrapping(torch.optim.Optimizer):
    """A sharpness-aware-style wrapper: its own state_dict leaves out its base optimizer's."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, {"rho": 0.05})
        self.base_optimizer = torch.optim.SGD(self.param_groups, lr=0.1, momentum=0.9)
        self.param_groups = self.base_optimizer.param_groups

    def step(self, closure: Any = None) -> None:
        self.base_optimizer.step()


def _wrapped_steps(net: torch.nn.Module, opt: _Wrapping, n: int) -> None:
    for _ in range(n):
        opt.zero_grad()
        net(torch.ones(2, 3)).sum().backward()
        opt.step()


def test_an_optimizer_held_by_a_registered_optimizer_is_restored_in_place() -> None:
    """A wrapper's base optimizer (SAM's ``self.base_optimizer``): its momentum is saved and put
    back into the replay's (was in no checkpoint: a replay stepped it from no momentum, s35);
    its groups stay the wrapper's; a checkpoint recorded before it was saved is refused."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = _Wrapping(net.parameters())
    _wrapped_steps(net, opt, 2)
    payload = ckpt.capture({"model": net, "optimizer": opt})
    assert set(payload["inner"]["optimizer"]) == {"base_optimizer"}
    _wrapped_steps(net, opt, 1)
    want = {k: v.clone() for k, v in net.state_dict().items()}

    torch.manual_seed(0)
    net2 = torch.nn.Linear(3, 1)
    opt2 = _Wrapping(net2.parameters())
    ckpt.restore({"model": net2, "optimizer": opt2}, payload, rng=False)
    assert opt2.base_optimizer.param_groups is opt2.param_groups
    _wrapped_steps(net2, opt2, 1)
    for k, v in net2.state_dict().items():
        assert torch.equal(v, want[k]), k

    old = {k: v for k, v in payload.items() if k != "inner"}
    with pytest.raises(StoreError, match="holds another optimizer"):
        ckpt.restore({"model": net2, "optimizer": opt2}, old, rng=False)


class _Counting(torch.nn.Module):
    """A script's module keeping private state (``self._seen``) and generators of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(2, 3)  # torch's private attributes (flat weights) stay its
        self._seen = 0
        self._history: list[float] = []
        self.rng = np.random.default_rng(0)
        self.legacy = np.random.RandomState(0)
        self.gen = torch.Generator().manual_seed(0)
        self._py = random.Random(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._seen += len(x)
        self._history.append(float(self.rng.random()))
        self.legacy.rand()
        self._py.random()
        return self.rnn(x + torch.rand(x.shape, generator=self.gen))[0]


def test_a_script_module_s_private_attributes_and_generators_come_back_in_place() -> None:
    """``self._samples_seen += len(x)`` in a script module's ``forward``, and a mask drawn from
    its own ``self.rng = np.random.default_rng(seed)`` or ``torch.Generator``: private
    attributes and generators were left out of the checkpoint, so a replay from a later one
    read 0 samples seen (a full re-run: 192) and drew from generators as the start made them,
    silently where no recorded value depended on the draws (s36). Generators are refilled in
    place; torch's own private attributes are left alone."""
    net = _Counting()
    for _ in range(3):
        net(torch.ones(4, 1, 2))
    payload = ckpt.load_bytes(ckpt.serialize(ckpt.capture({"net": net})), "t")
    want = (
        float(net.rng.random()),
        float(net.legacy.rand()),
        net._py.random(),
        float(torch.rand((), generator=net.gen)),
    )
    fresh = _Counting()
    gens = (fresh.rng, fresh.legacy, fresh._py, fresh.gen)
    flat = fresh.rnn._flat_weights
    ckpt.restore({"net": fresh}, payload, rng=False)
    assert (fresh._seen, len(fresh._history)) == (12, 3)
    assert (fresh.rng, fresh.legacy, fresh._py, fresh.gen) == gens
    got = (
        float(fresh.rng.random()),
        float(fresh.legacy.rand()),
        fresh._py.random(),
        float(torch.rand((), generator=fresh.gen)),
    )
    assert got == want
    assert fresh.rnn._flat_weights is flat
    assert all(a is b for a, b in zip(flat, fresh.rnn.parameters(), strict=True))


def test_a_wrapper_optimizer_sharing_its_base_s_groups_shares_them_after_a_restore() -> None:
    """timm's ``Lookahead``: ``self.param_groups = base.param_groups`` and a ``load_state_dict``
    that loads the base's. The restore kept the wrapper's group dicts and left the base new
    ones: the base stepped its counters in one set while the script read the other
    (``lookahead_step`` 10 at every later step, a full re-run 11, 12, ...: s36)."""

    class Wrapper(torch.optim.Optimizer):
        def __init__(self, base: torch.optim.Optimizer) -> None:
            self._optimizer_step_pre_hooks: dict[int, Any] = {}
            self._optimizer_step_post_hooks: dict[int, Any] = {}
            self._base_optimizer = base
            self.param_groups = base.param_groups
            self.defaults = base.defaults
            self.state: Any = {}
            for group in base.param_groups:
                group.setdefault("wrapped_steps", 0)

        def step(self, closure: Any = None) -> None:  # type: ignore[override]
            self._base_optimizer.step(closure)
            for group in self._base_optimizer.param_groups:
                group["wrapped_steps"] += 1

        def state_dict(self) -> dict[str, Any]:
            return self._base_optimizer.state_dict()

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self._base_optimizer.load_state_dict(state_dict)
            self.param_groups = self._base_optimizer.param_groups

    def make() -> tuple[torch.nn.Linear, Wrapper]:
        net = torch.nn.Linear(2, 2)
        return net, Wrapper(torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))

    net, opt = make()
    for _ in range(3):
        net(torch.ones(1, 2)).sum().backward()
        opt.step()
    payload = ckpt.capture({"opt": opt})
    fresh_net, fresh = make()
    groups, group = fresh.param_groups, fresh.param_groups[0]
    ckpt.restore({"opt": fresh}, payload, rng=False)
    base = fresh._base_optimizer
    assert fresh.param_groups is groups and base.param_groups is groups
    assert base.param_groups[0] is group and group["wrapped_steps"] == 3
    fresh_net(torch.ones(1, 2)).sum().backward()
    fresh.step()
    assert fresh.param_groups[0]["wrapped_steps"] == 4


class _Jitter:
    """A script's augmenter whose ``state_dict`` keeps its probability only."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.p = 0.5
        self.rng = random.Random(0)
        self.applied = 0
        self.history: list[float] = []
        self.models = [net]  # the model it trains: the model's to restore, never a copy

    def __call__(self) -> None:
        if self.rng.random() < self.p:
            self.applied += 1
        self.history.append(self.p)

    def state_dict(self) -> dict[str, float]:
        return {"p": self.p}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p = state["p"]


def test_a_registered_script_object_s_fields_its_state_dict_leaves_out_come_back() -> None:
    """``flor.checkpointing(..., aug=aug)`` with an augmenter whose ``state_dict`` keeps its
    probability and not its ``random.Random`` nor its count: a replay from a later checkpoint
    drew from the start's generator and counted from 0 (``applied`` 0 at every epoch, other
    step losses, silently: s36). Its data attributes are saved beside its state_dict now."""
    net = torch.nn.Linear(2, 2)
    aug = _Jitter(net)
    for _ in range(7):
        aug()
    aug.p = 0.25
    payload = ckpt.load_bytes(ckpt.serialize(ckpt.capture({"net": net, "aug": aug})), "t")
    want = aug.rng.random()
    fresh_net = torch.nn.Linear(2, 2)
    fresh = _Jitter(fresh_net)
    rng, history = fresh.rng, fresh.history
    ckpt.restore({"net": fresh_net, "aug": fresh}, payload, rng=False)
    assert (fresh.p, fresh.applied, fresh.history) == (0.25, aug.applied, aug.history)
    assert fresh.rng is rng and fresh.history is history and fresh.rng.random() == want
    assert fresh.models[0] is fresh_net


def test_a_parameter_hooked_during_the_run_is_a_structure_change() -> None:
    """``p.register_hook(lambda g: g.clamp(-0.05, 0.05))`` after the warm-up epoch: in no
    state_dict, so a replay from a later checkpoint trained unclamped (the largest gradient
    0.1178 at epoch 3 for a full re-run's 0.05, silently: s36). Such checkpoints are no start
    now, as those of a module hooked during the run."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    start = ckpt.structure({"net": net})
    net[1].weight.register_hook(lambda g: g.clamp(-0.05, 0.05))
    why = ckpt.structure_change(start, ckpt.structure({"net": net}))
    assert why is not None and "net.1 got a hook" in why
    payload = ckpt.capture({"net": net})
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    with pytest.raises(StoreError, match="hook"):
        ckpt.restore({"net": fresh}, payload, rng=False)


def test_a_script_optimizer_s_private_step_count_comes_back() -> None:
    """A hand-written Adam keeping its bias-correction step count in ``self._t``: left out of
    the checkpoint, a replay from a later one corrected as at step 1 (``t`` 0 at every epoch
    for a full re-run's 4, 8, 12, 16; other step losses, silently: s36). torch's own private
    attributes of an optimizer stay its own."""

    class Counting(torch.optim.SGD):
        def __init__(self, params: Any) -> None:
            super().__init__(params, lr=0.1)
            self._t = 0

        def step(self, closure: Any = None) -> None:  # type: ignore[override]
            self._t += 1
            super().step(closure)

    net = torch.nn.Linear(2, 2)
    opt = Counting(net.parameters())
    for _ in range(3):
        net(torch.ones(1, 2)).sum().backward()
        opt.step()
    payload = ckpt.load_bytes(ckpt.serialize(ckpt.capture({"opt": opt})), "t")
    fresh = Counting(torch.nn.Linear(2, 2).parameters())
    hooks = fresh._optimizer_step_pre_hooks
    ckpt.restore({"opt": fresh}, payload, rng=False)
    assert fresh._t == 3 and fresh._optimizer_step_pre_hooks is hooks


def test_a_script_objects_fields_and_the_optimizers_it_holds_are_restored_once() -> None:
    """Both s36 sweeps meet on one object: a registered trainer of the script's whose
    ``state_dict`` keeps only its model's, holding its optimizer and scheduler (saved by their
    own ``state_dict``, h4) beside plain fields and a generator (saved as its fields, h3). The
    optimizer is loaded in place, not replaced by a pickled copy, and the list of models it
    trains is left to them."""

    class Trainer:
        def __init__(self, net: torch.nn.Module) -> None:
            self.net = net
            self.opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
            self.sched = torch.optim.lr_scheduler.StepLR(self.opt, 1, 0.5)
            self.count = 0
            self.rng = random.Random(0)
            self.models = [net]

        def state_dict(self) -> dict:
            return {"net": self.net.state_dict()}

        def load_state_dict(self, d: dict) -> None:
            self.net.load_state_dict(d["net"])

    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    t = Trainer(net)
    for _ in range(3):
        t.opt.zero_grad()
        net(torch.ones(4, 2)).sum().backward()
        t.opt.step()
        t.sched.step()
        t.count += 1
        t.rng.random()
    payload = ckpt.capture({"trainer": t, "net": net})
    assert sorted(payload["fields"]["trainer"][0]) == ["count"]
    assert sorted(payload["fields"]["trainer"][1]) == ["rng"]
    assert sorted(payload["inner"]["trainer"]) == ["opt", "sched"]

    net2 = torch.nn.Linear(2, 1)
    t2 = Trainer(net2)
    opt2, sched2 = t2.opt, t2.sched
    ckpt.restore({"trainer": t2, "net": net2}, payload)
    assert t2.opt is opt2 and t2.sched is sched2 and t2.sched.optimizer is opt2
    assert t2.opt.param_groups[0]["lr"] == t.opt.param_groups[0]["lr"] == 0.1 * 0.5**3
    buf = t.opt.state[next(iter(net.parameters()))]["momentum_buffer"]
    assert torch.equal(t2.opt.state[next(iter(net2.parameters()))]["momentum_buffer"], buf)
    assert t2.count == 3 and t2.rng.getstate() == t.rng.getstate()
    assert t2.models[0] is net2
