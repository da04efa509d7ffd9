"""florsql's one rule for comparing names (florsql/fold.py) against its oracle, DuckDB's binder.

Two names are one exactly when DuckDB takes them for one identifier: ``fold`` (Python) and
``fold_sql`` (SQL text) must agree with each other and with DuckDB's own ``Column with name ...
already exists`` for every string, ASCII or not (``İ``, Cyrillic, the Kelvin sign, ``ß``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import florsql
from florsql.fold import fold, fold_sql
from tests.helpers import make_repo, run_script

#: letters whose Unicode case mappings differ between Python, DuckDB's lower() and ASCII
TRICKY = (
    "\u0130iI\u0131\u212aKk\u00df\u1e9e\u017fSs"
    "\u03a3\u03c3\u03c2\u0422\u0442\u0401\u0451\u01c5\u01c4\u01c6Aa_"
)
names = st.text(alphabet=st.sampled_from(TRICKY), min_size=1, max_size=4) | st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=6
)


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one_identifier(con: duckdb.DuckDBPyConnection, a: str, b: str) -> bool:
    """Whether DuckDB refuses a table with columns ``a`` and ``b`` (one name to it)."""
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE t ({_quote(a)} INT, {_quote(b)} INT)")
    except duckdb.CatalogException:
        return True
    return False


@settings(max_examples=300, deadline=None)
@given(a=names, b=names)
def test_two_names_are_one_exactly_when_duckdb_binds_them_as_one(
    con: duckdb.DuckDBPyConnection, a: str, b: str
) -> None:
    assert (fold(a) == fold(b)) == _one_identifier(con, a, b)


@settings(max_examples=300, deadline=None)
@given(name=names)
def test_the_sql_fold_is_the_python_fold(con: duckdb.DuckDBPyConnection, name: str) -> None:
    got = con.execute(f"SELECT {fold_sql('n')} FROM (SELECT $1::VARCHAR AS n)", [name]).fetchone()
    assert got == (fold(name),)


@pytest.mark.parametrize(
    ("a", "b", "one"),
    [
        ("valAcc", "VALACC", True),
        ("İx", "ix", False),  # Python's lower(): 'i̇x'; DuckDB's lower(): 'ix'
        ("Точность", "точность", False),  # both lower() fold Cyrillic; identifiers do not
        ("\u212a", "k", False),  # the Kelvin sign: Python's lower() makes it 'k'
        ("ß", "SS", False),
    ],
)
def test_names_python_and_duckdb_lower_would_merge(
    con: duckdb.DuckDBPyConnection, a: str, b: str, one: bool
) -> None:
    assert (fold(a) == fold(b)) is one
    assert _one_identifier(con, a, b) is one


# -- the whole chain: record, index, catalog, pivot, SQL ------------------------------------------

#: one script each, logging its name once, in an epoch loop and at the top (as args, loops too)
CHAIN_NAMES = (
    "\u0130x",  # İx
    "ix",
    "IX",
    "i\u0307x",  # i with a combining dot: what Python's lower() makes of İx
    "\u0422\u043e\u0447\u043d\u043e\u0441\u0442\u044c",  # Точность
    "\u0442\u043e\u0447\u043d\u043e\u0441\u0442\u044c",  # точность
    "\u212aelvin",  # the Kelvin sign
    "kelvin",
    "Stra\u00dfe",
    "STRASSE",
)
CHAIN_SCRIPT = """
import florsql as flor
{arg} = flor.arg({arg_name!r}, {k})
for {loop} in flor.loop({loop_name!r}, range(2)):
    flor.log({name!r}, {k} * 10 + {loop})
flor.log({name!r} + "_end", {k})
"""


@pytest.fixture(scope="module")
def chain_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = {
        f"s{k}.py": CHAIN_SCRIPT.format(
            name=name, k=k, arg="a", arg_name=f"{name}_arg", loop="e", loop_name=f"{name}_loop"
        )
        for k, name in enumerate(CHAIN_NAMES)
    }
    repo = make_repo(tmp_path_factory.mktemp("fold-chain") / "proj", files)
    for filename in sorted(files):
        run_script(repo, filename)
    return repo


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _files_of(name: str) -> list[str]:
    return sorted(f"s{k}.py" for k, other in enumerate(CHAIN_NAMES) if fold(other) == fold(name))


def test_every_name_reads_the_values_of_the_names_it_folds_to_and_no_other(
    chain_repo: Path,
) -> None:
    with florsql.connect(chain_repo) as con:
        cur = con.cursor()
        columns = [d[0] for d in cur.execute("SELECT * FROM logs LIMIT 0").description]
        for suffix in ("", "_end", "_arg", "_loop"):
            spellings = {fold(n + suffix) for n in CHAIN_NAMES}
            got = {fold(c) for c in columns if fold(c) in spellings}
            assert got == spellings, suffix  # one column per folded name, none merged
        for name in CHAIN_NAMES:
            col = _quoted(name)
            rows = cur.execute(
                f"SELECT filename, {col} FROM logs WHERE {col} IS NOT NULL ORDER BY 1, 2"
            ).fetchall()
            want = [(f, int(f[1:-3]) * 10 + e) for f in _files_of(name) for e in range(2)]
            assert rows == sorted(want), name
            # the same name in upper and lower case where only ASCII letters change
            for other in {name.upper(), name.lower()}:
                if fold(other) == fold(name) and other != name:
                    again = cur.execute(
                        f"SELECT filename, {_quoted(other)} FROM logs "
                        f"WHERE {_quoted(other)} IS NOT NULL ORDER BY 1, 2"
                    ).fetchall()
                    assert again == rows, (name, other)
            end = _quoted(name + "_end")
            rows = cur.execute(
                f"SELECT filename, {end} FROM logs WHERE {end} IS NOT NULL ORDER BY 1"
            ).fetchall()
            assert rows == [(f, int(f[1:-3])) for f in _files_of(name)], name
            arg, loop = _quoted(name + "_arg"), _quoted(name + "_loop")
            rows = cur.execute(
                f"SELECT DISTINCT filename, {arg} FROM logs WHERE {arg} IS NOT NULL ORDER BY 1"
            ).fetchall()
            assert rows == [(f, int(f[1:-3])) for f in _files_of(name)], name
            rows = cur.execute(
                f"SELECT filename, max({loop}) FROM logs WHERE {loop} IS NOT NULL GROUP BY 1 "
                "ORDER BY 1"
            ).fetchall()
            assert rows == [(f, 1) for f in _files_of(name)], name


def test_the_record_api_refuses_only_names_that_fold_alike(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "proj",
        {
            "ok.py": "import florsql as flor\n"
            + "".join(f"flor.log({n!r}, 1)\n" for n in ("\u0130x", "i\u0307x", "Stra\u00dfe")),
            "bad.py": "import florsql as flor\nflor.log('valAcc', 1)\nflor.log('VALACC', 2)\n",
        },
    )
    run_script(repo, "ok.py")
    failed = run_script(repo, "bad.py", check=False)
    assert failed.returncode != 0 and "differs only in case" in failed.stderr


def test_an_unknown_name_differing_in_the_case_of_a_non_ascii_letter_is_suggested(
    chain_repo: Path,
) -> None:
    with florsql.connect(chain_repo) as con, pytest.raises(florsql.errors.PlanError) as info:
        con.cursor().execute('SELECT "\u0442\u043e\u0447\u043d\u043e\u0441\u0442\u042c" FROM logs')
    assert "Did you mean" in str(info.value)
