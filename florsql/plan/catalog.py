"""The catalog: the columns of ``logs`` and the schemas of the other relations.

``logs`` has, in this order: the run metadata columns, one column per loop (its iteration index,
NULL outside that loop), one per arg (constant within a run), and one per log name: every name
some run logged, plus every **hindsight** name, a ``flor.log("<name>", ...)`` in the current
working-tree version of a file some run executed (its main script or a repository module it
imported, ``run_meta.files``), which some of those runs never logged.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from sqlglot.schema import MappingSchema

from florsql.fold import fold, fold_sql
from florsql.plan.hindsight import (
    ScriptCode,
    merge_code,
    module_parts,
    scan_script,
    statement_fingerprints,
)
from florsql.plan.stats import Generation, loop_names, string_literal
from florsql.store.schema import RUN_CORE, RUN_EXTRA

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "META_COLUMNS",
    "RELATIONS",
    "Catalog",
    "LogsColumn",
    "build_catalog",
    "common_type",
    "log_type",
    "scan_scripts",
    "shared_column",
]

META_COLUMNS = ("projid", "run_id", "tstamp", "vid", "filename")
#: Relations a query may read besides ``logs``.
_T = TypeVar("_T")

RELATIONS = (
    "runs",
    "args",
    "versions",
    "loops",
    "checkpoints",
    "replays",
    "log_records",
    "data_inputs",
)
Kind = Literal["meta", "loop", "arg", "log"]


@dataclass(frozen=True)
class LogsColumn:
    """One column of ``logs``.

    Attributes:
        name: the column name.
        kind: ``meta``, ``loop``, ``arg`` or ``log``.
        sql_type: its DuckDB type (``"NULL"`` for a hindsight name nothing has computed yet).
        hindsight: for a log, whether some runs of a script whose current code logs it lack it.
        recorded_runs: how many runs have a value (recorded or replayed).
        lacking_runs: how many runs of scripts that log it now have no value.
        spellings: for a log, every spelling runs recorded it under (names ignore case: ``loss``
            and ``Loss`` are one column, ``name`` the spelling of the earliest run).
        shared: the other kinds the name also has in other scripts' runs, with their types: a
            loop or arg ``x`` of one script and a log ``x`` of another (a run cannot log its own
            arg's or loop's name) are one column holding both (:func:`shared_column`).
    """

    name: str
    kind: Kind
    sql_type: str
    hindsight: bool = False
    recorded_runs: int = 0
    lacking_runs: int = 0
    spellings: tuple[str, ...] = ()
    shared: tuple[tuple[Kind, str], ...] = ()
    #: of ``lacking_runs``, those that recorded it, but not in every iteration today's
    #: statement runs in (:func:`_lacking_some`)
    partial_runs: int = 0

    @property
    def run_level(self) -> bool:
        """Constant within a run: metadata and args (not an arg other runs log)."""
        return self.kind in ("meta", "arg") and not self.shared


_INTEGERS = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)
_NUMBERS = _INTEGERS | {"FLOAT", "DOUBLE", "BOOLEAN"}


def common_type(types: list[str] | tuple[str, ...]) -> str:
    """One SQL type holding values of ``types`` exactly where it can, as :func:`log_type` does.

    Example:
        >>> common_type(["BIGINT", "INTEGER"]), common_type(["DOUBLE", "BIGINT", "NULL"])
        ('BIGINT', 'DOUBLE')
        >>> common_type(["VARCHAR", "BIGINT"]), common_type(["BOOLEAN"]), common_type(["NULL"])
        ('VARCHAR', 'BOOLEAN', 'NULL')
    """
    kinds = set(types) - {"NULL"}
    if not kinds:
        return "NULL"
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= _INTEGERS:
        return "BIGINT"
    if kinds <= _NUMBERS:
        return "DOUBLE"
    return "VARCHAR"


def shared_column(first: LogsColumn, others: list[LogsColumn]) -> LogsColumn:
    """The column of a name that is a loop or arg of some runs and an arg or log of others: the
    first kind names it, the others' values fill the rows where it has none, in one type."""
    shared = tuple((o.kind, o.sql_type) for o in others)
    spellings = next((o.spellings for o in others if o.kind == "log"), first.spellings)
    sql_type = common_type([first.sql_type, *(t for _, t in shared)])
    if sql_type == "NULL":
        sql_type = "VARCHAR"  # an arg or loop has values: never an untyped NULL
    logs = [o for o in others if o.kind == "log"]
    return LogsColumn(
        first.name,
        first.kind,
        sql_type,
        first.hindsight or any(o.hindsight for o in logs),  # the log's runs lacking it replay
        first.recorded_runs + sum(o.recorded_runs for o in logs),
        first.lacking_runs + sum(o.lacking_runs for o in logs),
        spellings,
        shared,
        first.partial_runs + sum(o.partial_runs for o in logs),
    )


