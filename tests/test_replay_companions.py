"""Today's other statements run beside the asked ones (session 35, gap 2).

The contract: a replayed value equals what a full run of the old version with *all* of today's
new statements in it logs. A statement of today's that draws from an RNG (a validation loop over
a ``DataLoader``, ``random.random()``) moves what a run of today's script trains on after it, so
a name asked alone depends on statements it was not asked with. A replay therefore places
today's other statements the version lacks too (companions: run, their values not stored), the
planner analyses the script with them (their loops run), a draw among them sends the run to its
start (``runner._from_the_start``), and a name's fingerprint covers them (a stored value stops
counting once another statement changes). Each case compares with a full run of today's script.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_repo, run_script, write
from tests.test_replay_rng_guard import (
    GRAD,
    NOISE,
    PYRANDOM,
    TORCH,
    VAL,
    _add,
    _case,
    _drew,
    _only,
    _values,
)

EPOCH_END = '        flor.log("ep_w", w)\n'
STEP_LINE = '            flor.log("w", w)\n'
W10 = '        flor.log("w10", round(w * 10, 9))\n'
STEP_NOISE = '            flor.log("sn", random.random())\n'


def test_one_drawing_statement_of_two_asked_alone(tmp_path: Path) -> None:
    """``noise`` (each epoch) and ``sn`` (each step) both draw from Python's generator; asked
    alone, ``noise`` must follow the run where ``sn`` drew too. Before: ``noise`` was replayed
    from the run's start with only its own draws (another stream than today's script's)."""
    today = _add(_add(PYRANDOM, EPOCH_END, NOISE), STEP_LINE, STEP_NOISE)
    sql = "SELECT epoch, noise FROM logs WHERE epoch >= 2 ORDER BY epoch"
    got, want, said = _case(tmp_path, PYRANDOM, today, today, sql)
    assert _only(got, "epoch", "noise") == _only(want, "epoch", "noise") and len(got) == 2
    assert _drew(said, "sn", "Python's random module"), [str(w.message) for w in said]


def test_a_step_level_draw_beside_an_epoch_level_name(tmp_path: Path) -> None:
    """``w10`` at each epoch's end draws nothing; ``sn`` in the step loop draws. Asked alone,
    ``w10`` was replayed in rest mode (the step loop skipped, so ``sn`` never ran): the
    recorded run's values. With ``sn`` analysed beside it the step loop runs, its draw is seen,
    and the run is replayed from its start."""
    today = _add(_add(PYRANDOM, EPOCH_END, W10), STEP_LINE, STEP_NOISE)
    sql = "SELECT epoch, w10 FROM logs WHERE epoch >= 2 ORDER BY epoch"
    got, want, said = _case(tmp_path, PYRANDOM, today, today, sql)
    assert _only(got, "epoch", "w10") == _only(want, "epoch", "w10") and len(got) == 2
    assert _drew(said, "sn", "Python's random module"), [str(w.message) for w in said]


@pytest.mark.slow
def test_a_partial_query_of_a_name_that_draws_nothing(tmp_path: Path) -> None:
    """``w0`` (a weight sum each step) asked alone, ``WHERE epoch >= 2``, while today's
    ``val_acc`` (a DataLoader each epoch) draws torch's base seed."""
    today = _add(_add(TORCH, '        flor.log("ep_loss", loss.item())\n', VAL),
                 '            flor.log("loss", loss.item())\n', GRAD)  # fmt: skip
    sql = "SELECT epoch, step, w0 FROM logs WHERE epoch >= 2 ORDER BY epoch, step"
    got, want, said = _case(tmp_path, TORCH, today, today, sql)
    cols = ("epoch", "step", "w0")
    assert _only(got, *cols) == _only(want, *cols) and len(got) == 12
    assert _drew(said, "val_acc", "torch")


