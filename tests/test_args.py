from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from florsql.errors import RecordError, ReplayError
from florsql.record.args import coerce, flag_value, replayed_arg, scan_argv, scan_flags
from tests.helpers import make_repo, run_dirs, run_script


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--lr", "0.1"], {"lr": "0.1"}),
        (["--lr=0.1"], {"lr": "0.1"}),
        (["--kwargs", "lr=0.1", "epochs=3"], {"lr": "0.1", "epochs": "3"}),
        (["--shift", "-0.5"], {"shift": "-0.5"}),
        (["--verbose", "--lr", "2"], {"lr": "2"}),
        (["pos", "--name", "a=b"], {"name": "a=b"}),
        (["--kwargs", "a=1", "--b", "2"], {"a": "1", "b": "2"}),
        ([], {}),
    ],
)
def test_scan_argv(argv: list[str], expected: dict[str, str]) -> None:
    assert scan_argv(argv) == expected


@pytest.mark.parametrize(
    ("text", "default", "value"),
    [
        ("3", 1, 3),
        ("0.5", 1.0, 0.5),
        ("1e-3", 0.1, 1e-3),
        ("true", False, True),
        ("0", True, False),
        ("FALSE", True, False),
        ("yes", False, True),
        ("adam", "sgd", "adam"),
        ("x", None, "x"),
    ],
)
def test_coerce(text: str, default: object, value: object) -> None:
    got = coerce("a", text, default)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(("text", "default"), [("x", 1), ("1.5", 2), ("maybe", True), ("", 0.1)])
def test_coerce_errors(text: str, default: object) -> None:
    with pytest.raises(RecordError, match="expects a"):
        coerce("a", text, default)


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.integers(), max_size=5))
def test_roundtrip_equals_and_space_forms(d: dict[str, int]) -> None:
    eq = [f"--{k}={v}" for k, v in d.items()]
    sp = [x for k, v in d.items() for x in (f"--{k}", str(v))]
    kw = ["--kwargs", *[f"{k}={v}" for k, v in d.items()]] if d else []
    want = {k: str(v) for k, v in d.items()}
    assert scan_argv(eq) == scan_argv(sp) == scan_argv(kw) == want


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--debug"], {"debug"}),
        (["--debug", "--lr", "0.1", "--amp"], {"debug", "amp"}),
        (["--lr", "0.1", "--shift", "-0.5"], set()),
        (["--lr=0.1", "--kwargs", "a=1", "--dry"], {"dry"}),
        (["pos", "--name", "a=b"], set()),
        ([], set()),
    ],
)
def test_scan_flags(argv: list[str], expected: set[str]) -> None:
    assert scan_flags(argv) == expected


def test_a_bare_flag_is_true_for_a_bool_and_refused_for_others() -> None:
    assert flag_value("debug", False) is True
    with pytest.raises(RecordError, match="--lr is given without a value"):
        flag_value("lr", 0.1)


@pytest.mark.parametrize(
    ("default", "recorded", "tag", "value"),
    [
        ((0.9, 0.99), "[0.9, 0.99]", "json", (0.9, 0.99)),  # the default: itself, a tuple
        ([8, 4], "Tagged('json', '[8, 4]')", None, [8, 4]),  # as runs before arg_tags kept it
        ({"p": 0.5}, '{"p": 0.25}', "json", {"p": 0.25}),  # another default (computed)
        ((1, 2), "Tagged('json', '[3, 4]')", None, (3, 4)),
        ([8, 4], "32,16", None, "32,16"),  # given on the command line: a string, as recorded
        (1.0, 2, None, 2.0),
        ("sgd", "adam", None, "adam"),
    ],
)
def test_a_replay_gets_the_arg_value_its_run_got(
    default: object, recorded: object, tag: str | None, value: object
) -> None:
    got = replayed_arg("a", default, recorded, tag)
    assert got == value and type(got) is type(value)


def test_an_arg_kept_only_as_its_repr_fails_the_replay_when_it_is_not_the_default() -> None:
    class Opaque:
        pass

    with pytest.raises(ReplayError, match="repr"):
        replayed_arg("obj", Opaque(), "<Opaque object at 0x1>", "repr")
    numpy = pytest.importorskip("numpy")
    half = numpy.float32(0.5)
    assert type(replayed_arg("lr", half, 0.5, None)) is numpy.float32  # the default itself


def test_a_list_arg_is_kept_as_json_text_and_a_second_call_returns_the_value(
    tmp_path: Path,
) -> None:
    script = (
        "import florsql as flor\n"
        "w = flor.arg('widths', [16, 8])\n"
        "assert flor.arg('widths', [16, 8]) is w\n"
        "flor.log('n', len(w))\n"
    )
    repo = make_repo(tmp_path / "r", {"train.py": script})
    run_script(repo, "train.py")
    (doc,) = [json.loads((d / "run.json").read_text()) for d in run_dirs(repo)]
    assert doc["args"] == {"widths": "[16, 8]"} and doc["arg_tags"] == {"widths": "json"}


def test_a_list_arg_recorded_before_arg_tags_shows_as_its_json_text(tmp_path: Path) -> None:
    import florsql
    from florsql.store import layout

    script = "import florsql as flor\nw = flor.arg('widths', [16, 8])\nflor.log('n', len(w))\n"
    repo = make_repo(tmp_path / "r", {"train.py": script})
    run_script(repo, "train.py")
    (run,) = run_dirs(repo)
    doc = json.loads((run / "run.json").read_text())
    doc["args"] = {"widths": "Tagged('json', '[16, 8]')"}  # as florsql kept it before
    del doc["arg_tags"]
    layout.atomic_write_json(run / "run.json", doc)
    with florsql.connect(repo, replay="off") as con:
        assert con.execute("SELECT widths, n FROM logs").fetchall() == [("[16, 8]", 2)]
