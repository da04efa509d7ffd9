from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from florsql.errors import RecordError
from florsql.record.args import coerce, flag_value, scan_argv, scan_flags


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
