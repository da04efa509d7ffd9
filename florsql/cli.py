"""The ``florsql`` command: the REPL, one-shot queries, the Flight SQL server, the demo.

Thin: each command makes one library call and prints. Errors print one line and exit 1; with
``--debug`` the traceback shows instead.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from florsql.errors import FlorError, ReplayError, SqlError, VersionError

F = TypeVar("F", bound=Callable[..., Any])
CONFIRM_SECONDS = 10.0


#: Seconds a command waits for another process using the repository's index (another
#: ``florsql query`` in a second terminal), saying so on stderr; before session 46 it failed
#: at once ("in use by another process").
DEFAULT_WAIT = 60.0


@dataclass
class CliState:
    repo: Path | None = None
    debug: bool = False
    wait: float = DEFAULT_WAIT
    executor: str | None = None


def _waiting(text: str) -> None:
    click.echo(f"florsql: {text}", err=True)


def _message(error: FlorError) -> str:
    if isinstance(error, SqlError):
        where = f" (line {error.line}, column {error.col})" if error.line and error.col else ""
        return f"{error.message}{where}"
    if isinstance(error, ReplayError):
        return str(error)  # every failed task with its reason, in full
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _friendly(fn: F) -> F:
    """Turn florsql's errors into one line and exit code 1, unless ``--debug``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = click.get_current_context().find_object(CliState) or CliState()
        try:
            return fn(*args, **kwargs)
        except FlorError as e:
            if state.debug or kwargs.get("debug"):
                raise
            raise click.ClickException(_message(e)) from None

    return wrapper  # type: ignore[return-value]


_repo_option = click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The git repository (default: the one around the current directory).",
)
_debug_option = click.option("--debug", is_flag=True, help="Show tracebacks.")


def _set_wait(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    state = ctx.find_object(CliState)
    if value is not None and state is not None:
        state.wait = value


_wait_option = click.option(
    "--wait",
    type=click.FloatRange(0),
    default=None,
    expose_value=False,
    callback=_set_wait,
    metavar="SECONDS",
    help="Seconds to wait for another process using the repository's index (default: 60).",
)
_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="How to print the rows.",
)


_executor_option = click.option(
    "--executor",
    metavar="EXECUTOR",
    help="Where replays run: local (default), ray, ray://HOST:PORT.",
)


def _use_executor(service: Any, executor: str | None) -> None:
    """Apply ``--executor`` (the subcommand's, else the group's) to a service's engine."""
    state = click.get_current_context().find_object(CliState) or CliState()
    chosen = executor or state.executor
    if chosen:
        try:
            service.engine.set_executor(chosen)
        except BaseException:
            service.close()
            raise


def _common(fn: F) -> F:
    """``--repo``, ``--debug`` and ``--wait`` on a subcommand too (they may also go before it)."""
    return _repo_option(_debug_option(_wait_option(fn)))


def _wait() -> float:
    state = click.get_current_context().find_object(CliState) or CliState()
    return state.wait


def _repo(repo: Path | None) -> Path:
    from florsql.versions import find_repo_root

    state = click.get_current_context().find_object(CliState) or CliState()
    chosen = repo or state.repo
    try:
        start = chosen.resolve() if chosen else Path.cwd()
    except FileNotFoundError:
        raise VersionError(
            "the current folder no longer exists (deleted or moved): cd into your project's "
            "folder, or pass --repo PATH"
        ) from None
    return find_repo_root(start)


class _Main(click.Group):
    """The ``florsql`` group; remembers the command line it was started with (``argv``: None
    when called with explicit arguments), which ``florsql query`` hands to the query host."""

    argv: list[str] | None = None

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        self.argv = list(sys.argv[1:]) if args is None else None
        return super().main(args, *rest, **kwargs)


@click.group(name="florsql", cls=_Main, invoke_without_command=True)
@_repo_option
@_debug_option
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=DEFAULT_WAIT,
    metavar="SECONDS",
    help="Seconds to wait for another process using the repository's index (default: 60).",
)
@_executor_option
@click.version_option(package_name="florsql")
@click.pass_context
def main(
    ctx: click.Context, repo: Path | None, debug: bool, wait: float, executor: str | None
) -> None:
    """SQL over the history of your training runs; with no command, an interactive shell.

    \b
    Example:
        florsql                      # the shell
        florsql < report.sql         # statements and dot-commands from a file
        florsql query "SELECT run_id, avg(loss) FROM logs GROUP BY ALL"
    """
    ctx.obj = CliState(repo, debug, wait, executor)
    from florsql.store import layout

    layout.INDEX_WAIT_NOTICE = _waiting
    if ctx.invoked_subcommand is None:
        _friendly(_shell)()


