"""Session 47: replays of patterns stranger sweeps found failing or wrong.

- A ``torch.amp.GradScaler`` restored from a checkpoint (a local pickled by the frame's
  capture, or a registered one loaded by ``load_state_dict``) makes its scale tensor lazily,
  at its next ``scale()``; a task that restored a checkpoint taken after the micro-batch loop
  called ``unscale_`` first and failed ("Attempted unscale_ but _scale is None"): every value
  NULL (session 46's sweep J). The restore now makes the scale again, as the recorded object
  had it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import florsql
from tests.helpers import make_repo, run_script, write

FIXTURES = Path(__file__).parent / "fixtures" / "replay_s47"
ENV = {"FLORSQL_CHECKPOINT_PERIOD": "1", "PYTHONHASHSEED": "0"}
NEW = {
    "            #@step\n": '            flor.log("scale", gs)\n'
    '            flor.log("lr", sched.get_last_lr()[0])\n',
    "        #@epoch\n": '        flor.log("rm", round(float(net[1].running_mean.sum()), 6))\n',
}


def _rows(repo: Path, sql: str, replay: str = "auto") -> list[tuple[object, ...]]:
    with florsql.connect(repo, replay=replay) as con:
        return list(con.cursor().execute(sql).fetchall())


@pytest.mark.slow
@pytest.mark.parametrize("registered", [False, True])
def test_a_restored_grad_scaler_scales_again(tmp_path: Path, registered: bool) -> None:
    old = (FIXTURES / "gradscaler_v1.py").read_text()
    if registered:
        old = old.replace("optimizer=opt):  # REGISTER", "optimizer=opt, scaler=scaler):")
    new = old
    for mark, code in NEW.items():
        new = new.replace(mark, code)
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    run_script(repo, "train.py", **ENV)
    run_script(oracle, "train.py", **ENV)
    write(repo / "train.py", new)
    sql = "SELECT epoch, scale, lr, rm FROM logs WHERE rm IS NOT NULL AND {} ORDER BY 1"
    want = _rows(oracle, sql.format("true"), "off")
    assert len(want) == 5 and all(None not in r for r in want)
    assert _rows(repo, sql.format("epoch = 3")) == [r for r in want if r[0] == 3]
    assert _rows(repo, sql.format("true")) == want


def test_a_plain_helper_s_untouched_parameters_are_only_read() -> None:
    """A call of the script's plain function changed every name passed to it: a metric helper
    given the held-out set (``accuracy(net(XV), YV)``) made ``YV`` a name the epoch loop
    changes, which no checkpoint captures, so its tasks ran from the run's start. Now only
    the arguments given to parameters the helper may change (or rebind) count."""
    from florsql.code.effects import analyze_source

    src = """
import florsql as flor
def accuracy(logits, y, k=1):
    return (logits.argmax(1) == y).float().mean().item()
def bump(net, X):
    X.add_(1)
    return 0
def rebind(X):
    X = X * 2
    return X
def many(*xs):
    return len(xs)
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(3)):
            opt.step()
        acc = accuracy(LV, y=YV, k=2)
        b = bump(net, XT)
        c = rebind(ZZ)
        d = accuracy(*pair)
        e = many(MV)
"""
    (epoch,) = [lp for lp in analyze_source(src).loops if lp.name == "epoch"]
    assert {"LV", "YV", "net"} & epoch.changed == set()
    assert {"XT", "ZZ", "pair", "MV"} <= epoch.changed


@pytest.mark.slow
def test_a_metric_helper_on_held_out_data_restores_checkpoints(tmp_path: Path) -> None:
    """The differential side of the case above: with the held-out set no longer changed by
    the loop, a query for one epoch restores that epoch's checkpoint, and its value equals a
    run of today's script."""
    old = """import torch
import florsql as flor
torch.manual_seed(0)
X, Y = torch.randn(32, 3), torch.randn(32, 1)
XV, YV = torch.randn(16, 3), torch.randn(16, 1)
net = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(net.parameters(), lr=0.1)

def mse(pred, target):
    return float(((pred - target) ** 2).mean())

with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(4)):
        for step in flor.loop("step", range(4)):
            loss = ((net(X[step * 8 : step * 8 + 8]) - Y[step * 8 : step * 8 + 8]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pv = net(XV)
#@
"""
    new = old.replace("#@\n", '        flor.log("val", round(mse(pv, YV), 6))\n')
    repo = make_repo(tmp_path / "r", {"train.py": old.replace("#@\n", "")})
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    run_script(repo, "train.py", **ENV)
    run_script(oracle, "train.py", **ENV)
    write(repo / "train.py", new)
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN SELECT val FROM logs WHERE epoch = 2"))
        assert "from checkpoint epoch 2" in plan, plan
        got = cur.execute("SELECT val FROM logs WHERE epoch = 2").fetchall()
    assert got == _rows(oracle, "SELECT val FROM logs WHERE epoch = 2", "off")


