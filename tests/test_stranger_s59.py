"""A recorded column logged under a guard that reads a method today's code logs in (session 59,
sweep AO of session 58).

``if self.bad >= self.patience: break`` reads ``self.bad``, set from ``val_loss =
self.evaluate()``: the guard's bindings took ``evaluate()``'s whole text, and today's new
``flor.log("eval_acc", acc)`` in it made every query of ``val_loss`` (recorded, logged in that
block) warn, in 3 KB, that the old version had "today's very statement under other
conditions". A log statement changes nothing a guard reads: the texts compared leave it out.
"""

from __future__ import annotations

import ast
import textwrap
import warnings
from pathlib import Path

from florsql.propagate.conditions import _text_without_logs
from tests.helpers import git, make_repo, run_script, write
from tests.helpers_replay import query

V1 = textwrap.dedent(
    """\
    import florsql as flor


    class Trainer:
        def __init__(self, eval_every, patience):
            self.eval_every = eval_every
            self.patience = patience
            self.bad = 0
            self.best = 1e9
            self.w = 1.0

        def evaluate(self):
            acc = 1.0 / (1.0 + self.w)
            loss = self.w * 0.5
            return loss

        def fit(self, epochs):
            for epoch in flor.loop("epoch", range(epochs)):
                self.w *= 0.9
                if epoch % self.eval_every == 0:
                    val_loss = self.evaluate()
                    flor.log("val_loss", val_loss)
                    if val_loss < self.best:
                        self.best = val_loss
                        self.bad = 0
                    else:
                        self.bad += 1
                    if self.bad >= self.patience:
                        break


    t = Trainer(flor.arg("eval_every", 2), flor.arg("patience", 3))
    t.fit(6)
    """
)
V2 = V1.replace(
    "        loss = self.w * 0.5\n",
    '        loss = self.w * 0.5\n        flor.log("eval_acc", acc)\n',
)


def test_a_log_added_in_a_method_a_guard_reads_changes_no_condition(tmp_path: Path) -> None:
    assert V2 != V1
    root = make_repo(tmp_path / "history", {"train.py": V1})
    run_script(root, "train.py")
    write(root / "train.py", V2)
    git(root, "commit", "-qam", "eval_acc")
    oracle = make_repo(tmp_path / "oracle", {"train.py": V2})
    run_script(oracle, "train.py")
    sql = "SELECT epoch, val_loss, eval_acc FROM logs"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = query(root, sql)
    assert got == query(oracle, sql, replay="off")
    assert len(got) == 3 and all(r[2] is not None for r in got)
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "other conditions" in m], said


def test_the_texts_compared_keep_every_statement_but_log_calls() -> None:
    fn = ast.parse(
        textwrap.dedent(
            """\
            def evaluate(self, a):
                flor.log("acc", a)
                self.log("val", a)
                np.log(a, out=a)
                if a:
                    logger.log(10, "x")
                y = flor.log("y", a)
                return y
            """
        )
    ).body[0]
    text = _text_without_logs(fn)
    assert "flor.log('acc'" not in text and "self.log" not in text
    assert "logger.log" not in text and "if a:\n        pass" in text
    assert "np.log(a, out=a)" in text and "y = flor.log('y', a)" in text
    plain = ast.parse("def f(a):\n    return a + 1\n").body[0]
    assert _text_without_logs(plain) == ast.unparse(plain)
