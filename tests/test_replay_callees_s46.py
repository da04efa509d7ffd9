"""Code today's statement *calls* that draws in some iterations and not in others.

Session 45 made a task that skipped iterations replay its run from the start when today's
placed texts branch around a draw (``pieces_uneven``), but assumed the code they call draws in
every call if in any. A helper's own branch (``def probe(net, epoch): ... if epoch == 1:
noise = torch.randn(1)``), a method's, a module's, or ``torch.dropout(h, 0.5, epoch % 2 ==
1)`` drew in an iteration a task skipped: a query for epoch 3 restored the checkpoint after
epoch 2 and followed the recorded generator where a run of today's script had drawn, silently,
until a later replay happened to see the draw. Now :func:`florsql.propagate.callees.calls_uneven`
follows the calls into the functions they reach, and such a statement is replayed from the
run's start. The oracle is a run of the old version with today's statement written in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import florsql
from florsql.propagate.callees import calls_uneven
from florsql.propagate.identity import pieces_uneven
from tests.helpers import make_repo, run_script, write

OLD = """import random
import torch
from torch import nn
import florsql as flor
#HELPERS

torch.set_num_threads(1)
seed = flor.arg("seed", 0)
torch.manual_seed(seed)
X = torch.randn(64, 8)
Y = (X[:, :2].sum(1) > 0).long()
net = NET(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(5)):
        for b in flor.loop("step", range(4)):
            idx = torch.randperm(64)[:16]
            loss = loss_fn(net(X[idx] + 0.05 * torch.randn(16, 8)), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
#@
        flor.log("lr", opt.param_groups[0]["lr"])
"""
PROBE = """

def probe(model, epoch):
    s = round(model[0].weight.sum().item(), 6)
    if epoch == 1:
        s += round(torch.randn(1).item(), 6)
    return s
"""
METHOD = """

class Prober:
    def __init__(self, when):
        self.when = when

    def __call__(self, model, epoch):
        return self.measure(model, epoch)

    def measure(self, model, epoch):
        s = round(model[0].weight.sum().item(), 6)
        if epoch == self.when:
            s += round(torch.rand(1).item(), 6)
        return s


prober = Prober(1)
"""
NET = """

class Net(nn.Sequential):
    def probe(self, epoch):
        s = round(self[0].weight.sum().item(), 6)
        if epoch == 1:
            s += round(torch.randn(1).item(), 6)
        return s
"""
KEEPS = """

class Net(nn.Sequential):
    def __init__(self, *layers):
        super().__init__(*layers)
        self.ema = 0.0
        self._ref = None

    def smooth(self, a):
        self.ema = 0.5 * self.ema + 0.5 * a
        return round(self.ema, 6)

    def drift(self):
        w = self[0].weight.detach()
        if self._ref is None:
            self._ref = w.clone()
        return round(float((w - self._ref).norm()), 6)
"""
CASES = {
    # a method of the model that keeps state in a plain attribute (an exponential average)
    "ema": (KEEPS, "", '        flor.log("p", net.smooth(loss.item()))\n'),
    # ... or caches a reference on its first call
    "drift": (KEEPS, "", '        flor.log("p", net.drift())\n'),
    # a method of the checkpointed model's own class
    "model": (NET, "", '        flor.log("p", net.probe(epoch))\n'),
    # a helper of the script's, its branch around a draw
    "helper": (PROBE, "", '        flor.log("p", probe(net, epoch))\n'),
    # a method reached through an instance's __call__
    "method": (METHOD, "", '        flor.log("p", prober(net, epoch))\n'),
    # a function of another module of the repository
    "module": (
        "from tools import probe as measure\n",
        PROBE,
        '        flor.log("p", measure(net, epoch))\n',
    ),
    # a draw told per call whether to draw
    "told": (
        "",
        "",
        "        w = torch.dropout(net[0].weight, 0.5, epoch == 1)\n"
        '        flor.log("p", round(w.sum().item(), 6))\n',
    ),
}
ENV = {"FLORSQL_CHECKPOINT_PERIOD": "1", "PYTHONHASHSEED": "0"}
SQL = "SELECT seed, epoch, p FROM logs WHERE p IS NOT NULL ORDER BY 1, 2"


def _script(helpers: str, new: str) -> str:
    cls = "Net" if "class Net" in helpers else "nn.Sequential"
    return OLD.replace("#HELPERS\n", helpers).replace("#@\n", new).replace("NET(", cls + "(")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.filterwarnings("ignore::florsql.errors.StatementDrawWarning")
def test_a_callee_drawing_in_a_skipped_iteration(tmp_path: Path, case: str) -> None:
    helpers, tools, new = CASES[case]
    files = {"train.py": _script(helpers, "")}
    if tools:
        files["tools.py"] = "import torch\n" + tools
    repo = make_repo(tmp_path / "r", files)
    oracle = make_repo(tmp_path / "o", {**files, "train.py": _script(helpers, new)})
    run_script(repo, "train.py", "--seed", "0", **ENV)
    run_script(oracle, "train.py", "--seed", "0", **ENV)
    write(repo / "train.py", _script(helpers, new))
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(SQL).fetchall()
    assert len(want) == 5
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        at3 = cur.execute("SELECT seed, epoch, p FROM logs WHERE epoch = 3").fetchall()
        assert at3 == [r for r in want if r[1] == 3]  # wrong before: the draw of epoch 1 unseen
        assert cur.execute(SQL).fetchall() == want


def _uneven(src: str, stmt: str, files: dict[str, str] | None = None) -> bool:
    read = None if files is None else files.get
    return calls_uneven(src, ast.parse(stmt).body, "train.py", read)


def test_a_registered_object_s_attributes_count_as_its_state(tmp_path: Path) -> None:
    """The guard compares a registered object's own attributes (not only a model's tensors):
    an object of the user's class given to ``flor.checkpointing`` that today's statement
    changes replays the run from its start."""
    script = """import florsql as flor