def log_type(vtypes: list[str] | tuple[str, ...]) -> str:
    """The SQL type of a log name from the value types it was stored with.

    Example:
        >>> log_type(["int"]), log_type(["float", "int"]), log_type(["bool"]), log_type(["str"])
        ('BIGINT', 'DOUBLE', 'BOOLEAN', 'VARCHAR')
        >>> log_type(["null"])
        'NULL'
    """
    kinds = set(vtypes) - {"null"}
    if not kinds:
        return "NULL"  # only None so far: an untyped NULL, usable in any expression
    if kinds <= {"bool"}:
        return "BOOLEAN"
    if kinds <= {"int"}:
        return "BIGINT"
    if kinds <= {"int", "float", "bool"}:
        return "DOUBLE"
    return "VARCHAR"


@dataclass(frozen=True)
class Catalog:
    """What a query can name. Built by :func:`build_catalog`, once per index generation."""

    columns: tuple[LogsColumn, ...]
    relations: dict[str, dict[str, str]]
    scripts: dict[str, ScriptCode]  # every file some run executed that logs something now
    generation: Generation | None = None
    nullable_logs: frozenset[str] = frozenset()  # names some run logged as None
    #: Per log name in today's code (folded, florsql.fold): the fingerprint of its statements
    #: (:func:`florsql.plan.hindsight.statement_fingerprints`); replayed values count only
    #: where a replay computed the name with this fingerprint.
    fingerprints: dict[str, str] = field(default_factory=dict, compare=False)
    #: Files some run executed that do not parse today (path -> "line N: message"): the names
    #: they log are unknown until they do (:func:`unparsed_scripts`)
    unparsed: dict[str, str] = field(default_factory=dict, compare=False)
    #: The repository (for :meth:`unexecuted`)
    repo: Path | None = field(default=None, compare=False)
    _by_name: dict[str, LogsColumn] = field(default_factory=dict, compare=False, repr=False)
    _memo: dict[str, MappingSchema] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({fold(c.name): c for c in self.columns})

    def unexecuted(self, name: str) -> list[str]:
        """Today's Python files of the repository that log ``name`` (by its literal) though no
        recorded run executed them (a module today's code added): its name is no column,
        since no run has a version of that file to replay. For the unknown-column error only
        (session 54: "Unknown column 'val_acc'" said nothing of today's ``utils.py`` logging
        it)."""
        import re
        import subprocess

        if self.repo is None:
            return []
        try:
            listed = subprocess.run(
                ["git", "ls-files", "-co", "--exclude-standard", "--", "*.py"],
                cwd=self.repo,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            return []
        said = re.compile(r"\.log\(\s*[\"']" + re.escape(name) + r"[\"']", re.IGNORECASE)
        out = []
        for rel in listed[:2000]:
            if rel in self.scripts:
                continue
            try:
                text = (self.repo / rel).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if said.search(text):
                out.append(rel)
        return out

    def column(self, name: str) -> LogsColumn | None:
        """The column called ``name``, in any case (``valacc`` finds ``valAcc``)."""
        return self._by_name.get(fold(name))

    def canonical(self, name: str) -> str:
        """The spelling of the column ``name`` names (in any case); ``name`` if none does."""
        column = self.column(name)
        return column.name if column is not None else name

    def names(self, *kinds: Kind) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if not kinds or c.kind in kinds)

    @property
    def loops(self) -> tuple[str, ...]:
        return self.names("loop")

    def code_of(self, files: tuple[str, ...] | list[str]) -> ScriptCode | None:
        """The log statements of ``files`` (a run's files) as one :class:`ScriptCode`."""
        return merge_code([self.scripts[f] for f in files if f in self.scripts])

    def fingerprint(self, name: str) -> str:
        """The fingerprint of today's statements for ``name`` (``""`` if none logs it)."""
        return self.fingerprints.get(fold(name), "")

    def hindsight_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.hindsight)

    def schema(self) -> dict[str, object]:
        """Every relation's columns and types, ``logs`` included (for sqlglot's qualify)."""
        logs = {c.name: (c.sql_type if c.sql_type != "NULL" else "VARCHAR") for c in self.columns}
        return {**self.relations, "logs": logs}

    def sqlglot_schema(self) -> MappingSchema:
        """:meth:`schema` as a sqlglot schema, built once (normalizing it costs milliseconds)."""
        if "schema" not in self._memo:
            # sqlglot reads each key as SQL: quoted, a name keeps its spaces and quotes
            # (`" pad "` unquoted read as `pad`, and `SELECT *` over it failed)
            quoted: dict[str, object] = {
                table: {_quoted(c): t for c, t in cols.items()}
                for table, cols in self.schema().items()
                if isinstance(cols, dict)
            }
            self._memo["schema"] = MappingSchema(quoted, dialect="duckdb")
        return self._memo["schema"]

    def suggest(self, name: str, candidates: list[str] | tuple[str, ...] | None = None) -> str:
        """ " Did you mean 'x'?" for the closest known name, or ``""``.

        Example:
            >>> Catalog((LogsColumn("grad_norm", "log", "DOUBLE"),), {}, {}).suggest("gradnorm")
            " Did you mean 'grad_norm'?"
        """
        pool = list(candidates if candidates is not None else self.names())
        close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
        for key in (fold, _loose):  # also a name differing in the case of a non-ASCII letter
            if not close:
                keyed = {key(p): p for p in pool}
                close = [keyed[key(name)]] if key(name) in keyed else []
        return f" Did you mean '{close[0]}'?" if close else ""