def test_a_statement_between_old_statements_joined_by_semicolons(tmp_path: Path) -> None:
    """Sweep F #6: an old line ``g = ...; state["w"] -= ...`` refused a statement today's code
    puts between the two ("cannot split the statements joined by ';'"). The old line is now
    split for the replay (its trailing comment kept), and the value equals a run of today's
    script; a line after a compound statement's colon is left as it is (refused)."""
    from florsql.propagate import propagate

    old = """import florsql as flor
state = {"w": 1.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        g = state["w"] * 2; state["w"] -= 0.1 * g; flor.log("w", state["w"])  # the step
"""
    new = """import florsql as flor
state = {"w": 1.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        g = state["w"] * 2
        flor.log("g", g)
        state["w"] -= 0.1 * g
        flor.log("w", state["w"])
"""
    result = propagate(new, old, ["g"])
    assert not result.failed and result.original == old
    assert '        g = state["w"] * 2\n        flor.log("g", g)\n' in result.source
    assert '        flor.log("w", state["w"])  # the step\n' in result.source
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", new)
    assert _rows(repo, "SELECT epoch, g FROM logs ORDER BY 1") == [(0, 2.0), (1, 1.6), (2, 1.28)]
    one_line = old.replace("        g = state", "        if True: g = state")
    assert propagate(new, one_line, ["g"]).failed


REBIND_OLD = """import contextlib
import florsql as flor
state = {"w": 1.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        state["w"] *= 0.9
        #@block
#@
"""
REBIND_NEW = """        out = state["w"] * 3
        acc = out - 1
        flor.log("train", acc)
"""
LOG_VAL = '        flor.log("val", acc)\n'
BLOCKS = {
    "with": "with contextlib.nullcontext():\n            out = state['w'] * 2\n"
    "            acc = out + 1\n" + LOG_VAL,
    "try": "try:\n            out = state['w'] * 2\n            acc = out + 1\n"
    "        except ZeroDivisionError:\n            out = 0.0\n            acc = -1.0\n" + LOG_VAL,
    # the old reads inside a loop of its own, after its body assigns them (sweep K)
    "for": "for _ in range(2):\n            out = state['w'] * 2\n            acc = out + 1\n"
    "            flor.log('val', acc)\n",
    "ifelse": "if state['w'] > 0.5:\n            out = state['w'] * 2\n        else:\n"
    "            out = 0.0\n        acc = out + 1\n" + LOG_VAL,
}


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_today_s_code_rebinding_names_the_old_code_assigns_before_reading(
    tmp_path: Path, block: str
) -> None:
    """Sweep K: today's ``out = ...; acc = ...`` after the old ``flor.log("val", acc)``,
    where the old code assigns both again (in a ``with`` block, or in a ``try`` and its
    handler) before it reads them in the next epoch, was refused ("would change 'out', which
    the old version's own code reads"). Such a read is not reached before the old code's own
    assignment: it is placed, and the values equal a run of today's script."""
    old = REBIND_OLD.replace("#@block\n", BLOCKS[block]).replace("#@\n", "")
    new = REBIND_OLD.replace("#@block\n", BLOCKS[block]).replace("#@\n", REBIND_NEW)
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", new)
    got = _rows(repo, "SELECT epoch, train FROM logs WHERE train IS NOT NULL ORDER BY 1")
    want, w = [], 1.0
    for e in range(3):
        w *= 0.9
        want.append((e, pytest.approx(w * 3 - 1)))
    assert got == want


