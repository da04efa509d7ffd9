"""The type every front end advertises for a column is the type a query over it returns.

A hindsight column no replay has computed yet holds DuckDB's untyped NULL in query results (any
expression accepts it: ``avg(w2)`` works before and after the replay). ``information_schema``
said ``VARCHAR`` for it, Flight SQL's ``TYPE_NAME`` and the ``florsql.type`` metadata said
``"NULL"`` (DuckDB's quoted spelling), and ``SHOW COLUMNS`` said ``NULL``. Now every surface says
``NULL`` until a replay computes values, then every one says their type.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa

import florsql
from tests.test_flight_support import recorded_repo, running_server

TYPE_NAME = b"ARROW:FLIGHT:SQL:TYPE_NAME"
RELATIONS = ("logs", "runs", "args", "loops")


def _in_process(repo: Path) -> dict[str, dict[str, dict[str, str]]]:
    """Per surface, per relation, per column: the type it advertises or returns."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    with florsql.connect(repo, replay="off") as con, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
        ).fetchall()
        out["information_schema"] = {r: {c: t for n, c, t in rows if n == r} for r in RELATIONS}
        out["show columns"] = {}
        out["description"] = {}
        out["florsql.type"] = {}
        for rel in RELATIONS:
            shown = con.execute(f"SHOW COLUMNS FROM {rel}").fetchall()
            out["show columns"][rel] = {r[0]: r[1] for r in shown}
            cur = con.execute(f"SELECT * FROM {rel}")
            out["description"][rel] = {d[0]: d[1] for d in cur.description or ()}
            table = cur.fetch_arrow_table()
            out["florsql.type"][rel] = {
                f.name: (f.metadata or {})[b"florsql.type"].decode() for f in table.schema
            }
    return out


def _over_flight(repo: Path) -> dict[str, dict[str, dict[str, str]]]:
    out: dict[str, dict[str, dict[str, str]]] = {"get_objects": {}, "table schema": {}}
    out["query schema"] = {}
    with running_server(repo, replay="off") as server, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uri = f"grpc://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
        with adbc.connect(uri, autocommit=True) as con, con.cursor() as cur:
            objects = con.adbc_get_objects(depth="columns").read_all().to_pylist()
            for schema in objects[0]["catalog_db_schemas"]:
                for t in schema["db_schema_tables"]:
                    if t["table_name"] in RELATIONS:
                        out["get_objects"][t["table_name"]] = {
                            c["column_name"]: c["xdbc_type_name"] for c in t["table_columns"]
                        }
            for rel in RELATIONS:
                schema = con.adbc_get_table_schema(rel)
                out["table schema"][rel] = {f.name: f.metadata[TYPE_NAME].decode() for f in schema}
                cur.execute(f"SELECT * FROM {rel}")
                got: pa.Table = cur.fetch_arrow_table()
                out["query schema"][rel] = {
                    f.name: f.metadata[TYPE_NAME].decode() for f in got.schema
                }
    return out


def _agree(surfaces: dict[str, dict[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
    """Every surface's types, checked equal to the query results' (``description``)."""
    want = surfaces["description"]
    for name, got in surfaces.items():
        assert got == want, f"{name} disagrees with the query results"
    return want


def test_every_front_end_advertises_the_type_queries_return(tmp_path: Path) -> None:
    repo = recorded_repo(tmp_path / "proj")
    before = _agree({**_in_process(repo), **_over_flight(repo)})
    assert before["logs"]["w2"] == "NULL"  # the hindsight column, not computed yet
    assert before["logs"]["loss"] == "DOUBLE" and before["runs"]["lr"] == "DOUBLE"
    with florsql.connect(repo, replay="auto") as con:  # the replay computes w2 for both runs
        assert con.execute("SELECT count(w2) FROM logs").fetchall() == [(6,)]
    after = _agree({**_in_process(repo), **_over_flight(repo)})
    assert after["logs"]["w2"] == "DOUBLE"
    assert {**after["logs"], "w2": "NULL"} == before["logs"]


def test_an_untyped_null_inside_a_type_is_named_null(tmp_path: Path) -> None:
    """DuckDB spells the NULL type ``"NULL"``; the DB-API's description said ``NULL"[]``."""
    repo = recorded_repo(tmp_path / "proj")
    with florsql.connect(repo, replay="off") as con:
        cur = con.execute("SELECT NULL AS a, [NULL] AS b, {'NULL': NULL} AS c")
        assert [d[1] for d in cur.description or ()] == ["NULL", "NULL[]", 'STRUCT("NULL" NULL)']
        metadata = [f.metadata[b"florsql.type"] for f in cur.fetch_arrow_table().schema]
        assert metadata == [b"NULL", b"NULL[]", b'STRUCT("NULL" NULL)']
