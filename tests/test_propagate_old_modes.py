"""Today's mode switch around the old version's own code (session 31).

Today's code adds ``net.eval()`` (and ``net.train()`` after) around the old evaluation code,
``va = accuracy(net(X), Y)``, and a statement logging ``va``: today ``va`` is computed in
evaluation mode, in the old version with dropout on. The statement reads ``va`` from the old
version's own code (it is aligned: nothing of it travels), so until session 31 it was placed
alone and logged the old, training-mode ``va`` as today's value, silently: a user who fixed an
evaluation without ``net.eval()`` and asked what the old runs' accuracy in evaluation mode was
got the old accuracy again. Now the mode each module is in where the old code computes a
needed name is compared, today's file against the old one (``slice._same_modes``), and the
statement refused where they differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from florsql.propagate import propagate
from tests.helpers_replay import Recorder, fetch
from tests.test_stranger_s25 import (  # noqa: F401  (fixtures used by name)
    Compare,
    record_versions,
    recorder,
    workers,
)
from tests.test_stranger_s29 import HEAD, two
from tests.test_stranger_s32b import make

EVAL_OLD = "with torch.no_grad():\n    va = (net(X).argmax(1) == Y).float().mean().item()\n"

OLD_EPOCH = EVAL_OLD + "flor.log('va', va)"
PLAIN = "va = (net(X).argmax(1) == Y).float().mean().item()\n"

REFUSED = {
    # the switch inside the old ``with``, the statement after it
    "inside_the_old_with": (
        OLD_EPOCH,
        "with torch.no_grad():\n    net.eval()\n"
        "    va = (net(X).argmax(1) == Y).float().mean().item()\n    net.train()\n"
        "flor.log('va', va)\nflor.log('va_eval', va)",
    ),
    # the statement inside the old ``with`` too
    "statement_inside_the_old_with": (
        OLD_EPOCH,
        "with torch.no_grad():\n    net.eval()\n"
        "    va = (net(X).argmax(1) == Y).float().mean().item()\n    flor.log('va_eval', va)\n"
        "    net.train()\nflor.log('va', va)",
    ),
    # the switch before the old ``with``
    "before_the_old_with": (
        OLD_EPOCH,
        "net.eval()\n" + EVAL_OLD + "net.train()\nflor.log('va', va)\nflor.log('va_eval', va)",
    ),
    # ``net.train(False)`` around a plain statement
    "train_false_plain": (
        PLAIN + "flor.log('va', va)",
        "net.train(False)\n" + PLAIN + "net.train(True)\nflor.log('va', va)\n"
        "flor.log('va_eval', va)",
    ),
}


@pytest.mark.parametrize("pair", REFUSED.values(), ids=REFUSED.keys())
def test_a_name_the_old_code_computes_in_another_mode_today_is_refused(
    pair: tuple[str, str],
) -> None:
    old, new = pair
    r = propagate(make(epoch=new), make(epoch=old), ["va_eval"])
    assert not r.placed, r.source
    (f,) = r.failed
    assert "it reads va" in f.reason and "evaluation mode" in f.reason, f.reason
    assert "training mode" in f.reason, f.reason


PLACED = {
    # the old version switched the same way: the same mode on both sides
    "both_switch": (
        "net.eval()\n" + EVAL_OLD + "net.train()\nflor.log('va', va)",
        "net.eval()\n" + EVAL_OLD + "net.train()\nflor.log('va', va)\nflor.log('va_eval', va)",
    ),
    # today's switch comes after the old code computed the name
    "switch_after": (
        EVAL_OLD + "flor.log('va', va)",
        EVAL_OLD + "net.eval()\nflor.log('va', va)\nflor.log('va_eval', va)\nnet.train()",
    ),
    # back to training before it: the mode is training on both sides
    "switched_back_before": (
        EVAL_OLD + "flor.log('va', va)",
        "net.eval()\nprint(epoch)\nnet.train()\n" + EVAL_OLD + "flor.log('va', va)\n"
        "flor.log('va_eval', va)",
    ),
    # today's switch of another module
    "another_module": (
        EVAL_OLD + "flor.log('va', va)",
        "loss_fn.eval()\n" + EVAL_OLD + "flor.log('va', va)\nflor.log('va_eval', va)",
    ),
}


@pytest.mark.parametrize("pair", PLACED.values(), ids=PLACED.keys())
def test_a_name_the_old_code_computes_in_the_same_mode_is_placed(pair: tuple[str, str]) -> None:
    old, new = pair
    r = propagate(make(epoch=new), make(epoch=old), ["va_eval"])
    assert not r.failed, r.failed
    assert [p.name for p in r.placed] == ["va_eval"]


def test_a_switch_in_one_branch_only_is_another_mode() -> None:
    """``if epoch % 2: net.eval()`` today, none in the old version: the mode where ``va`` is
    computed depends on the branch, and differs from the old version's in some epochs."""
    new = "if epoch % 2:\n    net.eval()\n" + EVAL_OLD + "net.train()\nflor.log('va', va)\n"
    new += "flor.log('va_eval', va)"
    r = propagate(make(epoch=new), make(epoch=OLD_EPOCH), ["va_eval"])
    assert not r.placed and "another mode" in r.failed[0].reason, r.failed


# --- end to end: recorded runs, the query -----------------------------------------------------

TRAIN = """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
        net.eval()  # hindsight
        with torch.no_grad():
            va = (net(XV).argmax(1) == YV).float().mean().item()
        net.train()  # hindsight
        flor.log("va", va)
        flor.log("va_eval", va)  # hindsight
"""


@pytest.mark.slow
def test_the_query_says_why_it_cannot_answer(
    recorder: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Recorded runs that evaluated with dropout on; today's script evaluates in evaluation
    mode and logs the accuracy as ``va_eval``: the query does not answer the old runs' accuracy
    as ``va_eval``, and says why and what to write instead. Written so, the statement computes
    the accuracy itself, the switch travels with it, and the values are the hand-patched
    versions' (the oracle)."""
    import florsql

    text = HEAD + TRAIN
    history, _ = record_versions(recorder, tmp_path, two(text, text.replace("0.1)", "0.05)")))
    con = florsql.connect(history, replay="auto")
    try:
        with pytest.raises(florsql.Error, match="evaluation mode") as e:
            fetch(con, "SELECT seed, epochs, epoch, va, va_eval FROM logs")
        assert "compute the value in the statement itself, right after" in str(e.value)
    finally:
        con.close()
    itself = "".join(ln for ln in TRAIN.splitlines(True) if "# hindsight" not in ln)
    itself += (
        "        net.eval()  # hindsight\n"
        '        flor.log("va_eval", (net(XV).argmax(1) == YV).float().mean().item())'
        "  # hindsight\n"
        "        net.train()  # hindsight\n"
    )
    text = HEAD + itself
    history, oracle = record_versions(
        recorder, tmp_path / "itself", two(text, text.replace("0.1)", "0.05)"))
    )
    c = Compare(history, oracle)
    try:
        c("SELECT seed, epochs, epoch, va_eval FROM logs WHERE va_eval IS NOT NULL")
        c("SELECT seed, epochs, epoch, va FROM logs WHERE va IS NOT NULL")
    finally:
        c.close()
    c.assert_none()