def _loose(name: str) -> str:
    """``name`` without case, accents or compatibility forms (``İx``, ``ix`` and ``ＩＸ`` alike):
    for suggestions only, never to match a column (florsql/fold.py)."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class RecordedMemo:
    """Answers about the recorded runs alone (relation shapes, loop and arg names, which runs
    lack a name, anchors), kept while the recorded sources are the same: a replay's refresh or
    an edited script changes none of them, and each costs a DuckDB statement (the catalog is
    read twice around every replay)."""

    def __init__(self) -> None:
        self.key: tuple[int, int, int] | None = None
        self.answers: dict[object, Any] = {}

    def get(self, generation: Generation | None, what: object, compute: Callable[[], _T]) -> _T:
        if generation is None:
            return compute()
        key = (generation.sources, generation.mtime_sum, generation.size_sum)
        if key != self.key:
            self.key, self.answers = key, {}
        if what not in self.answers:
            self.answers[what] = compute()
        return cast(_T, self.answers[what])


def build_catalog(
    con: duckdb.DuckDBPyConnection,
    repo: Path,
    generation: Generation | None = None,
    scripts: dict[str, ScriptCode] | None = None,
    memo: RecordedMemo | None = None,
) -> Catalog:
    """Read the catalog from the index (helper relations built) and the working tree
    (``scripts``: :func:`scan_scripts`, when the caller scanned it already; ``memo``: what
    an earlier call learnt about the same recorded runs).

    Example:
        >>> cat = build_catalog(con, repo)  # doctest: +SKIP
        >>> [c.name for c in cat.columns if c.kind == "loop"]  # doctest: +SKIP
        ['epoch', 'step']
    """
    memo = memo or RecordedMemo()

    def recorded(name: str) -> dict[str, str]:  # 'replays' changes shape with the first replay
        return memo.get(generation, ("describe", name), lambda: _describe(con, name))

    relations = {
        name: _describe(con, name) if name == "replays" else recorded(name)
        for name in (*RELATIONS, "ctx_path")
    }
    runs = relations["runs"]
    cols: list[LogsColumn] = [LogsColumn(n, "meta", runs.get(n, "VARCHAR")) for n in META_COLUMNS]
    loops = memo.get(generation, "loops", lambda: loop_names(con))
    cols += [LogsColumn(n, "loop", "BIGINT") for n in loops]
    arg_names = memo.get(
        generation,
        "args",
        lambda: {
            r[0] for r in con.execute(f"SELECT DISTINCT {fold_sql('name')} FROM args").fetchall()
        },
    )
    skip = set(RUN_CORE) | (set(RUN_EXTRA) - arg_names)
    cols += [LogsColumn(n, "arg", t) for n, t in sorted(runs.items()) if fold(n) not in skip]
    scripts = scan_scripts(con, repo) if scripts is None else scripts
    cols += _log_columns(con, scripts, memo, generation, repo)
    unique: dict[str, LogsColumn] = {}
    shadowed: dict[str, list[LogsColumn]] = {}
    for c in cols:  # names ignore case, as SQL identifiers do
        key = fold(c.name)
        if key not in unique:
            unique[key] = c
        elif unique[key].kind != "meta" and (c.sql_type != "NULL" or c.hindsight):
            # a log named like another script's arg (a run may not log these): also one that
            # only today's code has (a hindsight log), whose runs must replay it
            shadowed.setdefault(key, []).append(c)
    for key, others in shadowed.items():
        unique[key] = shared_column(unique[key], others)
    nullable = con.execute("SELECT name FROM __flor_names WHERE list_contains(vtypes, 'null')")
    nullable_logs = frozenset(r[0] for r in nullable.fetchall())
    return Catalog(
        repo=repo,
        unparsed=unparsed_scripts(con, repo, scripts),
        columns=tuple(unique.values()),
        relations=relations,
        scripts=scripts,
        generation=generation,
        nullable_logs=nullable_logs,
        fingerprints=code_fingerprints(con, repo, scripts, memo, generation),
    )


def code_fingerprints(
    con: duckdb.DuckDBPyConnection,
    repo: Path,
    scripts: dict[str, ScriptCode],
    memo: RecordedMemo | None = None,
    generation: Generation | None = None,
) -> dict[str, str]:
    """Today's statement fingerprints (:func:`florsql.plan.hindsight.statement_fingerprints`)
    with their anchors and the repository modules they read that some recorded version lacks
    (session 47: a module new today, which a replay of such a version runs as it is now)."""
    anchors = recorded_anchors(con, scripts, memo, generation, repo)
    modules = None
    if any(code.modules for code in scripts.values()):
        vids = [r[0] for r in con.execute("SELECT DISTINCT vid FROM run_meta").fetchall()]
        modules = module_parts(repo, scripts.values(), _versions_lack(repo, vids))
    # (the same question as the catalog's, and the same memo key: asked once)
    pairs = tuple((f, n) for f, code in scripts.items() for n in code.names())
    lacking = (
        _lacking(con, pairs)
        if memo is None
        else memo.get(generation, ("lacking", pairs), lambda: _lacking(con, pairs))
    )
    some = {fold(n) for n, k in lacking.items() if k}
    complete = {fold(n) for _, n in pairs} - some
    return statement_fingerprints(scripts.values(), anchors, modules, complete)


@lru_cache(maxsize=256)
def _python_files(repo: str, vid: str) -> frozenset[str]:
    """The Python files of version ``vid`` (a full commit id: its files never change)."""
    from florsql.versions import files_at

    return frozenset(p for p in files_at(Path(repo), vid) if p.endswith(".py"))


def _versions_lack(repo: Path, vids: list[str]) -> Callable[[str, str | None], bool]:
    """Whether some of the versions ``vids`` lacks a Python file, or (``name`` given) a
    top-level binding ``name`` in it (one that cannot be read counts as lacking it)."""
    root = str(Path(repo).resolve())
    listings: dict[str, frozenset[str] | None] = {}
    for vid in vids:
        try:
            listings[str(vid)] = _python_files(root, str(vid))
        except Exception:  # a version git cannot read: its replays fail on their own
            listings[str(vid)] = None

    def lacks(path: str, name: str | None) -> bool:
        for vid, files in listings.items():
            if files is None or path not in files:
                return True
            if name is not None:
                bound = _bindings(root, vid, path)
                if bound is None or (name not in bound and "*" not in bound):
                    return True
        return False

    return lacks


@lru_cache(maxsize=1024)
def _bindings(repo: str, vid: str, path: str) -> frozenset[str] | None:
    """The names module ``path`` of version ``vid`` binds at its top level (None: unreadable)."""
    import ast

    from florsql.propagate.modules import top_bindings
    from florsql.versions import file_at

    try:
        return top_bindings(ast.parse(file_at(Path(repo), vid, path)))
    except Exception:  # not there, not Python any more: as lacking
        return None


def recorded_anchors(
    con: duckdb.DuckDBPyConnection,
    scripts: dict[str, ScriptCode],
    memo: RecordedMemo | None = None,
    generation: Generation | None = None,
    repo: Path | None = None,
) -> frozenset[str]:
    """The names (folded) of the log statements beside today's statements of other names
    that some run recorded: anchors where an old version logs them, so part of the
    fingerprints (:func:`florsql.plan.hindsight.statement_fingerprints`). With ``repo``, a run
    whose version of the anchor's file is today's text makes no anchor: no replay places a
    statement into today's very code (session 57, sweep AK: a new run of today's script that
    recorded a new name beside another changed the other's fingerprint, and every value
    replayed for it stopped counting: a query that replayed while the run recorded answered
    without them, and the next one replayed it all again)."""
    files: dict[str, set[str]] = {}
    for filename, code in scripts.items():
        for file, _, other, _ in code.anchors:
            files.setdefault(other, set()).add(file or filename)
    names = sorted(files)
    if not names:
        return frozenset()
    if memo is not None:
        # (today's texts in the key: an edit decides anew which versions are today's)
        texts = tuple(sorted((f, code.digest) for f, code in scripts.items()))
        return memo.get(
            generation, ("anchors", tuple(names), texts), lambda: _anchors(con, files, repo)
        )
    return _anchors(con, files, repo)


def _anchors(
    con: duckdb.DuckDBPyConnection, files: dict[str, set[str]], repo: Path | None
) -> frozenset[str]:
    from florsql.versions import text_reader

    values = ", ".join(f"({string_literal(n)})" for n in sorted(files))
    rows = con.execute(
        f"""SELECT DISTINCT c.name, m.vid FROM (VALUES {values}) AS c(name)
            JOIN log_records v ON {fold_sql("v.name")} = c.name
            JOIN run_meta m ON m.run_id = v.run_id"""
    ).fetchall()
    text = text_reader(repo)

    def today_s(vid: object, name: str) -> bool:
        if repo is None or vid is None:
            return False
        return all(
            (now := text(None, f)) is not None and now == text(str(vid), f) for f in files[name]
        )

    return frozenset(str(n) for n, vid in rows if not today_s(vid, str(n)))


def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE {relation}").fetchall()
    return {r[0]: r[1] for r in rows}


def scan_scripts(con: duckdb.DuckDBPyConnection, repo: Path) -> dict[str, ScriptCode]:
    """Today's log statements of every file some run executed that logs something now."""
    rows = con.execute(
        "SELECT DISTINCT unnest(files) AS f FROM run_meta WHERE files IS NOT NULL ORDER BY 1"
    ).fetchall()
    out = {}
    for (filename,) in rows:
        code = scan_script(repo, filename)
        if code is not None and code.sites:
            out[filename] = code
    return out


