"""Stranger sweep s28: a log statement wrapped around code the old version already runs.

``flor.log`` returns the value it logs, so a user adds a hindsight value by wrapping an existing
line: ``flor.log("gn", float(clip_grad_norm_(ps, 0.5)))`` where the recorded runs called
``clip_grad_norm_(ps, 0.5)`` alone, ``running += flor.log("bl", loss.item())`` where they had
``running += loss.item()``, ``loss = flor.log("tl", loss_fn(net(xb), yb))`` through a dropout
model. Until session 26, propagation inserted such a line beside the old one, so the old code
ran twice in replay (gradients clipped twice, a second dropout mask drawn, the sum doubled) and
every value after it was wrong without a word. The line now replaces the old one
(``florsql.propagate.api._twin``); where that is not exact (other constants, the same code
elsewhere in the block) the statement is refused with the reason.

Lines written ``NEW  # hindsight: OLD`` (tests/helpers_replay.py) are today's line NEW where the
recorded runs had OLD. The oracle records the hand-patched sequence; every query must answer
what it answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from florsql.propagate import propagate
from tests.helpers_replay import Recorder, corpus_params, old_source, patched_source
from tests.test_stranger_s25 import (  # noqa: F401  (fixtures used by name)
    Compare,
    Version,
    record_versions,
    recorder,
    workers,
)
from tests.test_stranger_s27 import HEAD as S27_HEAD
from tests.test_stranger_s27 import RUNS, RUNS2, Pattern, narrow_then_wide

HEAD = S27_HEAD + "cg = torch.nn.utils.clip_grad_norm_\n"

CLIP_AND_SUM = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
ps = list(net.parameters())
opt = torch.optim.SGD(ps, lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        running = 0.0
        for i in flor.loop("step", range(0, 48, 8)):
            opt.zero_grad()
            loss = loss_fn(net(X[i : i + 8]), Y[i : i + 8])
            loss.backward()
            flor.log("gn", float(cg(ps, 0.5)))  # hindsight: cg(ps, 0.5)
            opt.step()
            running += flor.log("bl", loss.item())  # hindsight: running += loss.item()
        flor.log("running", running)
"""
)

DROPOUT_LOSS = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
opt = torch.optim.Adam(net.parameters(), lr=LR)
loss_fn = nn.CrossEntropyLoss()
best = 0.0
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        net.train()
        for idx in flor.loop("step", torch.randperm(48).split(12)):
            xb, yb = X[idx], Y[idx]
            loss = flor.log("tl", loss_fn(net(xb), yb))  # hindsight: loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(XV).argmax(1) == YV).float().mean())
        best = flor.log("best", max(best, acc))  # hindsight: best = max(best, acc)
        flor.log("acc", acc)
"""
)

# the gradient norm as most write it: the clipping line bound to a name, logged after
CARRIED_NORM = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 2))
opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        for idx in flor.loop("step", torch.randperm(48).split(16)):
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            norm = cg(net.parameters(), 0.3).item()  # hindsight: cg(net.parameters(), 0.3)
            flor.log("norm", norm)  # hindsight
            opt.step()
            flor.log("loss", loss.item())
        flor.log("wn", float(net[0].weight.norm()))
"""
)


def two(text: str, a: str, b: str) -> list[Version]:
    return [
        ({"train.py": text.replace("LR", a)}, RUNS),
        ({"train.py": text.replace("LR", b)}, RUNS2),
    ]


PATTERNS = [
    Pattern(
        "clip_grad_norm_and_a_running_sum_wrapped_in_flor_log",
        two(CLIP_AND_SUM, "0.1", "0.05"),
        [*narrow_then_wide("gn", "step"), *narrow_then_wide("bl", "step"),
         "SELECT seed, epoch, running FROM logs WHERE running IS NOT NULL"],
    ),
    Pattern(
        "loss_through_dropout_and_best_so_far_assigned_through_flor_log",
        two(DROPOUT_LOSS, "0.01", "0.02"),
        [*narrow_then_wide("tl", "step"), *narrow_then_wide("best"),
         "SELECT seed, epoch, acc, best FROM logs WHERE best IS NOT NULL"],
    ),
]  # fmt: skip

