"""Sweep s39 (h1): saved frame locals that share memory, replayed and compared with a full re-run
of the hand-patched old version (the harness and oracle of tests/test_replay_corpus_stranger.py,
runs with their own command lines as ``ArgCase`` of tests/test_replay_corpus_s35.py). The old
versions log only a value no state changes (the learning rate), so verification cannot rescue a
wrong restore: a wrong value is silent.

Each case keeps state in two places that share memory (a view and its base, a tensor held by a
name and by a container, a parameter bound by name) and today's statement reads the place the
loop did not write by name.

Exact already: a tensor summed in place by name and held by a dict the loop also writes
(``totals = {"a": t}``); a view of a tensor held in a saved dict; an unregistered EMA copy of the
weights in a list (``mul_``/``add_``); a list of tensors one also bound by name; views of a stats
tensor bound before the epoch loop (``lo, hi = sums[0], sums[1]``), or made anew each epoch, or
inside ``main()`` with the base also written by name (``stats[1] += 1``); a strided column view
of a per-class matrix written by name (``col[epoch] += ...``).

Silently wrong, now fixed (REPLAY_RULES 31): each local that shares memory with another name's
value was saved and restored as a copy, so what the replay wrote through it after the restore
missed the base, or the base was never restored at all:

- a view of a stats tensor bound in the epoch loop (``loss_slot = stats[0]``, summed in the
  step loop): ``stats_sum`` 0.0 for a full re-run's 22.09 at epoch 3;
- a view of a numpy row (``row = acc[epoch]``, ``row += ...``): ``acc_sum`` 0.0 for 22.09;
- a flat numpy view of a confusion matrix (``flat = conf.reshape(-1)``): ``conf_diag`` 120 for
  167; a numpy view of a local tensor (``counts.numpy()``): 0.0 for 24.0;
- a view of a saved dict's tensor written after the step loop (``head = bank["m"][:2]``,
  ``head.mul_(0.5)``): ``bank_half`` 3.7786 for 1.8893;
- a tensor of an unregistered EMA list bound by name in the step loop and damped through the
  name after it (``e0 = ema[0]``, ``e0.mul_(0.5)``): ``ema0`` 0.9292 for 0.4646 (restored
  apart from the list's entry);
- an unregistered batch norm's running mean bound by name (``rm = probe.running_mean``),
  damped through the name after the step loop: ``probe_rm`` -0.0488 for -0.0244;
- a registered parameter bound by name in the step loop (``w = net[2].weight``), read after an
  epoch's end shrink: ``w_norm`` 2.4412 for 2.1971, ``w is net[2].weight`` 0 for 1;
- an unregistered optimizer's momentum buffer bound by name, read after a damping: ``mbuf``
  0.3308 for 0.1654; a parameter of an unregistered EMA model bound by name (``ema_w =
  ema_net[2].weight``), the EMA moved after the step loop.

Each is now restored as the same view of the base the restore puts back
(:func:`florsql.record.frame_state._capture_shared`), a registered parameter as the replay's.

``BUGS`` names each failing pattern's bug (a strict xfail until fixed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from florsql.record import checkpoint as ckpt
from florsql.record import frame_state
from tests import test_replay_corpus_stranger as corpus
from tests.helpers import script_frame
from tests.helpers_replay import corpus_params, hindsight_names
from tests.test_replay_corpus_s35 import ArgCase
from tests.test_replay_corpus_s35 import Histories as ArgHistories
from tests.test_replay_corpus_stranger import Case

STEP = """
            loss = loss_fn(net(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
"""

LOOP = """
with flor.checkpointing(model=net, optimizer=opt):
    for epoch in flor.loop("epoch", range(epochs)):
"""

STEPS = """
        for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
"""

LR = """
        flor.log("lr", opt.param_groups[0]["lr"])
"""


def _case(name: str, body: str, names: list[str]) -> ArgCase:
    return ArgCase(
        name,
        body,
        {"epoch": names},
        old_query="SELECT seed, epoch, lr FROM logs",
        partial=(f"SELECT seed, epoch, {names[0]} FROM logs WHERE epoch = 3",),
    )


PATTERNS = [
    _case(
        "a_view_of_a_stats_tensor_summed_in_the_step_loop",
        """
stats = torch.zeros(3)  # loss, batches, spare: kept across epochs
"""
        + LOOP
        + """
        loss_slot = stats[0]  # views: writing them writes stats
        n_slot = stats[1]
"""
        + STEPS
        + STEP
        + """
            loss_slot += loss.detach()
            n_slot += 1
"""
        + LR
        + """
        flor.log("stats_sum", float(stats.sum()))  # hindsight
        flor.log("stats_mean", float(stats[0] / stats[1]))  # hindsight
""",
        ["stats_sum", "stats_mean"],
    ),
    _case(
        "a_view_of_a_numpy_row_updated_in_place",
        """
import numpy as np

acc = np.zeros((epochs, 2))
"""
        + LOOP
        + """
        row = acc[epoch]  # a view: writing it writes acc
"""
        + STEPS
        + STEP
        + """
            row += np.array([loss.item(), 1.0])
"""
        + LR
        + """
        flor.log("acc_sum", float(acc.sum()))  # hindsight
        flor.log("row_mean", float(row[0] / row[1]))  # hindsight
""",
        ["acc_sum", "row_mean"],
    ),
    _case(
        "dict_entries_summed_in_place_beside_a_local_tensor",
        """
t = torch.zeros(())
u = torch.zeros(())
totals = {"a": t, "b": u}
"""
        + LOOP
        + STEPS
        + STEP
        + """
            t += loss.detach()
            totals["b"] += 1
"""
        + LR
        + """
        flor.log("total_a", float(totals["a"]))  # hindsight
        flor.log("u", float(u))  # hindsight
""",
        ["total_a", "u"],
    ),
    _case(
        "a_view_of_a_tensor_held_in_a_saved_dict",
        """
bank = {"m": torch.zeros(4), "n": 0}
"""
        + LOOP
        + """
        head = bank["m"][:2]  # a view of the dict's tensor
"""
        + STEPS
        + STEP
        + """
            head += loss.detach()
            bank["n"] += 1
"""
        + LR
        + """
        flor.log("bank_sum", float(bank["m"].sum()))  # hindsight
""",
        ["bank_sum"],
    ),
    _case(
        "a_registered_parameter_bound_by_name_in_the_step_loop",
        LOOP
        + STEPS
        + STEP
        + """
            w = net[2].weight
        with torch.no_grad():  # shrink the head once an epoch
            net[2].weight.mul_(0.9)
"""
        + LR
        + """
        flor.log("w_norm", float(w.norm()))  # hindsight
        flor.log("w_same", int(w is net[2].weight))  # hindsight
""",
        ["w_norm", "w_same"],
    ),
    _case(
        "an_unregistered_ema_copy_of_the_weights",
        """
ema = [p.detach().clone() for p in net.parameters()]
"""
        + LOOP
        + STEPS
        + STEP
        + """
            with torch.no_grad():
                for e, p in zip(ema, net.parameters()):
                    e.mul_(0.9).add_(0.1 * p)
"""
        + LR
        + """
        flor.log("ema_sum", float(sum(e.sum() for e in ema)))  # hindsight
""",
        ["ema_sum"],
    ),
    _case(
        "a_list_of_tensors_one_also_bound_by_name",
        """
accs = [torch.zeros(()), torch.zeros(())]
first = accs[0]
"""
        + LOOP
        + STEPS
        + STEP
        + """
            first += loss.detach()
            accs[1] += 1
"""
        + LR
        + """
        flor.log("acc0", float(accs[0]))  # hindsight
        flor.log("acc1", float(accs[1]))  # hindsight
""",
        ["acc0", "acc1"],
    ),
    _case(
        "a_flat_numpy_view_of_a_confusion_matrix",
        """
import numpy as np

conf = np.zeros((2, 2))
flat = conf.reshape(-1)  # a view
"""
        + LOOP
        + STEPS
        + STEP
        + """
            pred = net(X[idx]).argmax(1)
            for y, q in zip(Y[idx].tolist(), pred.tolist()):
                flat[2 * y + q] += 1
"""
        + LR
        + """
        flor.log("conf_diag", float(conf.trace()))  # hindsight
""",
        ["conf_diag"],
    ),
    _case(
        "an_unregistered_optimizers_momentum_bound_by_name",
        """
head_opt = torch.optim.SGD(net[2].parameters(), lr=0.05, momentum=0.9)
"""
        + LOOP
        + STEPS
        + STEP
        + """
            head_opt.step()
            mbuf = head_opt.state[net[2].weight]["momentum_buffer"]
        for st in head_opt.state.values():
            st["momentum_buffer"].mul_(0.5)
"""
        + LR
        + """
        flor.log("mbuf", float(mbuf.norm()))  # hindsight
""",
        ["mbuf"],
    ),
    _case(
        "a_running_sum_view_bound_before_the_loop",
        """
sums = torch.zeros(2)
lo, hi = sums[0], sums[1]
"""
        + LOOP
        + STEPS
        + STEP
        + """
            lo += loss.detach()
            hi += loss.detach() ** 2
"""
        + LR
        + """
        flor.log("sums", float(sums.sum()))  # hindsight
""",
        ["sums"],
    ),
    _case(
        "views_of_a_stats_tensor_made_anew_each_epoch",
        LOOP
        + """
        stats = torch.zeros(2)
        loss_slot, n_slot = stats[0], stats[1]
"""
        + STEPS
        + STEP
        + """
            loss_slot += loss.detach()
            n_slot += 1
"""
        + LR
        + """
        flor.log("epoch_mean", float(stats[0] / stats[1]))  # hindsight
""",
        ["epoch_mean"],
    ),
    _case(
        "a_parameter_of_an_unregistered_ema_model_bound_by_name",
        """
import copy

ema_net = copy.deepcopy(net)
"""
        + LOOP
        + STEPS
        + STEP
        + """
            ema_w = ema_net[2].weight
        with torch.no_grad():  # the EMA follows once an epoch
            for pe, p in zip(ema_net.parameters(), net.parameters()):
                pe.mul_(0.5).add_(0.5 * p)
"""
        + LR
        + """
        flor.log("ema_w", float(ema_w.sum()))  # hindsight
        flor.log("ema_same", int(ema_w is ema_net[2].weight))  # hindsight
""",
        ["ema_w", "ema_same"],
    ),
    _case(
        "a_column_view_of_a_matrix_of_per_class_losses",
        """
per_class = torch.zeros(epochs, 2)
"""
        + LOOP
        + """
        col = per_class[:, epoch % 2]  # a strided view: every epoch's row, one class
"""
        + STEPS
        + STEP
        + """
            col[epoch] += loss.detach()
"""
        + LR
        + """
        flor.log("per_class", float(per_class.sum(0)[0] - per_class.sum(0)[1]))  # hindsight
""",
        ["per_class"],
    ),
    _case(
        "a_numpy_view_of_a_local_tensor",
        """
counts = torch.zeros(4)
counts_np = counts.numpy()  # shares the tensor's memory
"""
        + LOOP
        + STEPS
        + STEP
        + """
            counts_np[int(Y[idx].sum()) % 4] += 1
"""
        + LR
        + """
        flor.log("counts", float((counts * torch.arange(4)).sum()))  # hindsight
""",
        ["counts"],
    ),
    _case(
        "views_of_a_stats_tensor_inside_main",
        """


def main():
    stats = torch.zeros(2)
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(epochs)):
            loss_slot = stats[0]
            for idx in flor.loop("step", torch.randperm(len(X)).split(12)):
                loss = loss_fn(net(X[idx]), Y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_slot += loss.detach()
                stats[1] += 1
            flor.log("lr", opt.param_groups[0]["lr"])
            flor.log("main_mean", float(stats[0] / stats[1]))  # hindsight


main()
""",
        ["main_mean"],
    ),
    _case(
        "a_view_of_a_dicts_tensor_scaled_after_the_step_loop",
        """
bank = {"m": torch.zeros(4), "n": 0}
"""
        + LOOP
        + """
        head = bank["m"][:2]  # a view of the dict's tensor
"""
        + STEPS
        + STEP
        + """
            head += loss.detach()
            bank["n"] += 1
        head.mul_(0.5)  # through the view, after the step loop
"""
        + LR
        + """
        flor.log("bank_half", float(bank["m"].sum()))  # hindsight
""",
        ["bank_half"],
    ),
    _case(
        "an_ema_lists_tensor_bound_by_name_and_damped_after_the_step_loop",
        """
ema = [p.detach().clone() for p in net.parameters()]
"""
        + LOOP
        + STEPS
        + STEP
        + """
            with torch.no_grad():
                for e, p in zip(ema, net.parameters()):
                    e.mul_(0.9).add_(0.1 * p)
            e0 = ema[0]
        e0.mul_(0.5)  # through the name, after the step loop
"""
        + LR
        + """
        flor.log("ema0", float(ema[0].sum()))  # hindsight
""",
        ["ema0"],
    ),
    _case(
        "running_stats_of_an_unregistered_batch_norm_bound_by_name",
        """
probe = nn.BatchNorm1d(2)  # not registered: statistics of the logits
"""
        + LOOP
        + STEPS
        + STEP
        + """
            with torch.no_grad():
                probe(net(X[idx]))
            rm = probe.running_mean
        rm.mul_(0.5)  # through the name, after the step loop
"""
        + LR
        + """
        flor.log("probe_rm", float(probe.running_mean.sum()))  # hindsight
""",
        ["probe_rm"],
    ),
    # found by tests/test_frame_alias_property.py (session 39, after the sweep)
    _case(
        "a_meters_dict_of_a_running_tensor_written_by_name",
        """
total = torch.zeros(())  # summed over the whole run
"""
        + LOOP
        + """
        meters = {"loss": total}  # holds the very tensor
"""
        + STEPS
        + STEP
        + """
            total += loss.detach()
"""
        + LR
        + """
        meters["loss"].mul_(0.5)  # through the dict, after the step loop
        flor.log("total_after", float(total))  # hindsight
""",
        ["total_after"],
    ),
    _case(
        "a_buffer_written_through_a_state_dict_and_read_through_a_view",
        """
buf = torch.zeros(4)
head = buf[:2]  # a view, made before the loop
state = {"buf": buf}
"""
        + LOOP
        + STEPS
        + STEP
        + """
            state["buf"] += loss.detach()  # written through the dict only
"""
        + LR
        + """
        flor.log("head_sum", float(head.sum()))  # hindsight
""",
        ["head_sum"],
    ),
    _case(
        "a_tensor_over_a_numpy_array_from_numpy",
        """
import numpy as np

counts = np.zeros(3)
"""
        + LOOP
        + """
        counts_t = torch.from_numpy(counts)  # shares the array's memory
"""
        + STEPS
        + STEP
        + """
            counts_t[epoch % 3] += loss.item()
"""
        + LR
        + """
        counts[0] += 1.0  # through the array, after the step loop
        flor.log("counts_t_sum", float(counts_t.sum()))  # hindsight
""",
        ["counts_t_sum"],
    ),
    _case(
        "a_running_total_bound_to_another_name_in_the_epoch_loop",
        """
total = torch.zeros(())  # summed over the whole run
"""
        + LOOP
        + """
        acc = total  # the same tensor, another name
"""
        + STEPS
        + STEP
        + """
            acc += loss.detach()
"""
        + LR
        + """
        flor.log("total_seen", float(total))  # hindsight
""",
        ["total_seen"],
    ),
    _case(
        "a_running_total_bound_to_another_name_before_the_loop",
        """
total = torch.zeros(())  # summed over the whole run
acc = total  # the same tensor, another name
"""
        + LOOP
        + STEPS
        + STEP
        + """
            acc += loss.detach()
"""
        + LR
        + """
        flor.log("total_seen", float(total))  # hindsight
""",
        ["total_seen"],
    ),
    _case(
        "a_list_of_a_view_of_a_stats_tensor_written_through_the_list",
        """
stats = torch.zeros(3)  # summed over the run
parts = [stats[0:1]]  # a view of it, in a list
"""
        + LOOP
        + STEPS
        + STEP
        + """
            parts[0] += loss.detach()
"""
        + LR
        + """
        flor.log("stats_sum", float(stats.sum()))  # hindsight
""",
        ["stats_sum"],
    ),
    _case(
        "a_view_made_before_the_loop_of_a_buffer_a_dict_holds",
        """
state = {"buf": torch.zeros(4)}  # the buffer has no name of its own
head = state["buf"][:2]  # a view of it
"""
        + LOOP
        + STEPS
        + STEP
        + """
            state["buf"] += loss.detach()
"""
        + LR
        + """
        flor.log("head_sum", float(head.sum()))  # hindsight
""",
        ["head_sum"],
    ),
]

BUGS: dict[str, str] = {}
for _p in PATTERNS:
    _p.bug = BUGS.get(_p.name)
assert not set(BUGS) - {p.name for p in PATTERNS}
DEFAULT: list[str] = [
    "a_view_of_a_stats_tensor_summed_in_the_step_loop",
    "a_meters_dict_of_a_running_tensor_written_by_name",
    "a_running_total_bound_to_another_name_in_the_epoch_loop",
    "a_list_of_a_view_of_a_stats_tensor_written_through_the_list",
    "a_view_made_before_the_loop_of_a_buffer_a_dict_holds",
]
CASES = corpus_params(PATTERNS, DEFAULT)


def test_s39h1_corpus_is_consistent() -> None:
    for p in PATTERNS:
        declared = {n for names in p.levels.values() for n in names}
        assert declared == set(hindsight_names(p.text)), p.name


def _capture(ns: dict[str, Any], names: list[str], objs: dict[str, Any]) -> frame_state.Capture:
    """``names`` of ``ns`` captured, through a checkpoint file's round trip."""
    frame = script_frame(ns)
    registered = {id(o): n for n, o in objs.items()}
    views = frame_state.RegisteredViews(objs)
    values = frame_state.frame_values(frame)
    cap = frame_state.capture(values, names, registered, {}, views=views)
    data = ckpt.serialize({"format": ckpt.FORMAT, "locals": cap.payload()})
    return frame_state.Capture.from_payload(ckpt.load_bytes(data, "mem")["locals"])


def _script(mutate: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    ns: dict[str, Any] = {"net": net, "stats": torch.zeros(3), "acc": np.zeros((3, 2))}
    ns["counts"] = torch.zeros(4)
    ns["counts_np"] = ns["counts"].numpy()
    ns["head_opt"] = torch.optim.SGD(net[2].parameters(), lr=0.1, momentum=0.9)
    if mutate:
        ns["loss_slot"] = ns["stats"][0]
        ns["loss_slot"] += 2.0
        ns["row"] = ns["acc"][1]
        ns["row"] += 1.5
        ns["counts_np"][2] += 5
        net(torch.ones(2, 3)).sum().backward()
        ns["head_opt"].step()
        ns["w"] = net[2].weight
        ns["mbuf"] = ns["head_opt"].state[net[2].weight]["momentum_buffer"]
    return ns


NAMES = ["loss_slot", "row", "counts_np", "w", "mbuf", "head_opt"]


def test_locals_that_share_memory_are_restored_sharing_it() -> None:
    """A view of a local tensor (``loss_slot = stats[0]``), of a numpy array (``row =
    acc[epoch]``), a numpy view of a local tensor (``counts.numpy()``), a registered parameter
    bound by name and an unregistered optimizer's momentum buffer were restored as copies:
    what the replay wrote through them after the restore missed the base (``stats.sum()`` 0.0
    for a full re-run's 22.09, silently). Each is now the same view of the replay's base, the
    base restored in place though the loop never rebinds its name."""
    cap = _capture(_script(True), NAMES, {})
    kinds = {n: cap.saved[n][0] for n in NAMES}
    assert kinds == {**dict.fromkeys(NAMES, "alias"), "head_opt": "state"}
    assert {cap.saved[n][0] for n in ("stats", "acc", "counts")} == {
        "tensor_in_place",
        "pickle_in_place",
    }
    ns = _script(False)  # the replay, where the script starts
    stats, acc, counts, net = ns["stats"], ns["acc"], ns["counts"], ns["net"]
    frame_state.restore(script_frame(ns), cap, {})
    assert ns["stats"] is stats and stats.tolist() == [2.0, 0.0, 0.0]
    ns["loss_slot"] += 1.0
    assert stats[0].item() == 3.0
    assert ns["acc"] is acc and acc.sum() == 3.0
    ns["row"] += 1.0
    assert acc[1].tolist() == [2.5, 2.5]
    assert counts.tolist() == [0.0, 0.0, 5.0, 0.0]
    ns["counts_np"][0] += 1
    assert counts[0].item() == 1.0
    buf = ns["head_opt"].state[net[2].weight]["momentum_buffer"]
    assert ns["mbuf"].data_ptr() == buf.data_ptr() and torch.equal(ns["mbuf"], buf)
    assert ns["w"] is net[2].weight  # a parameter of the model another name holds


def test_a_view_of_a_saved_containers_tensor_or_array_is_restored_as_that_view() -> None:
    """``head = bank["m"][:2]`` written after the restore (``head.mul_(0.5)`` after the step
    loop): a copy left ``bank["m"]`` as restored (``bank_half`` 3.7786 for a full re-run's
    1.8893, silently). Now the view is made again of the tensor the restored ``bank`` holds;
    a numpy view of an array a saved list holds likewise."""

    def script(mutate: bool) -> dict[str, Any]:
        ns: dict[str, Any] = {"bank": {"m": torch.zeros(4), "n": 0}, "rows": [np.zeros(3)]}
        if mutate:
            ns["head"] = ns["bank"]["m"][:2]
            ns["head"] += 1.0
            ns["bank"]["n"] = 4
            ns["tail"] = ns["rows"][0][1:]
            ns["tail"] += 2.0
        return ns

    cap = _capture(script(True), ["bank", "head", "rows", "tail"], {})
    assert cap.saved["head"][0] == "alias" and cap.saved["tail"][0] == "alias"
    ns = script(False)
    frame_state.restore(script_frame(ns), cap, {})
    assert ns["bank"]["n"] == 4 and ns["bank"]["m"].tolist() == [1.0, 1.0, 0.0, 0.0]
    ns["head"].mul_(0.5)
    assert ns["bank"]["m"].tolist() == [0.5, 0.5, 0.0, 0.0]
    ns["tail"] += 1.0
    assert ns["rows"][0].tolist() == [0.0, 3.0, 3.0]


def test_a_registered_parameter_bound_by_name_is_the_replays_parameter() -> None:
    ns = _script(True)
    net = ns["net"]
    cap = _capture(ns, ["w"], {"model": net})
    assert cap.saved["w"][0] == "registered"
    replay = _script(False)
    net2 = replay["net"]
    net2.load_state_dict(net.state_dict())
    replay["w"] = torch.zeros(1)  # what the name held there: not the parameter
    frame_state.restore(script_frame(replay), cap, {"model": net2})
    assert replay["w"] is net2[2].weight


def test_a_view_whose_base_is_gone_is_restored_as_a_copy() -> None:
    cap = _capture(_script(True), ["loss_slot", "row"], {})
    ns = _script(False)
    ns["stats"] = "not a tensor"
    ns["acc"] = None
    frame_state.restore(script_frame(ns), cap, {})
    assert ns["loss_slot"].item() == 2.0
    assert ns["row"].tolist() == [1.5, 1.5]


class Histories(ArgHistories):
    prefix = "s39h1"


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Histories]:
    h = Histories(tmp_path_factory, worker_id)
    yield h
    h.close()


@pytest.mark.parametrize("pattern", CASES)
def test_s39h1_partial_then_wider_replays_like_a_full_rerun(
    pattern: Case, histories: Histories, tmp_path: Path
) -> None:
    corpus.check_partial_then_wider(pattern, histories, tmp_path)