@main.command()
@_executor_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "line"]),
    default="table",
    show_default=True,
    help="How results print at first (.mode changes it).",
)
@_common
@_friendly
def shell(executor: str | None, fmt: str, repo: Path | None, debug: bool) -> None:
    """The interactive shell (what `florsql` alone starts); with input piped in, a script.

    \b
    Example:
        florsql shell --executor ray
        florsql shell --format csv < report.sql > report.csv
    """
    _shell(repo, executor, fmt)


def _shell(repo: Path | None = None, executor: str | None = None, fmt: str = "table") -> None:
    """The shell on a terminal; with input piped in, run it as a script."""
    from florsql.repl import Settings, run_repl, run_script
    from florsql.repl.backend import open_service

    service = open_service(_repo(repo), wait=_wait())
    _use_executor(service, executor)
    settings = Settings(mode=fmt)
    try:
        if sys.stdin.isatty():
            run_repl(service, settings=settings)
        elif not run_script(service, sys.stdin.read(), settings):
            sys.exit(1)
    finally:
        service.close()


def _confirm_at_terminal(estimate: Any) -> bool:
    """``--replay confirm``: ask before a long replay when a person is there to answer."""
    from florsql.repl.render import confirm_text

    if estimate.seconds < CONFIRM_SECONDS or not sys.stdin.isatty():
        return True
    return click.confirm(confirm_text(estimate).rstrip().removesuffix("[y/N]").rstrip(), err=True)


def _progress_bar(progress: Any) -> None:
    """The replay's progress, redrawn in place on the terminal's stderr."""
    from florsql.repl.render import progress_line

    click.echo("\r\033[K" + progress_line(progress), err=True, nl=False)


def _in_query_host(root: Path) -> None:
    """Run this command in the repository's query host, where one runs (florsql.cli_host):
    exits with the command's status there; returns when there is none to run it."""
    argv = main.argv if isinstance(main, _Main) else None
    if argv is None:
        return
    from florsql.cli_host import delegate

    code = delegate(root, argv)
    if code is not None:
        sys.exit(code)


def _start_replay_service(root: Path, sql: str) -> None:
    """A query of ``logs`` may replay: start the repository's replay service now, in the
    background, so that its imports (torch...) overlap this process's own and the planning."""
    if not _may_replay(sql) or not (root / ".florsql" / "runs").is_dir():
        return

    from florsql.replay import service  # the standard library only: light

    service.start_soon(root / ".florsql")