class Meter:
    def __init__(self):
        self.n = 0
        self.seen = []

    def add(self, v):
        self.seen.append(v)
        return len(self.seen)


meter = Meter()
w = 0.0
with flor.checkpointing(meter=meter):
    for epoch in flor.loop("epoch", range(4)):
        for b in flor.loop("step", range(2)):
            w += epoch + b
#@
"""
    new = '        flor.log("count", meter.add(w))\n'
    repo = make_repo(tmp_path / "r", {"train.py": script.replace("#@\n", "")})
    run_script(repo, "train.py", **ENV)
    write(repo / "train.py", script.replace("#@\n", new))
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        assert cur.execute("SELECT count FROM logs WHERE epoch = 2").fetchall() == [(3,)]
        rows = cur.execute("SELECT epoch, count FROM logs WHERE count IS NOT NULL ORDER BY 1")
        assert rows.fetchall() == [(e, e + 1) for e in range(4)]


def test_what_calls_uneven_follows() -> None:
    head = "import torch\nimport florsql as flor\n"
    assert _uneven(head + PROBE, "x = probe(net, epoch)")
    assert _uneven(head + METHOD, "x = prober(net, epoch)")
    assert _uneven(head + METHOD, "x = thing.measure(net, epoch)")  # a receiver it cannot name
    # through the version's other files: plain, aliased, package, relative
    tools = {"tools.py": "import torch\n" + PROBE}
    assert _uneven(head + "import tools\n", "x = tools.probe(net, e)", tools)
    assert _uneven(head + "from tools import probe as q\n", "x = q(net, e)", tools)
    pkg = {"pkg/__init__.py": "", "pkg/a.py": "from .b import probe\n", "pkg/b.py": PROBE}
    assert _uneven(head + "from pkg.a import probe\n", "x = probe(net, e)", pkg)
    assert _uneven(head + "import pkg.b as pb\n", "x = pb.probe(net, e)", pkg)
    assert not _uneven(head + "import tools\n", "x = tools.probe(net, e)", None)  # unread
    assert _uneven(head + "from tools import *\n", "x = probe(net, e)", tools)
    # a module of the user's: forward's branch
    net = "class Net(torch.nn.Module):\n    def forward(self, x):\n"
    net += "        if x.sum() > 0:\n            x = x + torch.randn(3)\n        return x\n"
    net += "model = Net()\n"
    assert _uneven(head + net, "y = model(x)")
    # calls that branch around nothing that draws, or draw in every call
    steady = "def f(e):\n    s = torch.randn(1)\n    if e % 2:\n        s = s * 2\n    return s\n"
    assert not _uneven(head + steady, "x = f(e)")
    logs = "def f(h, e):\n    if e % 2:\n        h.append(e)\n        print(e)\n    return h\n"
    assert not _uneven(head + logs, "x = f(h, e)")
    assert not _uneven(head, "y = net(x)")  # a library's module
    assert not _uneven(head, "y = torch.dropout(h, 0.5, True)")
    assert not _uneven(head, "y = F.dropout(h, 0.5, training=self.training)")
    assert _uneven(head, "y = F.dropout(h, 0.5, training=e > 2)")
    # an early return around a loop over data
    early = "def ev(net, dl, e):\n    if e < 2:\n        return 0.0\n    for x in dl:\n"
    early += "        net(x)\n    return 1.0\n"
    assert _uneven(head + early, "a = ev(net, dl, e)")
    # a class named through its module, or made and moved (``.to(device)``); a parameter
    # given an instance (session 46, sweep H)
    models = {"models.py": "import torch\n" + net.replace("model = Net()\n", "")}
    assert _uneven(head + "import models\nm = models.Net()\n", "y = m(x)", models)
    assert _uneven(head + "from models import Net\nm = Net().to('cpu')\n", "y = m(x)", models)
    helper = "def full(model, x):\n    return model(x).sum()\n"
    assert _uneven(head + net + helper, "y = full(model, x)")
    assert not _uneven(head + helper + "model = torch.nn.Linear(3, 1)\n", "y = full(model, x)")
    # a branch that skips part of a loop's body that draws nothing: the usual gradient norm
    gn = "def gn(m):\n    t = 0.0\n    for p in m.parameters():\n        if p.grad is None:\n"
    gn += "            continue\n        t += p.grad.norm().item() ** 2\n    return t ** 0.5\n"
    assert not _uneven(head + gn, "g = gn(net)")
    # a library model in eval mode first (the usual evaluate): its break skips no draw
    ev = "def ev(model, X, n):\n    model.eval()\n    c = 0\n    for b in range(4):\n"
    ev += "        if n and b >= n:\n            break\n"
    ev += (
        "        c += (model(X[b]).argmax(1) == 0).sum().item()\n    model.train()\n    return c\n"
    )
    assert not _uneven(head + ev, "a = ev(net, X, 2)")
    assert _uneven(head + ev.replace("    model.eval()\n", ""), "a = ev(net, X, 2)")
    # a loop drawing as many times as the call says (``range(epoch)``)
    counted = "def f(e):\n    t = 0\n    for _ in range(e):\n        t += torch.rand(1).item()\n"
    counted += "    return t\n"
    assert _uneven(head + counted, "x = f(epoch)")
    assert not _uneven(head + counted.replace("range(e)", "range(3)"), "x = f(epoch)")
    # recursion ends
    rec = "def f(n):\n    if n:\n        return f(n - 1)\n    return torch.rand(1)\n"
    assert _uneven(head + rec, "x = f(3)")


def test_pieces_uneven_reports_a_callee() -> None:
    src = "import torch\nimport florsql as flor\n" + PROBE
    src += "with flor.checkpointing():\n    for e in flor.loop('epoch', range(4)):\n"
    src += "        flor.log('p', probe(None, e))\n"
    line = src.splitlines().index("        flor.log('p', probe(None, e))") + 1
    assert pieces_uneven(src, ((line, line),)) == "uneven"
    gated = src.replace("        flor.log('p'", "        if e:\n            flor.log('p'")
    assert pieces_uneven(gated, ((line, line + 1),)) == "uneven"  # a gate, but its callee branches


SWEEP_H = """import torch
from torch import nn
import florsql as flor

