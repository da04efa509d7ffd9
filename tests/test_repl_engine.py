"""The REPL's engine adapter on real recorded runs: the schema completion sees (hindsight
columns marked), confirmation before replay, progress while it runs, EXPLAIN, SET."""

from __future__ import annotations

from pathlib import Path

from florsql.repl.backend import open_service
from florsql.repl.service import ReplayEstimate
from tests.test_flight_support import recorded_repo

W2 = "SELECT lr, epoch, w, w2 FROM logs ORDER BY ALL"


def test_the_engine_behind_the_repl(tmp_path: Path) -> None:
    service = open_service(recorded_repo(tmp_path / "proj"))
    try:
        schema = service.schema()
        logs = {c.name: c for c in schema.columns("logs")}
        assert (
            logs["w2"].hindsight and not logs["w"].hindsight and logs["loss"].sql_type == "DOUBLE"
        )
        assert {"runs", "args", "loops", "log_records"} <= set(schema.relations)
        assert "status" in {c.name for c in schema.columns("runs")}

        assert service.explain("SELECT avg(w2) FROM logs;").startswith("Replay plan: 2 run(s)")

        asked: list[ReplayEstimate] = []

        def decline(estimate: ReplayEstimate) -> bool:
            asked.append(estimate)
            return False

        declined = service.execute(W2, replay="confirm", confirm=decline)
        assert len(asked) == 1 and asked[0].tasks == 2 and asked[0].seconds > 0
        assert (
            asked[0].plan.startswith("Replay plan: 2 run(s)") and "DuckDB SQL" not in asked[0].plan
        )
        assert declined.table is not None and declined.table.column("w2").null_count == 6
        assert declined.warnings[0].startswith("replay was not confirmed")

        seen: list[tuple[int, int]] = []
        done = service.execute(
            W2, replay="confirm", confirm=lambda e: True,
            progress=lambda p: seen.append((p.tasks_done, p.tasks_total)),
        )  # fmt: skip
        assert done.table is not None and done.table.column("w2").null_count == 0
        assert seen[0] == (0, 2) and seen[-1] == (2, 2)
        w2 = done.table.column("w2").to_pylist()
        assert len(w2) == 6 and all(isinstance(v, float) for v in w2)

        again = service.execute(W2, replay="off")  # nothing left to replay, no warning
        assert again.table is not None and again.table.column("w2").to_pylist() == w2
        assert not [m for m in again.warnings if "replay is off" in m]

        assert service.execute("SET replay = 'off'", replay="confirm").text == "replay = off"
        assert service.schema().columns("logs")  # the catalog after the replay still loads
    finally:
        service.close()