@pytest.mark.slow
def test_stored_values_stop_counting_when_another_statement_changes(tmp_path: Path) -> None:
    """``w10`` replayed while today's code had no drawing statement; then ``noise`` (drawing)
    is added: the stored ``w10`` values no longer count, and the ones computed again are a run
    of the new script's. Removed again, ``w10`` is the first script's again."""
    quiet = _add(PYRANDOM, EPOCH_END, W10)
    noisy = _add(quiet, EPOCH_END, NOISE)
    sql = "SELECT epoch, w10 FROM logs WHERE epoch >= 1 ORDER BY epoch"
    repo = make_repo(tmp_path / "r", {"train.py": PYRANDOM})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    wants = {}
    for label, script in (("quiet", quiet), ("noisy", noisy)):
        ref = make_repo(tmp_path / label, {"train.py": script})
        run_script(ref, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
        wants[label] = _only(_values(ref, sql, "off")[0], "epoch", "w10")
    assert wants["quiet"] != wants["noisy"]
    for label, script in (("quiet", quiet), ("noisy", noisy), ("quiet", quiet)):
        write(repo / "train.py", script)
        rows, _ = _values(repo, sql, "auto")
        assert _only(rows, "epoch", "w10") == wants[label], label


def test_explain_names_the_companions_and_skips_no_loop_they_sit_in(tmp_path: Path) -> None:
    """EXPLAIN says what runs beside the asked name; the step loop ``sn`` sits in is not
    skipped (before: ``rest`` steps, the step loop restored from a checkpoint instead). A
    statement of today's that surely draws nothing (``round(w * 3, 9)``: a value builtin,
    operators) is no companion: the step loop it sits in is skipped as before (measured on a
    larger model, 6 epochs, ``WHERE epoch >= 3``: a task of 0.22 s in rest mode, 15.5 s when
    ``w0 = round(float(net[0].weight.sum()), 6)`` in the step loop counted as drawing)."""
    from florsql.engine.session import Engine

    repo = make_repo(tmp_path / "r", {"train.py": PYRANDOM})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    sql = "SELECT epoch, w10 FROM logs WHERE epoch >= 2"
    quiet = '            flor.log("w3", round(w * 3, 9))\n'
    for today, companion in ((_add(_add(PYRANDOM, EPOCH_END, W10), STEP_LINE, STEP_NOISE), True),
                             (_add(_add(PYRANDOM, EPOCH_END, W10), STEP_LINE, quiet), False),
                             (_add(PYRANDOM, EPOCH_END, W10), False)):  # fmt: skip
        write(repo / "train.py", today)
        with Engine(repo, replay="off") as eng:
            text = "\n".join(eng.execute(f"EXPLAIN {sql}").table.column("plan").to_pylist())
        assert ("also runs, values not kept (may draw): sn" in text) is companion, text
        assert ("inner loops skipped: none" in text) is companion, text


def test_a_gradient_norm_over_the_parameters_is_quiet() -> None:
    """A generator over a module's own tensors draws nothing (session 41: a gradient norm in
    the step loop was judged loud, a companion of every epoch-level statement, and each
    epoch-level replay ran every step of every epoch); iterating anything else, or drawing in
    the element, stays loud."""
    from florsql.propagate.identity import statement_quiet

    src = (
        "import florsql as flor\n"
        "for e in flor.loop('epoch', range(2)):\n"
        "    for s in flor.loop('step', range(3)):\n"
        "        flor.log('g', float(sum(p.grad.norm() for p in net.parameters())))\n"
        "        flor.log('b', max(b.abs().max() for _, b in net.named_buffers()))\n"
        "        flor.log('h', sum(x for x in loader))\n"
        "        flor.log('j', sum(p.norm() for p in shuffled(net.parameters())))\n"
        "        flor.log('k', sum(torch.rand(1) for p in net.parameters()))\n"
        "        flor.log('m', sum((p.norm() for p in net.parameters()), start))\n"
    )
    assert sorted(statement_quiet(src)) == ["b", "g"]


def test_explain_says_which_drawing_statement_of_todays_cannot_be_placed(tmp_path: Path) -> None:
    """A statement of today's that may draw and that propagation cannot place into the old
    version (here inside a new block that also holds a log statement the version has) cannot
    run beside the asked one: the replay is a run without its draws. Before, it was dropped
    without a word; EXPLAIN now names it and why. One placed is not named."""
    from florsql.engine.session import Engine

    old = (
        "import random\nimport florsql as flor\nrandom.seed(3)\nw = 1.0\n"
        "with flor.checkpointing(state={}):\n"
        '    for epoch in flor.loop("epoch", range(3)):\n'
        "        w = w * 0.5 + random.random()\n"
        '        flor.log("w", w)\n'
    )
    repo = make_repo(tmp_path / "r", {"train.py": old})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    why = "no block matching if epoch % 2 == 0 inside flor.loop('epoch')"
    block = (
        "        if epoch % 2 == 0:  # a block the old version lacks\n"
        '            flor.log("sn", random.random())\n'
        '            flor.log("w", w)\n'
    )
    placed = '        flor.log("sn", random.random())\n'
    for added, lost in ((block, True), (placed, False)):
        write(repo / "train.py", old + '        flor.log("w2", w * 2)\n' + added)
        with Engine(repo, replay="off") as eng:
            table = eng.execute("EXPLAIN SELECT w2 FROM logs").table
        text = "\n".join(table.column("plan").to_pylist())
        said = f"replayed without today's sn: it may draw from an RNG and cannot be placed ({why}"
        assert (said in text) is lost, text
        assert ("replayed without" in text) is lost, text
        assert ("also runs, values not kept (may draw): sn" in text) is not lost, text
        assert "statement: w2" in text, text
