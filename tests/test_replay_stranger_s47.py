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
