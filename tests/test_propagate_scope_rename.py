"""Renames through nested blocks (``florsql.propagate.rename.scope_rename``, session 29): a
name today's step loop binds, that the old version called otherwise, read after the loop."""

from __future__ import annotations

import pytest

from florsql.propagate import propagate

OLD = """\
import torch
import florsql as flor

net = torch.nn.Linear(6, 2)
optimizer = torch.optim.SGD(net.parameters(), lr=0.04)
loss_fn = torch.nn.CrossEntropyLoss()
with flor.checkpointing(model=net, optimizer=optimizer):
    for epoch in flor.loop("epoch", range(3)):
        for idx in flor.loop("step", torch.randperm(48).split(8)):
            batch_loss = loss_fn(net(X[idx]), Y[idx])
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            flor.log("loss", batch_loss.item())
"""

NEW = (
    OLD.replace("batch_loss", "loss")
    .replace("optimizer", "opt")
    .replace("opt=opt", "optimizer=opt")
    .replace("lr=0.04", "lr=0.05")
    + '        flor.log("last", loss.item())\n'
    + '        flor.log("lr", opt.param_groups[0]["lr"])\n'
)


def test_renamed_in_the_step_loop_and_at_module_level() -> None:
    result = propagate(NEW, OLD)
    assert not result.failed
    assert {p.name: p.renamed for p in result.placed} == {
        "last": {"loss": "batch_loss"},
        "lr": {"opt": "optimizer"},
    }
    assert '        flor.log("last", batch_loss.item())\n' in result.source
    assert '        flor.log("lr", optimizer.param_groups[0]["lr"])\n' in result.source


BINDING = "            batch_loss = loss_fn(net(X[idx]), Y[idx])\n"


@pytest.mark.parametrize(
    "old",
    [
        # the old name bound otherwise too: before the loops, in the epoch, in the step loop
        OLD.replace("with flor", "batch_loss = torch.zeros(1)\nwith flor"),
        OLD.replace("range(3)):\n", "range(3)):\n        batch_loss = torch.zeros(1)\n"),
        OLD.replace(
            "            optimizer.step()\n",
            "            optimizer.step()\n            batch_loss = batch_loss.detach()\n",
        ),
        # another value (beyond constants), another shape around it, today's name bound too
        OLD.replace(BINDING, BINDING.replace("Y[idx])", "Y[idx]) * 2")),
        OLD.replace(BINDING, "            if True:\n    " + BINDING),
        OLD.replace("loss_fn = ", "loss = 3\nloss_fn = "),
        # declared global somewhere
        OLD + "\n\ndef f():\n    global batch_loss\n    batch_loss = 1\n",
    ],
)
def test_refused_where_the_scope_is_no_evidence(old: str) -> None:
    result = propagate(NEW, old, ["last"])
    assert not result.placed
    assert result.failed


def test_refused_where_today_binds_the_old_name() -> None:
    new = NEW.replace("loss_fn = ", "batch_loss = 3\nloss_fn = ")
    result = propagate(new, OLD, ["last"])
    assert not result.placed