def test_a_reset_moved_to_the_top_of_the_step_is_not_read_past() -> None:
    """Sweep L: the old step ``backward(); opt.step(); opt.zero_grad(set_to_none=False);
    flor.log("loss", ...)``, today's ``opt.zero_grad()`` moved to the top of the step and a
    gradient norm logged after the loss: the statement went after the old ``zero_grad`` and
    read zeros at every step (0.0 for 0.3226, silently); ``losses.clear()`` moved before the
    step loop alike (0.0 for 2.738). Both sides of the statement had those statements, but
    today's code swapped their order: refused now, saying so."""
    from florsql.propagate import propagate

    old = """import florsql as flor
from helpers import SGD, X, grad_norm, make
net = make()
opt = SGD(net.parameters(), lr=0.1)
for epoch in flor.loop("epoch", range(2)):
    for step in flor.loop("step", range(3)):
        loss = net(X).sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        flor.log("loss", loss.item())
"""
    new = """import florsql as flor
from helpers import SGD, X, grad_norm, make
net = make()
opt = SGD(net.parameters(), lr=0.1)
for epoch in flor.loop("epoch", range(2)):
    for step in flor.loop("step", range(3)):
        opt.zero_grad(set_to_none=False)
        loss = net(X).sum()
        loss.backward()
        opt.step()
        flor.log("loss", loss.item())
        flor.log("gn", grad_norm(net))
"""
    result = propagate(new, old, ["gn"])
    assert not result.placed
    assert "no place keeps the order" in result.failed[0].reason
    kept = old.replace("        opt.zero_grad(set_to_none=False)\n", "").replace(
        "        loss = net", "        opt.zero_grad(set_to_none=False)\n        loss = net"
    )
    assert propagate(new, kept, ["gn"]).placed  # the old version in today's order: placed
    # today's call edited as well as moved (``zero_grad()``): the same function, the same order
    edited = propagate(new.replace("zero_grad(set_to_none=False)", "zero_grad()"), old, ["gn"])
    assert not edited.placed and "no place keeps the order" in edited.failed[0].reason


def test_a_parameter_of_the_old_helper_hiding_the_module_s_name() -> None:
    """Sweep L: the old ``def train_step(X, Y)`` called with a batch, today's step inlined and
    ``flor.log("x", float(net(X).sum()))`` reading the module's full ``X`` after it: placed
    inside ``train_step``, it read the batch (-3.072 for -9.273, silently). Refused now."""
    from florsql.propagate import propagate

    old = """import florsql as flor
from helpers import X, Y, loss_fn, net, opt


def train_step(X, Y):
    loss = loss_fn(net(X), Y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


for epoch in flor.loop("epoch", range(2)):
    for idx in flor.loop("step", range(4)):
        loss = train_step(X[idx], Y[idx])
        flor.log("loss", loss.item())
"""
    new = """import florsql as flor
from helpers import X, Y, loss_fn, net, opt

for epoch in flor.loop("epoch", range(2)):
    for idx in flor.loop("step", range(4)):
        loss = loss_fn(net(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        flor.log("x", float(net(X).sum()))
        flor.log("loss", loss.item())
"""
    result = propagate(new, old, ["x"])
    assert not result.placed and "whose parameter 'X'" in result.failed[0].reason
    # a parameter its callers give the module's own object, or a local (a main() inlined
    # since): the same object, placed
    passed = old.replace("train_step(X[idx], Y[idx])", "train_step(X, Y)")
    assert propagate(new, passed, ["x"]).placed


def test_a_loop_renamed_since_is_said_so(tmp_path: Path) -> None:
    """Sweep L: the step loop renamed ``"batch"`` -> ``"step"``: the query said "no run of
    this version recorded that loop: the code never reached it, or the run was killed or
    failed before" of a run that finished. It now names the loops the runs recorded."""
    src = (
        "import florsql as flor\nfor e in flor.loop('epoch', range(2)):\n"
        "    for b in flor.loop('batch', range(2)):\n        flor.log('b', b)\n"
    )
    repo = make_repo(tmp_path / "r", {"train.py": src})
    run_script(repo, "train.py")
    write(repo / "train.py", src.replace("'batch'", "'step'") + "        flor.log('x', b)\n")
    said = "its runs recorded the loops epoch, epoch/batch, not epoch/step"
    with pytest.raises(florsql.DatabaseError, match=said) as raised:
        _rows(repo, "SELECT x FROM logs WHERE x IS NOT NULL")
    assert "killed" not in str(raised.value)