torch.manual_seed(0)
X = torch.randn(32, 4)
Y = (X.sum(1) > 0).long()
XV = torch.randn(16, 4)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 2)
        self.last = None

    def forward(self, x):
        h = torch.relu(self.a(x))
        self.last = h.detach()  # overwritten at every call: no state
        return self.b(h)


class History:
    def __init__(self):
        self.losses = []
        self.best = float("inf")

    def add(self, v):
        self.losses.append(v)

    def improved(self):
        cur = self.losses[-1]
        better = cur < self.best
        self.best = min(self.best, cur)
        return int(better)


net = Net()
opt = torch.optim.SGD(net.parameters(), lr=0.5)
history = History()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(5)):
        for b in flor.loop("step", range(2)):
            idx = torch.randperm(32)[:16]
            loss = nn.functional.cross_entropy(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.add(round(loss.item(), 6) if epoch != 2 else 9.0)
#@
"""


@pytest.mark.parametrize(
    "new",
    [
        # an object of the user's class the old loop keeps, not registered: its ``best``
        '        flor.log("p", history.improved())\n',
        # a forward pass on a model caching its activation: restored from checkpoints
        '        flor.log("p", round(net(XV).sum().item(), 6))\n',
    ],
    ids=["kept", "overwritten"],
)
def test_attributes_that_carry_state_and_those_that_do_not(tmp_path: Path, new: str) -> None:
    """Sweep H: ``history.improved()`` updating ``self.best`` on an object the checkpoint saves
    with the frame's locals answered 1 for 0 (each restore put the old ``best`` back): objects
    of the user's classes the frame names are compared too. And a ``forward`` caching
    ``self.last = h.detach()`` replayed every query from the start: an attribute only ever
    overwritten carries nothing (``rng_guard.accumulates``)."""
    import warnings as w

    from florsql.errors import StatementDrawWarning

    repo = make_repo(tmp_path / "r", {"train.py": SWEEP_H.replace("#@\n", "")})
    oracle = make_repo(tmp_path / "o", {"train.py": SWEEP_H.replace("#@\n", new)})
    run_script(repo, "train.py", **ENV)
    run_script(oracle, "train.py", **ENV)
    write(repo / "train.py", SWEEP_H.replace("#@\n", new))
    sql = "SELECT epoch, p FROM logs WHERE p IS NOT NULL ORDER BY 1"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert len(want) == 5
    kept = "improved" in new
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        with florsql.connect(repo, replay="auto") as con:
            cur = con.cursor()
            part = cur.execute(sql.replace("WHERE", "WHERE epoch >= 3 AND")).fetchall()
            assert part == [r for r in want if r[0] >= 3]
            assert cur.execute(sql).fetchall() == want
    drew = [c for c in caught if issubclass(c.category, StatementDrawWarning)]
    assert bool(drew) == kept, [str(c.message) for c in drew]


def test_an_old_helper_the_old_loop_never_called_restores_checkpoints(tmp_path: Path) -> None:
    """Sweep H: v1 defines ``evaluate`` and calls it only after the loop; today's per-epoch
    ``flor.log("val_acc", evaluate(net, XV, YV))``. A call of ``evaluate`` counted as changing
    the function ``evaluate``, which no checkpoint holds ("reads evaluate, not captured"), so
    every task ran from the top. A plain function of the script holds nothing a call changes
    (``effects._plain_functions``): the task restores the checkpoint, and the value is exact."""
    from florsql.code.effects import _plain_functions

    old = (Path(__file__).parent / "fixtures" / "replay_s46" / "old_helper_v1.py").read_text()
    new = old.replace(
        '            flor.log("val_loss", loss_fn(net(XV), YV).item())\n',
        '            flor.log("val_loss", loss_fn(net(XV), YV).item())\n'
        '        flor.log("val_acc", evaluate(net, XV, YV))\n',
    )
    assert new != old
    assert "evaluate" in _plain_functions(ast.parse(old))
    repo = make_repo(tmp_path / "r", {"train.py": old})
    oracle = make_repo(tmp_path / "o", {"train.py": new})
    run_script(repo, "train.py", **ENV)
    run_script(oracle, "train.py", **ENV)
    write(repo / "train.py", new)
    sql = "SELECT epoch, val_acc FROM logs WHERE epoch = 3 AND val_acc IS NOT NULL"
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    with florsql.connect(repo, replay="auto") as con:
        cur = con.cursor()
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + sql).fetchall())
        assert "from checkpoint epoch 3" in plan and "not captured" not in plan, plan
        assert cur.execute(sql).fetchall() == want and len(want) == 1


def test_what_a_plain_function_is() -> None:
    from florsql.code.effects import _plain_functions

    src = "import functools\nimport torch\n"
    src += "def a(x):\n    return x\n"
    src += "@torch.no_grad()\ndef b(x):\n    return x\n"
    src += "@functools.lru_cache\ndef c(x):\n    return x\n"
    src += "def d(x):\n    return x\nd = staticmethod(d)\n"
    src += "def e(x):\n    return x\ndef e(x):\n    return 2 * x\n"
    src += "def f(x):\n    def f():\n        pass\n    return x\n"
    assert _plain_functions(ast.parse(src)) == {"a", "b"}