PATTERNS.append(
    Pattern(
        "clip_grad_norm_bound_to_a_name_and_logged_after",
        two(CARRIED_NORM, "0.2", "0.1"),
        [*narrow_then_wide("norm", "step"), "SELECT seed, epoch, wn FROM logs"],
    )
)

# an old line rewritten to keep its value, read in another block: until session 27 an
# accumulation beside a new counter, and a name the old version also bound elsewhere, kept
# the old code's line and read a value nothing had computed (0.0) without a word
EPOCH_NORMS = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
ps = list(net.parameters())
opt = torch.optim.SGD(ps, lr=LR, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
val = 0.0


def evaluate(m):
    with torch.no_grad():
        return float(loss_fn(m(XV), YV))


with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        gsum = 0.0  # hindsight
        cnt = 0  # hindsight
        val = evaluate(net)  # hindsight: evaluate(net)
        for i in flor.loop("step", range(0, 48, 8)):
            opt.zero_grad()
            loss = loss_fn(net(X[i : i + 8]), Y[i : i + 8])
            loss.backward()
            norm = cg(ps, 0.5).item()  # hindsight: cg(ps, 0.5)
            gsum += norm  # hindsight
            cnt += 1  # hindsight
            opt.step()
            flor.log("loss", loss.item())
        flor.log("last_norm", norm)  # hindsight
        flor.log("gmean", gsum / cnt)  # hindsight
        flor.log("val", val)  # hindsight
"""
)

ACCUMULATED_CLIP = (
    HEAD
    + """
net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 2))
ps = list(net.parameters())
opt = torch.optim.SGD(ps, lr=LR)
loss_fn = nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
        gsum = 0.0  # hindsight
        cnt = 0  # hindsight
        for i in flor.loop("step", range(0, 48, 12)):
            opt.zero_grad()
            loss_fn(net(X[i : i + 12]), Y[i : i + 12]).backward()
            gsum += cg(ps, 0.4).item()  # hindsight: cg(ps, 0.4)
            cnt += 1  # hindsight
            opt.step()
        flor.log("gmean", gsum / cnt)  # hindsight
        flor.log("w", float(net[0].weight.sum()))
"""
)

PATTERNS += [
    Pattern(
        "an_old_call_rewritten_to_bind_its_value_read_after_the_step_loop",
        two(EPOCH_NORMS, "0.1", "0.05"),
        [*narrow_then_wide("last_norm"), *narrow_then_wide("gmean"), *narrow_then_wide("val")],
    ),
    Pattern(
        "an_old_call_rewritten_into_an_accumulation_beside_a_new_counter",
        two(ACCUMULATED_CLIP, "0.2", "0.1"),
        [*narrow_then_wide("gmean"), "SELECT seed, epoch, w, gmean FROM logs"],
    ),
]

DEFAULT = ("an_old_call_rewritten_into_an_accumulation_beside_a_new_counter",)


@pytest.mark.parametrize("p", corpus_params(PATTERNS, DEFAULT))
def test_pattern(recorder: Recorder, tmp_path: Path, p: Pattern) -> None:  # noqa: F811
    history, oracle = record_versions(recorder, tmp_path, p.versions)
    c = Compare(history, oracle)
    try:
        for sql in p.sqls:
            c(sql)
    finally:
        c.close()
    c.assert_none()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (CLIP_AND_SUM, {"gn", "bl"}),
        (DROPOUT_LOSS, {"tl", "best"}),
        (CARRIED_NORM, {"norm"}),
    ],
    ids=["clip", "dropout", "carried"],
)
def test_the_wrapping_line_replaces_the_old_one(text: str, names: set[str]) -> None:
    """Propagated into the recorded version, today's script is today's script: each wrapped
    line stands where its old line stood (nothing runs twice), comments kept."""
    today, old = patched_source(text), old_source(text)
    result = propagate(today, old)
    assert not result.failed
    assert result.source == today
    assert {p.name for p in result.placed} == names


@pytest.mark.parametrize(
    "line",
    [
        "gn = opt.step(1)",
        "gn = float(opt.step(1))",
        "gn = opt.step(1).item()",
        'gn = flor.log("gn", opt.step(1))',
        'flor.log("gn", float(opt.step(1)))',
    ],
)
def test_every_way_of_naming_an_old_call_replaces_it(line: str) -> None:
    new = OLD.replace("        opt.step(1)  # update\n", f"        {line}\n")
    if "flor.log" not in line:
        new = new.replace(
            "        acc += loss.item()\n",
            '        acc += loss.item()\n        flor.log("gn", gn)\n',
        )
    result = propagate(new, OLD, ["gn"])
    assert not result.failed
    assert result.source.count("opt.step(1)") == 1
    assert f"        {line}  # update\n" in result.source


OLD = """import florsql as flor
from lib import f, opt
acc = 0.0
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(4)):
        loss = f(step)
        opt.step(1)  # update
        acc += loss.item()
    flor.log("acc", acc)