WRAPPED = """import florsql as flor
state = {"w": 1.0}
lrs = [0.5, 0.3, 0.2, 0.1, 0.05]
with flor.checkpointing(state=state):
    for HEADER:
        state["w"] *= 0.9
        flor.log("w", state["w"])
#@
"""
HEADERS = {
    "enumerate": ('n, e in enumerate(flor.loop("epoch", range(10, 15)), start=1)', "n"),
    "zip": ('e, lr in zip(flor.loop("epoch", range(5)), lrs)', "lr"),
    "bound": ("n, e in it", "n"),
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_an_outer_loop_paired_by_a_wrapper_replays_every_iteration(
    tmp_path: Path, case: str
) -> None:
    """Sweep K: ``enumerate(flor.loop("epoch", ...), start=1)`` or ``zip(flor.loop(...),
    lrs)`` around the outer loop: a task starting at epoch 3 handed the wrapper that epoch as
    its first item, so ``n`` was 1 and ``lr`` 0.5 there (silently), and the wider query
    after it served those values. Every iteration now runs from the first."""
    header, value = HEADERS[case]
    old = WRAPPED.replace("HEADER", header)
    if case == "bound":
        old = old.replace(
            "    for n, e in it:",
            '    it = enumerate(flor.loop("epoch", range(10, 15)), start=1)\n    for n, e in it:',
        )
    new = old.replace("#@\n", f'        flor.log("v", {value})\n')
    repo = make_repo(tmp_path / "r", {"train.py": old.replace("#@\n", "")})
    run_script(repo, "train.py", **ENV)
    write(repo / "train.py", new)
    want = (
        [(e, e + 1) for e in range(5)]
        if value == "n"
        else list(enumerate([0.5, 0.3, 0.2, 0.1, 0.05]))
    )
    assert _rows(repo, "SELECT epoch, v FROM logs WHERE epoch = 3 AND v IS NOT NULL") == [want[3]]
    assert _rows(repo, "SELECT epoch, v FROM logs WHERE v IS NOT NULL ORDER BY 1") == want


def test_a_helper_edited_since_is_said_to_be_the_version_s(tmp_path: Path) -> None:
    """Sweep L: today's statement calls ``scale``, whose body changed since the version: a
    replay runs the version's own ``scale`` (by design: each version's code), which nothing
    said. The replaying query warns, and EXPLAIN says it."""
    import warnings

    old = """import florsql as flor


def scale(v):
    return v * 2


w = 1.0
with flor.checkpointing():
    for epoch in flor.loop("epoch", range(3)):
        w = w * 0.5 + epoch
#@
"""
    repo = make_repo(tmp_path / "r", {"train.py": old.replace("#@\n", "")})
    run_script(repo, "train.py")
    new = old.replace("v * 2", "v * 3").replace("#@\n", '        flor.log("s", scale(w))\n')
    write(repo / "train.py", new)
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN SELECT s FROM logs"))
        assert "s calls scale as this version defines it" in plan, plan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = cur.execute("SELECT epoch, s FROM logs ORDER BY 1").fetchall()
    assert got == [(0, 1.0), (1, 2.5), (2, 5.25)]  # the version's v * 2
    assert any("computes s with scale as that version defines it" in str(w.message) for w in caught)


def test_a_name_the_old_version_deletes_is_unbound_there() -> None:
    """Sweep L: the old step loop ended with ``del loss``; today's ``flor.log("x",
    loss.item())`` after the loop was placed, and every replay raised NameError, reported as
    "today's statement raised (fix the statement)". Refused now, as unbound there."""
    from florsql.propagate import propagate

    old = """import florsql as flor
for epoch in flor.loop("epoch", range(2)):
    for step in flor.loop("step", range(3)):
        loss = step * 2.0
        flor.log("loss", loss)
        del loss
    flor.log("w", epoch)
"""
    new = old.replace("        del loss\n", "").replace(
        '    flor.log("w", epoch)\n', '    flor.log("w", epoch)\n    flor.log("x", loss)\n'
    )
    result = propagate(new, old, ["x"])
    assert not result.placed and "unbound name 'loss'" in result.failed[0].reason


def test_an_outer_loop_inside_a_generator_of_the_script(tmp_path: Path) -> None:
    """Sweep M: ``def epochs(): k = 0; for e in flor.loop("epoch", ...): k += 1; yield e, k``
    iterated by ``for epoch, k in epochs():``: the statement in that body had no loop context
    (0 rows, no word), and once it had, a task restoring epoch 3's checkpoint read the
    generator's fresh ``k`` (1 for 4). Such runs replay whole, from the first iteration."""
    old = """import florsql as flor
state = {"w": 1.0}


def epochs():
    k = 0
    for e in flor.loop("epoch", range(5)):
        k += 1
        yield e, k


with flor.checkpointing(state=state):
    for epoch, k in epochs():
        for s in flor.loop("step", range(2)):
            state["w"] *= 0.9
        flor.log("w", state["w"])
#@
"""
    repo = make_repo(tmp_path / "r", {"train.py": old.replace("#@\n", "")})
    run_script(repo, "train.py", **ENV)
    write(repo / "train.py", old.replace("#@\n", '        flor.log("x", k * 1000 + state["w"])\n'))
    want, w = [], 1.0
    for e in range(5):
        w *= 0.81
        want.append((e, pytest.approx((e + 1) * 1000 + w)))
    assert _rows(repo, "SELECT epoch, x FROM logs WHERE epoch = 3 AND x IS NOT NULL") == [want[3]]
    assert _rows(repo, "SELECT epoch, x FROM logs WHERE x IS NOT NULL ORDER BY 1") == want