def unparsed_scripts(
    con: duckdb.DuckDBPyConnection, repo: Path, scripts: dict[str, ScriptCode]
) -> dict[str, str]:
    """Files some run executed that exist today and do not parse (path -> "line N: message"),
    so that a name only they log is said to be unknown for that reason (session 45: a line left
    unfinished at the end of train.py made its statements "Unknown column" without a word on
    why). Only the files :func:`scan_scripts` found nothing in are read again."""
    import ast

    from florsql.plan.hindsight import scan_script

    rows = con.execute(
        "SELECT DISTINCT unnest(files) AS f FROM run_meta WHERE files IS NOT NULL ORDER BY 1"
    ).fetchall()
    out = {}
    for (filename,) in rows:
        if filename in scripts or not str(filename).endswith(".py"):
            continue
        if scan_script(repo, filename) is not None:
            continue
        try:
            text = (Path(repo) / filename).read_text(encoding="utf-8")
            ast.parse(text)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            continue
        except SyntaxError as e:
            out[filename] = f"line {e.lineno}: {e.msg}"
    return out


def _log_columns(
    con: duckdb.DuckDBPyConnection,
    scripts: dict[str, ScriptCode],
    memo: RecordedMemo,
    generation: Generation | None,
    repo: Path | None = None,
) -> list[LogsColumn]:
    stats = {
        fold(name): (name, list(vtypes), runs, tuple(spellings))
        for name, vtypes, runs, spellings in con.execute(
            "SELECT name, vtypes, runs, spellings FROM __flor_names"
        ).fetchall()
    }
    spelled: dict[str, str] = {}  # a name only code has: spelled as the first script has it
    for filename in sorted(scripts):
        for name in scripts[filename].names():
            spelled.setdefault(fold(name), name)
    lacking: dict[str, tuple[str, int]] = {}  # folded name -> (spelling in code, runs lacking)
    pairs = tuple((f, n) for f, code in scripts.items() for n in code.names())
    for name, n in memo.get(generation, ("lacking", pairs), lambda: _lacking(con, pairs)).items():
        key = fold(name)
        before = lacking.get(key, (name, 0))[1]
        lacking[key] = (spelled.get(key, name), before + n)
    # each statement in a loop: today's runs in every iteration (``every``), or under
    # conditions a version may not share (``if epoch % 3 == 0`` where it had ``% 2``)
    chained = tuple(
        (f, site.name, "/".join(site.chain) if site.chain else "*", fold(site.name) in code.every)
        for f, code in scripts.items()
        for site in code.sites
        # (a module's function no statement of its file calls: its loops are its callers',
        # in another file; any chain a run logged its name at, session 54)
        if site.chain or site.chain is None
    )
    some = memo.get(
        generation, ("lacking some", chained), lambda: _lacking_some(con, chained, repo)
    )
    partial: dict[str, int] = {}
    for name, n in some.items():
        key = fold(name)
        before = lacking.get(key, (name, 0))[1]
        lacking[key] = (spelled.get(key, name), before + n)
        partial[key] = partial.get(key, 0) + n
    out = []
    for key in sorted(set(stats) | set(lacking)):
        name, vtypes, runs, spellings = stats[key] if key in stats else (lacking[key][0], [], 0, ())
        missing = lacking.get(key, (name, 0))[1]
        column = LogsColumn(name, "log", log_type(vtypes), missing > 0, runs, missing, spellings)
        out.append(replace(column, partial_runs=partial.get(key, 0)))
    return out


