"""New code that changes an old object in place before today's statement (session 58).

Sweeps AL and AM (session 57, 58): today's script adds code that changes, in place, an object
the old version already builds, then logs something read from it. The change was left behind
unless it was a method called as a statement on a name the old version never binds: the
replay read the old version's object and logged another value than today's code, silently
(``xs.extend([2])`` then ``len(xs)``: 1 where today's script logs 2). Such a change is now
either carried (where the name is today's own there) or, since carried it would alter the
old run, refused: a method called as a statement (``xs.append``), a changing method in an
expression (``last = xs.pop()``, ``stats.setdefault(...)``), an ``out=`` argument, a function
that changes its argument (``random.shuffle``, ``np.copyto``, a helper called as a statement),
a change through a plain alias (``ys = xs; ys.append(1)``, ``snap = total; snap += 100``) or
through an object holding it (a new ``sched.step()`` sets its optimizer's learning rate, a new
``opt.step()`` changes the model, a new ``extra.backward()`` adds to the model's gradients), in
the statement's block, in a loop's tail (the previous iteration's), or inside an old block.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest

import florsql
from florsql.dbapi.exceptions import ReplayError
from florsql.propagate import propagate
from tests.helpers import git, make_repo, run_script, write


def _loop(body: str, head: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f'import florsql as flor\n{head}\nfor epoch in flor.loop("epoch", range(3)):\n{body}\n'


#: (head, old body, today's body): today's body changes an old object before its log
CHANGED = {
    "a method as a statement": (
        "",
        "xs = [1]\ny = 0",
        "xs = [1]\nxs.extend([2])\ny = 0\nflor.log('n', len(xs))",
    ),
    "a method in the loop's tail": (
        "xs = []",
        "y = 0",
        "y = 0\nflor.log('n', len(xs))\nxs.append(epoch)",
    ),
    "a method in a new if": (
        "",
        "xs = [1]",
        "xs = [1]\nif epoch > 0:\n    xs.append(3)\nflor.log('n', len(xs))",
    ),
    "a method inside the old inner loop": (
        "xs = []",
        "for i in range(2):\n    y = i",
        "for i in range(2):\n    y = i\n    xs.append(i)\nflor.log('n', len(xs))",
    ),
    "pop in an expression": (
        "",
        "xs = [1, 2, 3]",
        "xs = [1, 2, 3]\nlast = xs.pop()\nflor.log('n', len(xs))",
    ),
    "setdefault in an expression": (
        "",
        "stats = {'a': 1}",
        "stats = {'a': 1}\nk = stats.setdefault('b', 10) + 1\nflor.log('n', len(stats))",
    ),
    "pop in a walrus": (
        "",
        "xs = [1, 2, 300]",
        "xs = [1, 2, 300]\nif (top := xs.pop()) > 100:\n    print(top)\nflor.log('n', len(xs))",
    ),
    "a pop new beside the old append in the inner loop": (
        "buf = []",
        "for i in range(4):\n    buf.append(i)",
        "for i in range(4):\n    buf.append(i)\n"
        "    dropped = buf.pop(0) if len(buf) > 2 else None\nflor.log('n', len(buf))",
    ),
    "an out= argument": (
        "import numpy as np\na = np.zeros(2)",
        "y = 0",
        "y = 0\nnp.add(a, 10, out=a)\nflor.log('n', float(a.sum()))",
    ),
    "a function changing its argument": (
        "import random\nxs = [1, 2]",
        "y = 0",
        "y = 0\nrandom.shuffle(xs)\nflor.log('n', xs[0])",
    ),
    "a helper called as a statement": (
        "def grow(l):\n    l.append(0)\n\n\nxs = [1]",
        "y = 0",
        "y = 0\ngrow(xs)\nflor.log('n', len(xs))",
    ),
    "through an alias": (
        "",
        "xs = [1]",
        "xs = [1]\nys = xs\nys.append(100)\nflor.log('n', len(xs))",
    ),
    "an augmented alias": (
        "import torch\ntotal = torch.zeros(1)",
        "total.add_(epoch)",
        "total.add_(epoch)\nsnap = total\nsnap += 100\nflor.log('n', snap.item())",
    ),
    "a store through a loop over an old object's parts": (
        "import torch\nnet = torch.nn.Linear(2, 1)\n"
        "opt = torch.optim.SGD(net.parameters(), lr=0.1)",
        "y = 0",
        "y = 0\nfor g in opt.param_groups:\n    g['lr'] = g['lr'] * 0.5\n"
        "flor.log('n', opt.param_groups[0]['lr'])",
    ),
    "a trainer's attribute": (
        "class T:\n    def __init__(self):\n        self.history = []\n\n\nt = T()",
        "t.history.append(epoch)",
        "t.history.append(epoch)\nt.history.append(-1)\nflor.log('n', len(t.history))",
    ),
}


TORCH = (
    "import torch\nnet = torch.nn.Linear(2, 1)\nopt = torch.optim.SGD(net.parameters(), lr=0.1)\n"
    "sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)\nX = torch.ones(4, 2)\n"
    "Y = torch.ones(4, 1)\nmse = torch.nn.MSELoss()"
)
STEP = "opt.zero_grad()\nout = net(X)\nloss = mse(out, Y)\nloss.backward()\nopt.step()"
CHANGED |= {
    "a scheduler's step changes its optimizer": (
        TORCH,
        STEP,
        STEP + "\nsched.step()\nflor.log('n', opt.param_groups[0]['lr'])",
    ),
    "an optimizer's step changes its model": (
        TORCH,
        "opt.zero_grad()\nout = net(X)\nloss = mse(out, Y)\nloss.backward()",
        "opt.zero_grad()\nout = net(X)\nloss = mse(out, Y)\nloss.backward()\nopt.step()\n"
        "flor.log('n', float(net.weight.sum()))",
    ),
    "a new backward adds to the model's gradients": (
        TORCH,
        "opt.zero_grad()\nout = net(X)\nloss = mse(out, Y)\nloss.backward()",
        "opt.zero_grad()\nout = net(X)\nloss = mse(out, Y)\nloss.backward()\n"
        "extra = mse(net(X) * 2, Y)\nextra.backward()\n"
        "flor.log('n', float(net.weight.grad.norm()))",
    ),
    "a carried loss's backward": (
        TORCH,
        STEP,
        STEP + "\nl2 = mse(net(X), Y * 2)\nl2.backward()\nflor.log('n', l2.item())",
    ),
}


@pytest.mark.parametrize("case", sorted(CHANGED))
def test_a_change_of_an_old_object_before_the_statement_is_refused(case: str) -> None:
    head, old, today = CHANGED[case]
    result = propagate(_loop(today, head), _loop(old, head))
    assert [f.name for f in result.failed] == ["n"], result.source
    reason = result.failed[0].reason
    assert "changes" in reason or "adds to the gradients of what" in reason


#: (head, old body, today's body, a line the placed source must hold): no change of an old
#: object, or one of today's own: placed
PLACED = {
    "a list today's code binds again first": (
        "",
        "xs = [1]",
        "xs = [1]\nxs = []\nxs.append(5)\nflor.log('n', len(xs))",
        "xs.append(5)",
    ),
    "a list of today's own": (
        "",
        "y = 0",
        "y = 0\nzs = []\nzs.append(y)\nflor.log('n', len(zs))",
        "zs.append(y)",
    ),
    "print": (
        "",
        "xs = [1]",
        "xs = [1]\nprint(xs)\nflor.log('n', len(xs))",
        "flor.log('n', len(xs))",
    ),
    "torch.save": (
        "import torch\nw = torch.ones(1)",
        "y = 0",
        "y = 0\ntorch.save(w, 'w.pt')\nflor.log('n', float(w))",
        "flor.log('n', float(w))",
    ),
    "a logger's method": (
        "import logging\nlog = logging.getLogger()\nxs = [1]",
        "y = 0",
        "y = 0\nlog.info('%s', xs)\nflor.log('n', len(xs))",
        "flor.log('n', len(xs))",
    ),
    "Lightning's self.log": (
        "class M:\n    v = 1\n\n    def log(self, k, v):\n        pass\n\n\nm = M()",
        "y = m.v",
        "y = m.v\nm.log('v', m.v)\nflor.log('n', m.v * 2)",
        "flor.log('n', m.v * 2)",
    ),
    "a new object changed in place": (
        "import torch\nx = torch.ones(2)",
        "y = 0",
        "y = 0\nw = x.clone()\nw.clamp_(0, 1)\nflor.log('n', float(w.sum()))",
        "w.clamp_(0, 1)",
    ),
    "a copy changed in place": (
        "import torch\nx = torch.ones(2)",
        "y = 0",
        "y = 0\nw = x.clone().clamp_(0, 1)\nflor.log('n', float(w.sum()))",
        "w = x.clone().clamp_(0, 1)",
    ),
    "the old version's own append": (
        "xs = []",
        "xs.append(epoch)",
        "xs.append(epoch)\nflor.log('n', len(xs))",
        "flor.log('n', len(xs))",
    ),
}


PLACED |= {
    "the old scheduler's step": (
        TORCH,
        STEP + "\nsched.step()",
        STEP + "\nsched.step()\nflor.log('n', opt.param_groups[0]['lr'])",
        "flor.log('n', opt.param_groups[0]['lr'])",
    ),
    "the old backward's gradients": (
        TORCH,
        STEP,
        STEP + "\nflor.log('n', float(net.weight.grad.norm()))",
        "flor.log('n', float(net.weight.grad.norm()))",
    ),
    "clipping new after the gradients' log (the next iteration computes them again)": (
        TORCH,
        "opt.zero_grad()\nout = net(X)\nloss = mse(out, Y)\nloss.backward()\nopt.step()",
        "opt.zero_grad()\nout = net(X)\nloss = mse(out, Y)\nloss.backward()\n"
        "flor.log('n', float(net.weight.grad.norm()))\n"
        "torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)\nopt.step()",
        "flor.log('n', float(net.weight.grad.norm()))",
    ),
    "a new evaluation": (
        TORCH,
        STEP,
        STEP + "\nwith torch.no_grad():\n    v = float(mse(net(X), Y))\nflor.log('n', v)",
        "v = float(mse(net(X), Y))",
    ),
}


@pytest.mark.parametrize("case", sorted(PLACED))
def test_no_change_of_an_old_object_is_placed(case: str) -> None:
    head, old, today, line = PLACED[case]
    result = propagate(_loop(today, head), _loop(old, head))
    assert not result.failed, result.failed
    assert line in result.source


def test_the_query_is_refused_not_answered_with_the_old_value(tmp_path: Path) -> None:
    """End to end: the old version's list had one element; today's script extends it before
    logging its length. Before session 58 the query answered 1 at every epoch (today's
    script logs 2), silently; now it is refused, naming the change."""
    old = _loop("xs = [epoch]\ny = 0")
    today = _loop("xs = [epoch]\nxs.extend([2])\ny = 0\nflor.log('n', len(xs))")
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    sql = "SELECT epoch, n FROM logs WHERE epoch IS NOT NULL ORDER BY epoch"
    refused = pytest.raises(ReplayError, match=r"changes 'xs' \(xs.extend\(\[2\]\)\)")
    with florsql.connect(repo) as con, refused:  # no version could take it: refused
        con.cursor().execute(sql)
    with warnings.catch_warnings(), florsql.connect(repo, replay="off") as con:
        warnings.simplefilter("ignore")
        rows = con.cursor().execute(sql).fetchall()
    assert rows == [] or all(n is None for _, n in rows), rows


def test_today_s_own_list_carried_equals_a_run_of_today_s_script(tmp_path: Path) -> None:
    """The list bound again by today's code first is today's own: its append travels, and the
    replayed values equal a real run of today's script."""
    old = _loop("xs = [epoch]\ny = 0")
    today = _loop("xs = [epoch]\nxs = [1, 2]\nxs.append(epoch)\ny = 0\nflor.log('n', sum(xs))")
    sql = "SELECT epoch, n FROM logs WHERE epoch IS NOT NULL ORDER BY epoch"
    oracle = make_repo(tmp_path / "o", {"train.py": today})
    run_script(oracle, "train.py")
    with florsql.connect(oracle, replay="off") as con:
        want = con.cursor().execute(sql).fetchall()
    assert want == [(0, 3), (1, 4), (2, 5)]
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py")
    write(repo / "train.py", today)
    git(repo, "commit", "-qam", "today")
    with florsql.connect(repo) as con:
        assert con.cursor().execute(sql).fetchall() == want