def _may_replay(sql: str) -> bool:
    """Whether ``sql`` may replay: it reads ``logs`` and is no ``EXPLAIN``, which runs nothing
    (session 42: ``florsql query "EXPLAIN ..."`` started a replay service, ~350 MB for its
    idle timeout, in a repository that never replayed).

    Example:
        >>> q = "SELECT w FROM logs"
        >>> [_may_replay(s) for s in [q, "SELECT 1", f"EXPLAIN {q}", f"-- a\\n/* b */EXPLAIN {q}"]]
        [True, False, False, False]
    """
    import re

    if "logs" not in sql.lower():
        return False
    head = re.sub(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", "", sql, flags=re.S)
    return not re.match(r"explain\b", head, flags=re.I)


def param_value(text: str) -> object:
    """A ``--param`` value: a JSON text is that value (a number, ``true``/``false``, ``null``,
    a ``"quoted string"``, a list), anything else the string as written.

    Example:
        >>> [param_value(t) for t in ["1", "0.5", "true", "null", "abc", '"1"', "[1, 2]"]]
        [1, 0.5, True, None, 'abc', '1', [1, 2]]
        >>> param_value("2020-01-01"), param_value("1e400"), param_value("NaN")
        ('2020-01-01', inf, nan)
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


_param_option = click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="VALUE",
    help='The value of the next ? (repeat, in order): JSON (1, 0.5, true, null, "1", [1, 2]), '
    "else the text as written.",
)


@main.command()
@click.argument("sql")
@_param_option
@_format_option
@click.option(
    "--replay",
    type=click.Choice(["auto", "confirm", "off"]),
    default="confirm",
    show_default=True,
    help="Compute hindsight values: always, after asking (long replays), never.",
)
@_executor_option
@_common
@_friendly
def query(
    sql: str,
    params: tuple[str, ...],
    fmt: str,
    replay: str,
    executor: str | None,
    repo: Path | None,
    debug: bool,
) -> None:
    """Run one SQL statement and print its rows.

    \b
    Example:
        florsql query "SELECT run_id, max(val_acc) FROM logs GROUP BY ALL" --format csv
        florsql query "SELECT * FROM logs WHERE lr >= ? AND run_id IN ?" -p 0.01 -p '["r1"]'
        florsql query - < report.sql      # SQL "-": the statement is read from stdin
    """
    root = _repo(repo)
    _in_query_host(root)
    if sql == "-":  # no SQL reads `-`; before s36 "syntax error near '-'"
        sql = sys.stdin.read()
    state = click.get_current_context().find_object(CliState) or CliState()
    if replay != "off" and (executor or state.executor or "local") == "local":
        _start_replay_service(root, sql)
    from florsql.repl.backend import open_service
    from florsql.repl.render import render_outcome

    service = open_service(root, wait=_wait())
    _use_executor(service, executor)
    try:
        outcome = service.execute(
            sql,
            replay=replay,  # type: ignore[arg-type]
            confirm=_confirm_at_terminal,
            progress=_progress_bar if sys.stderr.isatty() else None,
            params=[param_value(p) for p in params],
        )
    finally:
        service.close()
        if sys.stderr.isatty():
            click.echo("\r\033[K", err=True, nl=False)
    from florsql.engine.replay_decision import SET_REPLAY_HINT

    for message in outcome.warnings:  # the hint a one-shot query can follow (sweep AN, s58)
        message = message.replace(SET_REPLAY_HINT, "--replay auto computes them")
        click.echo(f"warning: {message}", err=True)
    text = render_outcome(outcome, fmt, limit=None)
    if text is not None:
        click.echo(text)


@main.command()
@click.argument("sql")
@_param_option
@_common
@_friendly
def explain(sql: str, params: tuple[str, ...], repo: Path | None, debug: bool) -> None:
    """Show what a query would replay and its cost; runs nothing.

    \b
    Example:
        florsql explain "SELECT run_id, avg(grad_norm) FROM logs WHERE epoch >= 8 GROUP BY ALL"
        florsql explain "SELECT run_id, grad_norm FROM logs WHERE lr >= ?" -p 0.01
    """
    root = _repo(repo)
    _in_query_host(root)
    from florsql.repl.backend import open_service

    service = open_service(root, wait=_wait())
    try:
        click.echo(service.explain(sql, [param_value(p) for p in params]))
    finally:
        service.close()


@main.command()
@_format_option
@_common
@_friendly
def runs(fmt: str, repo: Path | None, debug: bool) -> None:
    """List the recorded runs (SHOW RUNS).

    \b
    Example:
        florsql runs --format csv
    """
    root = _repo(repo)
    _in_query_host(root)
    from florsql.repl.backend import open_service
    from florsql.repl.render import render

    service = open_service(root, wait=_wait())
    try:
        outcome = service.execute("SHOW RUNS", replay="off")
    finally:
        service.close()
    if outcome.table is not None:
        click.echo(render(outcome.table, fmt, limit=None))


@main.command()
@click.option("--version", "vid", required=True, help="A recorded code version (or a prefix).")
@click.option(
    "--again",
    "again",
    multiple=True,
    metavar="NAME",
    help="Place today's statement of NAME even where the version logs NAME itself (in a "
    "branch a run never took), as a replay of a run that never recorded NAME does. Repeatable.",
)
@click.argument("file", required=False)
@_common
@_friendly
def propagate(
    vid: str, again: tuple[str, ...], file: str | None, repo: Path | None, debug: bool
) -> None:
    """Show today's log statements placed into an old version, as a diff.

    FILE is relative to the repository root (default: every file that changes).

    \b
    Example:
        florsql propagate --version 3f2a9c1 train.py
        florsql propagate --version 3f2a9c1 --again val train.py
    """
    root = _repo(repo)
    _in_query_host(root)
    from florsql.propagate import version_failures

    diff, failures = version_failures(root, vid, file, again=again)
    click.echo(diff, nl=False)
    for line in failures:  # what could not be placed says why, and the exit status tells
        click.echo(f"cannot place {line}", err=True)
    if failures:
        raise SystemExit(1)


@dataclass(frozen=True)
class _ServeDefaults:
    """The defaults of `florsql serve`'s limits: florsql.flight.limits.Limits's (a test
    checks), written out so that the command line starts without importing pyarrow."""

    query_timeout: float = 300.0
    max_concurrent: int = 8
    queue_timeout: float = 30.0
    max_pending_results: int = 64
    max_pending_bytes: int = 1 << 30
    max_sql_length: int = 100_000
    max_parse_depth: int = 64
    memory_limit: str = "4GB"
    threads: int = 4


_LIMITS = _ServeDefaults()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8815,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--token",
    envvar="FLORSQL_TOKEN",
    help="Bearer token clients must send (required off loopback; also read from $FLORSQL_TOKEN).",
)
@click.option(
    "--allow-replay",
    is_flag=True,
    help="Compute hindsight values by replaying (the same as --replay auto).",
)
@click.option(
    "--replay",
    "replay_mode",
    type=click.Choice(["auto", "off", "error"]),
    default=None,
    help="Hindsight values never computed: auto replays them; off answers them NULL (each "
    "result's schema metadata florsql.warnings says so); error (the default) refuses the query.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate (chain): serve grpc+tls:// (required off loopback unless --insecure).",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow plain gRPC off loopback: the token crosses the network in clear.",
)
@click.option(
    "--query-timeout",
    default=_LIMITS.query_timeout,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a query may run before it is cancelled (a replay too); 0: no limit.",
)
@click.option(
    "--max-concurrent-queries",
    default=_LIMITS.max_concurrent,
    show_default=True,
    type=click.IntRange(1),
    help="Queries running at once; others wait for a slot.",
)
@click.option(
    "--queue-timeout",
    default=_LIMITS.queue_timeout,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a query waits for a slot before it is refused (UNAVAILABLE).",
)
@click.option(
    "--max-pending-results",
    default=_LIMITS.max_pending_results,
    show_default=True,
    type=click.IntRange(1),
    help="Results kept awaiting download; the oldest is dropped beyond it.",
)
@click.option(
    "--max-pending-bytes",
    default=_LIMITS.max_pending_bytes,
    show_default=True,
    type=click.IntRange(1),
    help="Bytes of results kept awaiting download; the oldest are dropped beyond it.",
)
@click.option(
    "--max-sql-length",
    default=_LIMITS.max_sql_length,
    show_default=True,
    type=click.IntRange(1),
    help="Longest statement accepted, in characters.",
)
@click.option(
    "--max-parse-depth",
    default=_LIMITS.max_parse_depth,
    show_default=True,
    type=click.IntRange(1),
    help="Deepest parenthesis nesting accepted.",
)
@click.option(
    "--memory-limit",
    default=_LIMITS.memory_limit,
    show_default=True,
    help="DuckDB's memory_limit (e.g. 2GB, 512MB).",
)
@click.option(
    "--threads",
    default=_LIMITS.threads,
    show_default=True,
    type=click.IntRange(1),
    help="DuckDB's threads.",
)
@_executor_option
@_common
@_friendly
def serve(
    host: str,
    port: int,
    token: str | None,
    allow_replay: bool,
    replay_mode: Literal["auto", "off", "error"] | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
    query_timeout: float,
    max_concurrent_queries: int,
    queue_timeout: float,
    max_pending_results: int,
    max_pending_bytes: int,
    max_sql_length: int,
    max_parse_depth: int,
    memory_limit: str,
    threads: int,
    executor: str | None,
    repo: Path | None,
    debug: bool,
) -> None:
    """Serve the history over Arrow Flight SQL (read-only) for BI tools and ADBC/JDBC.

    \b
    Example:
        florsql serve --port 8815
        # Python: adbc_driver_flightsql.dbapi.connect("grpc://127.0.0.1:8815")
    """
    from florsql.flight import FlorFlightServer, ServerOptions
    from florsql.flight.auth import check_binding
    from florsql.flight.backend import open_service
    from florsql.flight.limits import Limits

    limits = Limits(
        query_timeout=query_timeout,
        max_concurrent=max_concurrent_queries,
        queue_timeout=queue_timeout,
        max_pending_results=max_pending_results,
        max_pending_bytes=max_pending_bytes,
        max_sql_length=max_sql_length,
        max_parse_depth=max_parse_depth,
        memory_limit=memory_limit,
        threads=threads,
    )
    check_binding(host, token, tls=tls_cert is not None, insecure=insecure)
    if allow_replay and replay_mode not in (None, "auto"):
        raise click.UsageError(f"--allow-replay contradicts --replay {replay_mode}")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if not debug:
        # pyarrow appends a handler's Python traceback to an UNIMPLEMENTED error's detail;
        # clients get the one-line message only.
        sys.tracebacklimit = 0
    service = open_service(_repo(repo), duckdb_settings=limits.duckdb_settings(), wait=_wait())
    _use_executor(service, executor)
    options = ServerOptions(
        host,
        port,
        token,
        allow_replay,
        limits,
        tls_cert,
        tls_key,
        insecure=insecure,
        replay=replay_mode,
    )
    try:
        server = FlorFlightServer(service, options)
    except BaseException:
        service.close()
        raise
    replay = {
        "auto": "hindsight values replayed",
        "off": "hindsight values never computed answer NULL",
        "error": "queries needing a replay refused",
    }[options.replay_mode]
    where = ServerOptions(host, server.port, tls_cert=tls_cert).location
    click.echo(f"florsql Flight SQL on {where} (read-only, {replay}); Ctrl-C stops", err=True)
    signal.signal(signal.SIGTERM, _stop)  # `kill` stops it as Ctrl-C does: cleanly
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        service.close()


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@main.group(name="replay-service")
def replay_service() -> None:
    """The repository's warm replay service: replay tasks fork from it, from any process.

    The first query that replays starts it; it exits after FLORSQL_REPLAY_SERVICE_IDLE
    seconds (default 600) without work. FLORSQL_REPLAY_SERVICE=0 keeps each query's replay
    workers its own.

    \b
    Example:
        florsql replay-service status
        florsql replay-service stop
    """


@replay_service.command(name="status")
@_common
@_friendly
def replay_service_status(repo: Path | None, debug: bool) -> None:
    """Whether the service runs, and what it holds: pid, uptime, modules, tasks.

    \b
    Example:
        florsql replay-service status --repo ~/projects/mnist
    """
    from florsql.replay import service
    from florsql.store import layout

    root = _repo(repo)
    try:
        info = service.status(layout.store_dir(root))
    except service.ServiceUnresponsive as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    if info is None:
        click.echo(f"no replay service runs for {root}")
        return
    idle = float(info["idle_timeout"]) - float(info["idle_for"])
    lines = [
        f"replay service for {info['repository']}",
        f"  pid           {info['pid']}",
        f"  socket        {layout.store_dir(root) / service.SOCKET}",
        f"  up for        {float(info['uptime']):.0f} s",
        f"  idle exit in  {max(0.0, idle):.0f} s (after {float(info['idle_timeout']):.0f} s idle)",
        f"  tasks         {info['tasks_run']} run, {info['running']} running",
        f"  clients       {info['clients'] - 1} other connected",
        f"  preloaded     {', '.join(info['loaded']) or '-'}",
        f"  query host    {_host_line(info)}",
        f"  python        {info['python']}",
    ]
    if info.get("stopping"):
        lines.append("  stopping: finishing its running tasks")
    click.echo("\n".join(lines))


def _host_line(info: dict[str, Any]) -> str:
    pid = info.get("query_host")
    if pid:
        return f"pid {pid}, {info.get('query_host_socket', '')}".rstrip(", ")
    return str(info.get("query_host_state") or "none")


@replay_service.command(name="stop")
@_common
@_friendly
def replay_service_stop(repo: Path | None, debug: bool) -> None:
    """Stop the service (its running tasks finish first); the next replay starts a new one.

    \b
    Example:
        florsql replay-service stop
    """
    from florsql.replay import service
    from florsql.store import layout

    root = _repo(repo)
    pid = service.stop(layout.store_dir(root))
    if pid is None:
        click.echo(f"no replay service runs for {root}")
    else:
        click.echo(f"stopped the replay service (pid {pid})")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Record a few runs of an example script in a temporary repository and query them.

    \b
    Example:
        florsql demo --dir /tmp/florsql-demo
    """
    from florsql.demo import main as demo_main

    sys.exit(demo_main(list(args)))