def _lacking_some(
    con: duckdb.DuckDBPyConnection,
    sites: tuple[tuple[str, str, str, bool], ...],
    repo: Path | None = None,
) -> dict[str, int]:
    """Per name whose statement today runs in every iteration of its loop (``sites``: file,
    name, chain, and whether it does, :attr:`ScriptCode.every`), or whose version logged it
    under other conditions than today's statement has (:func:`florsql.plan.guards.
    other_conditions`: ``if epoch % 2 == 0:`` where today's is under ``if epoch % 3 == 0:``,
    session 53; today's may log in iterations the old one skipped, and only a replay can
    tell): how many runs that executed the file recorded it,
    but not in every outer iteration they ended of that chain (the old version logged it under
    ``if epoch % 2 == 0:``, or in a helper it called only sometimes). Those iterations lack it:
    the replay set (per outer iteration) computes them. Before session 51 only runs without
    any value counted, and such iterations stayed NULL, said nowhere. A run that entered its
    outer loop more than once is left out (two passes number their iterations alike: the
    second pass's epoch 1 is not the first's), and so is an iteration the run did not end (it
    was killed or failed in it). So is a run whose version logs the name with another
    statement than today's (:func:`florsql.plan.guards.other_statement`): its recorded values
    are of another definition, and today's would not be mixed in."""
    if not sites:
        return {}
    values = ", ".join(
        f"({string_literal(f)}, {string_literal(n)}, {string_literal(c)})"
        for f, n, c in dict.fromkeys((f, n, c) for f, n, c, _ in sites)
    )
    every = {(f, fold(n), c) for f, n, c, always in sites if always}
    rows = con.execute(
        f"""WITH s(filename, name, chain) AS (VALUES {values})
            SELECT DISTINCT s.name, m.run_id, m.vid, s.filename, s.chain, c.chain, m.files
            FROM s JOIN run_meta m ON list_contains(m.files, s.filename)
            JOIN __flor_chains c ON c.run_id = m.run_id AND (c.chain = s.chain OR s.chain = '*')
            WHERE c.outer_iteration IS NOT NULL
            AND EXISTS (SELECT 1 FROM log_records r JOIN __flor_ctx x ON x.run_id = r.run_id
                        AND x.ctx_id = r.ctx_id WHERE r.run_id = m.run_id AND x.chain = c.chain
                        AND {fold_sql("r.name")} = {fold_sql("s.name")})
            AND CASE WHEN NOT contains(c.chain, '/') THEN NOT EXISTS (
                SELECT 1 FROM __flor_cover v WHERE v.run_id = m.run_id
                AND v.name = {fold_sql("s.name")} AND v.recorded
                AND v.outer_loop = c.outer_loop AND v.outer_iteration = c.outer_iteration)
            -- in an inner loop: an inner iteration of that outer one without a record
            ELSE EXISTS (
                SELECT 1 FROM __flor_ctx x WHERE x.run_id = m.run_id AND x.chain = c.chain
                AND x.outer_loop = c.outer_loop AND x.outer_iteration = c.outer_iteration
                AND NOT EXISTS (SELECT 1 FROM log_records r WHERE r.run_id = x.run_id
                                AND r.ctx_id = x.ctx_id
                                AND {fold_sql("r.name")} = {fold_sql("s.name")})) END
            AND NOT EXISTS (SELECT 1 FROM __flor_open o WHERE o.run_id = m.run_id
                            AND o.loop_name = c.outer_loop AND o.iteration = c.outer_iteration)
            AND NOT EXISTS (SELECT 1 FROM __flor_times t WHERE t.run_id = m.run_id
                            AND t.loop_name = c.outer_loop AND t.entries > 1)
            AND NOT EXISTS (SELECT 1 FROM args a WHERE a.run_id = m.run_id
                            AND {fold_sql("a.name")} = {fold_sql("s.name")})"""
    ).fetchall()
    from florsql.plan.guards import other_conditions, other_statement
    from florsql.propagate.modules import guard_modules_differ, helper_calls_differ
    from florsql.versions import text_reader

    text = text_reader(repo)

    def other_modules(
        vid: str, files: list[str], filename: str, today: str, old: str, name: str
    ) -> bool:
        """What the guards read from other modules is bound otherwise in ``vid`` (session
        55: ``from config import EVERY``, ``config.py`` changed), or a module's function
        holding the statement is called by the run's other ``files`` under other
        conditions."""

        def mine(p: str) -> str | None:
            return text(None, p)

        def theirs(p: str) -> str | None:
            return text(vid, p)

        return (
            guard_modules_differ(mine, theirs, filename, today, old, name) is not None
            or helper_calls_differ(mine, theirs, files, filename, today, old, name) is not None
        )

    runs: dict[str, set[str]] = {}
    for name, run_id, vid, filename, site_chain, chain, files in rows:
        today, old = text(None, filename), text(vid, filename)
        at = tuple(chain.split("/"))
        if (filename, fold(name), site_chain) not in every and not (
            today
            and old
            and (
                other_conditions(today, old, name, at)
                or other_modules(vid, files, filename, today, old, name)
            )
        ):
            continue  # guarded today as in its version: it lacks the name where today's would
        if today and old and other_statement(today, old, name, at) is not None:
            continue
        runs.setdefault(name, set()).add(run_id)
    return {name: len(ids) for name, ids in runs.items()}