"""


@pytest.mark.parametrize(
    ("old_line", "new_line", "reason"),
    [
        # the same call with another constant: replacing changes the old run, adding runs it twice
        ("        opt.step(1)  # update\n", '        flor.log("s", opt.step(2))\n', "arguments"),
        # the same function, its argument passed by keyword
        ("        opt.step(1)  # update\n", '        flor.log("s", opt.step(n=1))\n', "arguments"),
        # today's code moved the call after the sum, into the log statement: replacing would
        # move the old run's call, adding it would run it twice
        (
            "        opt.step(1)  # update\n        acc += loss.item()\n",
            '        acc += loss.item()\n        flor.log("x", 1)\n'
            '        flor.log("s", opt.step(1))\n',
            "elsewhere",
        ),
    ],
    ids=["other-constants", "other-arguments", "elsewhere"],
)
def test_a_wrapping_line_that_is_not_exact_is_refused_with_the_reason(
    old_line: str, new_line: str, reason: str
) -> None:
    result = propagate(OLD.replace(old_line, new_line), OLD, ["s"])
    assert not result.placed
    assert reason in result.failed[0].reason
    assert result.source == OLD


def test_the_replaced_line_keeps_its_comment() -> None:
    new = OLD.replace("        opt.step(1)  # update\n", '        flor.log("s", opt.step(1))\n')
    result = propagate(new, OLD, ["s"])
    assert result.source == new.replace("opt.step(1))\n", "opt.step(1))  # update\n")


def test_a_log_statement_that_rebinds_a_name_the_old_code_reads_is_refused() -> None:
    """``acc = flor.log("a2", loss.item() * 2)`` is new code, not the old ``acc += ...``: put in,
    it would change the ``acc`` the old run records."""
    new = OLD.replace("        acc += loss.item()\n", "        acc += loss.item()\n"
                      '        acc = flor.log("a2", loss.item() * 2)\n')  # fmt: skip
    result = propagate(new, OLD, ["a2"])
    assert not result.placed and "acc" in result.failed[0].reason


def test_a_call_today_makes_twice_goes_in_as_today_has_it() -> None:
    """Where today's code keeps the old line and makes its call again in the log statement,
    it runs twice today too: the statement goes in beside it (tests/test_replay_corpus_h4.py,
    ``report("end", net)`` kept and ``flor.log("total", report("again", net))`` added, replays
    exactly so)."""
    new = OLD.replace(
        "        opt.step(1)  # update\n",
        '        opt.step(1)  # update\n        flor.log("s", opt.step(2))\n',
    )
    result = propagate(new, OLD, ["s"])
    assert not result.failed
    assert result.source == new


def test_a_wrapped_line_in_a_new_block_is_refused_not_run_twice() -> None:
    new = OLD.replace(
        "        opt.step(1)  # update\n",
        '        if step % 2 == 0:\n            flor.log("s", opt.step(1))\n',
    )
    result = propagate(new, OLD, ["s"])
    assert not result.placed and "new block" in result.failed[0].reason
    assert result.source == OLD