def _lacking(con: duckdb.DuckDBPyConnection, pairs: tuple[tuple[str, str], ...]) -> dict[str, int]:
    """Per name in current code (``pairs``: file, name): how many runs that executed a file
    logging it never recorded it, a run with an arg of that name aside (its rows read the arg;
    before s37 such runs counted as lacking it and replayed). Replayed values do not count: a
    run whose replay covered some iterations still lacks the others, and the replay set (per
    outer iteration) decides what is left to compute."""
    if not pairs:
        return {}
    values = ", ".join(f"({string_literal(f)}, {string_literal(n)})" for f, n in pairs)
    rows = con.execute(
        f"""SELECT c.name, count(DISTINCT m.run_id) FILTER (WHERE NOT EXISTS (
                SELECT 1 FROM log_records v WHERE v.run_id = m.run_id
                AND {fold_sql("v.name")} = {fold_sql("c.name")}) AND NOT EXISTS (
                SELECT 1 FROM args a WHERE a.run_id = m.run_id
                AND {fold_sql("a.name")} = {fold_sql("c.name")}))
            FROM (VALUES {values}) AS c(filename, name)
            JOIN run_meta m ON list_contains(m.files, c.filename) GROUP BY c.name"""
    ).fetchall()
    return {name: int(n) for name, n in rows}
