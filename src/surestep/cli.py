"""The ``surestep`` command: start, watch, inspect and drive runs; serve workers and the dashboard.

::

    surestep run flows.py:order_fulfillment o-1 '["book"]'   # start a run, watch its steps
    surestep runs --status failed                            # the failed runs, newest first
    surestep show RUN                                        # steps, inputs, outputs, errors
    surestep logs RUN --follow                               # what the run says, as it says it
    surestep cancel RUN | surestep send RUN EVENT JSON       # drive a run
    surestep worker flows.py --concurrency 50                # execute runs started elsewhere
    surestep ui                                              # the dashboard, on 127.0.0.1:8765

The store is ``--store URL`` on every command, else the ``SURESTEP_STORE``
environment variable, else ``.surestep`` (an LMDB directory). The reading
commands (``runs``, ``show``, ``logs``, and ``run``'s result) print JSON for
scripts with ``--json``. Run ids may be shortened to a unique prefix.

Exit codes, which scripts can rely on:

==== ===================================================================
0    success
1    the workflow failed or was cancelled (``surestep run``)
2    bad input or usage: bad JSON, arguments the workflow cannot take, an
     unknown option, a feature this installation does not have
3    not found: no such run, module or workflow
4    the store failed: missing, unreadable, corrupt or full
70   a bug in surestep (please report it with ``SURESTEP_DEBUG=1`` output)
130  interrupted (Ctrl-C or SIGTERM)
==== ===================================================================

Every error is one line on stderr (``surestep: error: ...``), never a
traceback; set ``SURESTEP_DEBUG=1`` to get the traceback as well.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from . import __version__, _core
from .decorators import WorkflowSpec, find_workflow, spec_of
from .errors import (
    BAD_INPUT,
    NOT_FOUND,
    STORE_FAILED,
    RunFinishedError,
    RunNotFoundError,
    SerializationError,
    StoreError,
    SurestepError,
    UnknownWorkflowError,
)
from .hitl import WAITING_FOR
from .retention import describe_retention
from .store import parse_store_url
from .store.base import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    STATUSES,
    LiveEngine,
    RunInfo,
)
from .web.access import is_loopback
from .web.views import (
    call_text,
    children_json,
    format_duration,
    format_time,
    is_internal,
    log_lines,
    run_json,
    status_text,
    step_json,
    steps_json,
)

# asyncio, rich, the runtime and the web server are imported by the commands that use
# them, so that `surestep --help` (and a mistyped command) answers at once.
if TYPE_CHECKING:
    import asyncio

    from rich.console import Console
    from rich.text import Text

    from .engine import Engine, JournalEntry

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_STORE = 4
EXIT_BUG = 70
EXIT_INTERRUPTED = 130

STORE_ENV = "SURESTEP_STORE"
DEFAULT_STORE = ".surestep"
STORE_HELP = "The store: an LMDB directory, lmdb:///path, or postgresql://..."
STATUS_STYLE = {
    PENDING: "yellow",
    RUNNING: "cyan",
    COMPLETED: "green",
    FAILED: "bold red",
    CANCELLED: "magenta",
    "waiting": "blue",
    "retrying": "yellow",
}
EXIT_CODES_HELP = """\b
Exit codes:
  0    success
  1    the workflow failed or was cancelled (surestep run)
  2    bad input or usage (bad JSON, wrong arguments, unknown option)
  3    not found (no such run, module or workflow)
  4    the store failed (missing, unreadable, corrupt, full)
  70   a bug in surestep
  130  interrupted (Ctrl-C or SIGTERM)
"""

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine on the engine's loop (uvloop where installed)."""
    from .engine import run_loop as engine_loop

    return engine_loop(main)


class CliError(Exception):
    """A one-line error for the user, with the exit code it ends the command with."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- the group


class _Cli(click.Group):
    """A click group whose every failure is one line on stderr and a documented exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(
                args, prog_name or "surestep", complete_var, standalone_mode=False, **extra
            )
        except BaseException as exc:
            code = _report(exc)
        if not isinstance(code, int):
            code = EXIT_OK
        if standalone_mode:
            sys.exit(code)
        return code


def _report(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr; return its exit code."""
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else 1)
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        click.echo(exc.ctx.get_help() if exc.ctx is not None else str(exc))
        return EXIT_OK
    if isinstance(exc, (click.Abort, KeyboardInterrupt)):
        _error("interrupted")
        return EXIT_INTERRUPTED
    code, message = _classify(exc)
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    _error(message)
    if os.environ.get("SURESTEP_DEBUG"):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return code


def _classify(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, click.ClickException):
        return (
            EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
        ), exc.format_message()
    if isinstance(exc, NOT_FOUND):
        return EXIT_NOT_FOUND, str(exc)
    if isinstance(exc, STORE_FAILED):
        return EXIT_STORE, f"store: {exc}"
    if isinstance(exc, (*BAD_INPUT, RunFinishedError)):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, SurestepError):
        return EXIT_USAGE, f"{type(exc).__name__}: {exc}"
    return EXIT_BUG, (
        f"internal error: {type(exc).__name__}: {exc} "
        "(a bug in surestep; set SURESTEP_DEBUG=1 for the traceback and report it)"
    )


def _error(message: str) -> None:
    click.echo(f"surestep: error: {one_line(message)}", err=True)


def one_line(text: str) -> str:
    """``text`` with its line breaks folded, so an error is always one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


@click.group(
    cls=_Cli,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__,
    "--version",
    "-V",
    message=f"surestep %(version)s (journal format {_core.FORMAT_VERSION})",
)
@click.option(
    "--store",
    envvar=STORE_ENV,
    default=DEFAULT_STORE,
    show_default=True,
    show_envvar=True,
    metavar="URL",
    help=STORE_HELP + " (also an option of every command)",
)
def main(store: str) -> None:
    """surestep: durable workflows. Start, watch and inspect runs; serve workers and a dashboard.

    The store is --store URL on every command, else $SURESTEP_STORE, else
    .surestep (an LMDB directory). Run ids may be shortened to a unique prefix.
    """


def _store_fallback(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """A command's ``--store``, else the group's (``surestep --store URL CMD``), else the
    environment variable, else ``.surestep``."""
    if value is not None:
        return value
    root: str | None = ctx.find_root().params.get("store")
    return root or os.environ.get(STORE_ENV) or DEFAULT_STORE


def store_option(fn: F) -> F:
    return click.option(
        "--store",
        metavar="URL",
        callback=_store_fallback,
        help=f"{STORE_HELP}  [default: ${STORE_ENV}, else {DEFAULT_STORE}]",
    )(fn)


def _whole_option(*names: str, minimum: int, default: int, help: str) -> Callable[[F], F]:
    """An option taking a whole number of at least ``minimum``; its default shown."""
    return click.option(
        *names, type=click.IntRange(min=minimum), default=default, show_default=True, help=help
    )


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def _command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """A subcommand whose help ends with the exit codes."""
    kwargs.setdefault("epilog", EXIT_CODES_HELP)
    return main.command(name, **kwargs)


# ---------------------------------------------------------------- helpers


def _local_path(store: str) -> str | None:
    """The directory of an LMDB store URL; ``None`` for a server store."""
    backend, target = parse_store_url(store)
    return target if backend == "lmdb" else None


def _check_store_path(store: str, *, create: bool) -> None:
    """Refuse a local store path that is not a directory, with the same words from every
    command; and, unless ``create``, one that does not exist (reading must not create one)."""
    path = _local_path(store)
    if path is None:
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise CliError(
            f"the store path {path!r} is a file, not a surestep store (a directory); give "
            f"--store another path or set {STORE_ENV}",
            EXIT_STORE,
        )
    if not create and not os.path.isdir(path):
        raise CliError(
            f"no surestep store at {path!r} (give --store URL or set {STORE_ENV})", EXIT_STORE
        )


def _writable(path: str) -> bool:
    """Whether this process may write the LMDB store at ``path`` (its directory, lock file
    and wake-up registrations)."""
    parts = [path, os.path.join(path, "lock.mdb"), os.path.join(path, "wake")]
    return all(os.access(part, os.W_OK) for part in parts if os.path.exists(part))


def _require_store(store: str) -> None:
    _check_store_path(store, create=False)


@contextlib.asynccontextmanager
async def _engine(
    store: str,
    *,
    create: bool = False,
    execute: bool = False,
    reading: bool = False,
    **options: Any,
) -> AsyncIterator[Engine]:
    """An open engine over ``store``; ``execute``: it runs workflows (``run``), else it
    only reads and writes rows. Reading commands never create a store as a side effect,
    and open a local store they may not write read-only (``reading``). ``options`` go to
    the Engine."""
    _check_store_path(store, create=create)
    from .engine import Engine

    path = _local_path(store)
    if reading and path is not None and not _writable(path):
        engine = Engine(store, execute=False, readonly=True, **options)
    else:
        engine = Engine(store, execute=execute, **options)
    try:
        await engine.open()
        yield engine
    finally:
        await engine.close()


async def _resolve(engine: Engine, run_id: str) -> RunInfo:
    """The run ``run_id`` names, exactly or as a unique prefix of at least 4 characters."""
    try:
        return await engine.get_run(run_id)
    except RunNotFoundError:
        pass
    prefix = run_id.strip().lower()
    found = []
    if len(prefix) >= 4:
        found = [run for run in await engine.runs() if run.run_id.startswith(prefix)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        shown = "; ".join(f"{r.run_id} ({r.workflow}, {r.status})" for r in found[:10])
        more = f"; and {len(found) - 10} more" if len(found) > 10 else ""
        raise CliError(
            f"run id prefix {run_id!r} names {len(found)} runs: {shown}{more}; give more of the id"
        )
    raise CliError(f"no run {run_id!r} in the store at {engine.store.url}", EXIT_NOT_FOUND)


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON, or a one-line error naming ``what``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON: {exc} (got {_clip(text, 40)})") from None


def parse_arguments(
    spec: WorkflowSpec, args: Iterable[str], input_json: str | None
) -> tuple[list[Any], dict[str, Any]]:
    """Workflow arguments, each ARG converted by the workflow's annotation of its
    parameter (a ``str`` parameter takes it as it is, a structured or typed one as
    JSON; an unannotated one as JSON when it parses, else as a string); ``--input``
    a JSON array (positional arguments) or object (keyword arguments)."""
    from .convert import cli_arguments

    try:
        positional = cli_arguments(spec.fn, list(args))
    except SerializationError as exc:
        raise CliError(f"workflow {spec.name!r}: {exc}") from None
    keywords: dict[str, Any] = {}
    if input_json is not None:
        value = parse_json(input_json, "--input")
        if isinstance(value, list):
            if positional:
                raise CliError("give the arguments as ARGS or as an --input array, not both")
            positional = value
        elif isinstance(value, dict):
            keywords = value
        else:
            raise CliError(
                "--input must be a JSON array (arguments) or object (keyword arguments), "
                f"not {type(value).__name__}"
            )
    return positional, keywords


def import_target(target: str) -> ModuleType:
    """A module by dotted name (from the current directory or the path), or a ``.py`` file."""
    from .worker import ModuleLoadError, import_module

    try:
        return import_module(target)
    except ModuleLoadError as exc:
        raise CliError(str(exc), EXIT_NOT_FOUND) from None
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise CliError(
                f"no module named {target!r} (run from its project directory, put it on "
                "PYTHONPATH, or give the path of a .py file)",
                EXIT_NOT_FOUND,
            ) from None
        raise _import_failed(target, exc) from exc
    except BaseException as exc:
        raise _import_failed(target, exc) from exc


def _import_failed(target: str, exc: BaseException) -> BaseException:
    if isinstance(exc, KeyboardInterrupt):
        return exc
    return CliError(f"importing {target} failed: {type(exc).__name__}: {exc}")


def load_workflow(target: str) -> WorkflowSpec:
    """``MODULE:WORKFLOW`` -> the workflow (by attribute, or by its registered name)."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise CliError(
            f"{target!r} is not MODULE:WORKFLOW (for example flows.py:order_fulfillment "
            "or myapp.flows:order_fulfillment)"
        )
    module = import_target(module_name)
    spec = spec_of(getattr(module, attr, None))
    if isinstance(spec, WorkflowSpec):
        return spec
    defined = [s for s in map(spec_of, vars(module).values()) if isinstance(s, WorkflowSpec)]
    for spec in defined:
        if spec.name == attr:  # @workflow(name=...)
            return spec
    try:
        return find_workflow(attr)  # registered by a module it imported
    except UnknownWorkflowError:
        pass
    here = sorted(spec.name for spec in defined)
    raise CliError(
        f"no workflow {attr!r} in {module_name} (its workflows: {', '.join(here) or 'none'})",
        EXIT_NOT_FOUND,
    )


def _clip(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else _compact(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _error_text(error: dict[str, Any] | None, style: str = "red") -> Text:
    from rich.text import Text

    error = error or {}
    return Text(f"{error.get('type', '?')}: {one_line(error.get('message', ''))}", style=style)


def _status_text(status: str) -> Text:
    from rich.text import Text

    return Text(status, style=STATUS_STYLE.get(status, ""))


@functools.cache
def _stdout_console() -> type[Console]:
    from rich.console import Console

    class Stdout(Console):
        """stdout: in a pipe, tables print whole (no width to fit) and without trailing
        blanks, and lines of text are not wrapped at all."""

        def __init__(self) -> None:
            piped = not sys.stdout.isatty()
            super().__init__(highlight=False, soft_wrap=piped, width=200 if piped else None)

        def print(self, *objects: Any, **kwargs: Any) -> None:
            if self.is_terminal:
                super().print(*objects, **kwargs)
                return
            with self.capture() as captured:
                super().print(*objects, **kwargs)
            click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))

    return Stdout


def _stdout() -> Console:
    return _stdout_console()()


def _stderr() -> Console:
    """stderr: outside a terminal, lines are not wrapped (a log or a pipe has no width)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())


# ---------------------------------------------------------------- run


class _Watcher:
    """Shows a run's steps as they are journaled, and a spinner while the next one runs,
    with a progress bar once the run reports its progress (``ctx.progress``).

    The run executes in this process: wrapping this engine's ``store.append`` and
    ``store.set_progress`` tells the watcher the moment a step is recorded or progress
    is stored, so it reads the run only then (and once a second, for what another
    engine records after a takeover) instead of polling it.
    """

    def __init__(self, engine: Engine, console: Console, quiet: bool) -> None:
        import asyncio

        self.engine = engine
        self.console = console
        self.quiet = quiet
        self.recorded = asyncio.Event()
        self.shown: set[int] = set()
        self.retrying: tuple[int, int] | None = None  # the retry last printed: step, attempt
        store = engine.store
        append = store.append

        async def append_and_tell(run_id: str, fence: int, seq: int, record: bytes) -> None:
            await append(run_id, fence, seq, record)
            self.recorded.set()

        store.append = append_and_tell  # type: ignore[method-assign]
        set_progress = store.set_progress

        async def set_progress_and_tell(run_id: str, fence: int, report: bytes) -> None:
            await set_progress(run_id, fence, report)
            self.recorded.set()

        store.set_progress = set_progress_and_tell  # type: ignore[method-assign]
        self.progress: dict[str, Any] | None = None

    async def watch(self, run_id: str, result: asyncio.Future[Any], stop: asyncio.Event) -> None:
        """Until ``result`` is done; :class:`CliError` (exit 130) once ``stop`` is set."""
        import asyncio

        status = None
        if not self.quiet and self.console.is_terminal:
            status = _RunBar(self.console)
            status.update(f"run {run_id}: step 0 running…")
            status.start()
        try:
            while True:
                self.recorded.clear()
                await self._show(run_id, status)
                if result.done():
                    return
                if stop.is_set():
                    raise CliError(
                        f"interrupted: run {run_id} was given back unfinished and stays "
                        "recoverable (a `surestep worker` of its module resumes it)",
                        EXIT_INTERRUPTED,
                    )
                waiters = [
                    asyncio.ensure_future(self.recorded.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                try:
                    await asyncio.wait(
                        {result, *waiters}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            if status is not None:
                status.stop()

    async def _show(self, run_id: str, status: _RunBar | None) -> None:
        entries = await self.engine.journal(run_id)
        for entry in entries:
            if entry.seq not in self.shown:
                self.shown.add(entry.seq)
                if not self.quiet and not is_internal(entry.name, entry.kind):
                    self.console.print(_step_line(entry))
        run = await self.engine.get_run(run_id)
        progress = run.progress
        retry = run.retry if not run.finished else None
        if retry is not None and (retry["seq"], retry["attempt"]) != self.retrying:
            self.retrying = (retry["seq"], retry["attempt"])
            if not self.quiet:
                self.console.print(_retry_line(retry))
        if status is not None:
            last = step_json(entries[-1]) if entries else None
            if retry is not None:
                doing = f"run {run_id}: {run.status_text}"
            elif last is not None and last["status"] == "waiting":
                doing = f"run {run_id}: waiting: sleep until {format_time(last['wake_at'])}"
            else:
                doing = f"run {run_id}: step {len(self.shown)} running…"
            status.update(doing, progress)
        elif progress != self.progress and progress is not None and not self.quiet:
            from rich.text import Text

            self.console.print(
                Text("  progress ", style="dim").append_text(_progress_text(progress))
            )
        self.progress = progress


class _RunBar:
    """The live line under a watched run's steps: a spinner and what runs, then a bar,
    the count and the message of the run's last progress report (rich's Progress)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        self.bar = Progress(
            SpinnerColumn("dots"),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[message]}", style="dim"),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("", total=None, message="", visible=False)

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self.bar.stop()

    def update(self, description: str, report: dict[str, Any] | None = None) -> None:
        if report is None:
            self.bar.update(self.task, description=description, visible=True)
            return
        self.bar.update(
            self.task,
            description=description,
            completed=report["n"],
            total=report.get("total"),
            message=report.get("message") or "",
            visible=True,
        )


def _retry_line(retry: dict[str, Any]) -> Text:
    """A step that failed and waits for its next attempt: ``↻ 2 charge  retrying: ...``."""
    from rich.text import Text

    line = Text("  ")
    line.append("↻ ", style="yellow")
    line.append(f"{retry['seq']:>3} ", style="dim")
    line.append(retry["name"], style="bold")
    line.append(
        f"  retrying: attempt {retry['attempt']} of {retry['of']} at "
        f"{format_time(retry['next_at'])}, last error: {one_line(retry['error'])}",
        style="yellow",
    )
    return line


def _step_line(entry: JournalEntry) -> Text:
    from rich.text import Text

    step = step_json(entry)
    failed = entry.kind == "step_error"
    line = Text("  ")
    if step["status"] == "waiting":  # a durable sleep that has not ended: no ✓ yet
        line.append("… ", style="blue")
        line.append(f"{entry.seq:>3} ", style="dim")
        line.append(entry.name, style="bold")
        line.append(f"  waiting until {format_time(step['wake_at'])}", style="blue")
        return line
    line.append("✗ " if failed else "✓ ", style="bold red" if failed else "green")
    line.append(f"{entry.seq:>3} ", style="dim")
    line.append(entry.name, style="bold")
    line.append(f"  {format_duration(step['duration'])}", style="dim")
    if entry.attempt > 1:
        line.append(f"  {entry.attempt} attempts", style="yellow")
    if failed:
        line.append("  ")
        line.append_text(_error_text(entry.error))
    return line


@_command("run", short_help="Start a run of a workflow and watch it to its result.")
@click.argument("target", metavar="MODULE:WORKFLOW")
@click.argument("args", nargs=-1, metavar="[ARGS]...")
@click.option(
    "--input",
    "input_json",
    metavar="JSON",
    help="The arguments as a JSON array, or keyword arguments as a JSON object.",
)
@click.option("--session", "session_id", metavar="ID", help="The run's session id.")
@click.option("--user", "user_id", metavar="ID", help="The run's user id.")
@click.option("-q", "--quiet", is_flag=True, help="Do not show the steps as they complete.")
@json_option
@store_option
def run_command(
    target: str,
    args: tuple[str, ...],
    input_json: str | None,
    session_id: str | None,
    user_id: str | None,
    quiet: bool,
    as_json: bool,
    store: str,
) -> None:
    """Start a run of WORKFLOW from MODULE (a dotted module name or a .py file),
    show its steps as they complete (on stderr), then its result (on stdout, as JSON).

    Each ARG is converted by the workflow's annotation of its parameter: a str
    parameter takes it as it is, an int, a list, a model... parses it as JSON;
    an unannotated one takes JSON when it parses (42, true, '["a","b"]'), else
    the string. Put -- before arguments that start with a dash.
    Exits 1 if the workflow fails.
    """
    spec = load_workflow(target)
    positional, keywords = parse_arguments(spec, args, input_json)
    _warnings_to_stderr()  # e.g. the run waits for a worker serving the deployed version
    code = run_loop(_run(store, spec, positional, keywords, session_id, user_id, quiet, as_json))
    raise click.exceptions.Exit(code)


async def _run(
    store: str,
    spec: WorkflowSpec,
    args: list[Any],
    kwargs: dict[str, Any],
    session_id: str | None,
    user_id: str | None,
    quiet: bool,
    as_json: bool,
) -> int:
    import asyncio
    import signal

    from rich.text import Text

    err = _stderr()
    async with _engine(store, create=True, execute=True) as engine:
        watcher = _Watcher(engine, err, quiet)
        try:
            handle = await engine.start(
                spec.fn, *args, session_id=session_id, user_id=user_id, **kwargs
            )
        except TypeError as exc:  # arguments the workflow cannot take, or not JSON
            raise CliError(str(exc)) from None
        if not quiet:
            err.print(Text.assemble(("run ", "dim"), (handle.run_id, "bold"), f" {spec.name}"))
        result = asyncio.ensure_future(handle.result())
        # Ctrl-C or SIGTERM: stop watching; closing the engine gives the run back.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await watcher.watch(handle.run_id, result, stop)
            with contextlib.suppress(SurestepError):
                await result
        except BaseException:
            # Its outcome no longer matters (the run stays recoverable); retrieve it so that
            # the store closing under it is not reported as an unhandled task error.
            result.add_done_callback(_ignore_outcome)
            result.cancel()
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        run = await engine.get_run(handle.run_id)
    if as_json:
        _echo_json(run_json(run))
    elif run.status == COMPLETED:
        if not quiet:
            took = format_duration(run_json(run)["duration"])
            err.print(Text.assemble(("✓ completed", "bold green"), f" in {took}"))
        click.echo(orjson.dumps(run.result, option=orjson.OPT_INDENT_2).decode())
    elif run.status == FAILED:
        err.print(Text.assemble(("✗ failed: ", "bold red"), _error_text(run.error, "")))
        err.print(Text(f"  surestep show {run.run_id}  (its steps and traceback)", style="dim"))
    else:
        err.print(
            Text(f"run {run.run_id} ended {run.status}", style=STATUS_STYLE.get(run.status, ""))
        )
    return EXIT_OK if run.status == COMPLETED else EXIT_FAILED


def _ignore_outcome(future: asyncio.Future[Any]) -> None:

    if not future.cancelled():
        future.exception()


# ---------------------------------------------------------------- runs


@_command("runs", short_help="List runs, newest first.")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs with this status.")
@click.option("--workflow", "-w", metavar="NAME", help="Only runs of this workflow.")
@click.option(
    "--waiting-for",
    type=click.Choice(WAITING_FOR),
    help="Only waiting runs that wait for this: a person's answer, an event, a timer.",
)
@_whole_option("--limit", "-n", minimum=0, default=50, help="At most this many runs (0: all).")
@json_option
@store_option
def runs_command(
    status: str | None,
    workflow: str | None,
    waiting_for: str | None,
    limit: int,
    as_json: bool,
    store: str,
) -> None:
    """List the runs in the store, newest first."""
    from rich.table import Table
    from rich.text import Text

    runs, live = run_loop(_runs(store, status, workflow, limit or None, waiting_for))
    if as_json:
        _echo_json([run_json(run, live) for run in runs])
        return
    out = _stdout()
    if not runs:
        if status or workflow or waiting_for:
            out.print("no runs matching")
        else:
            out.print(
                "no runs in this store: `surestep run MODULE:WORKFLOW` starts one, as do "
                "Engine.start, the HTTP API (`surestep serve`), schedules and event triggers",
                markup=False,
            )
        return
    wide = out.width >= 110  # in a narrow terminal: no date, no attempt, no session/user
    people = wide and any(run.session_id or run.user_id for run in runs)
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("RUN", no_wrap=True, min_width=32)
    table.add_column("WORKFLOW", overflow="fold", min_width=8)
    table.add_column("STATUS", overflow="fold")
    table.add_column("STARTED", no_wrap=True)
    table.add_column("TOOK", justify="right", no_wrap=True)
    if wide:
        table.add_column("TRY", justify="right", no_wrap=True)
    if people:
        table.add_column("SESSION / USER", overflow="fold", min_width=8)
    for run in runs:
        started = format_time(run.created_at)
        row = [
            Text(run.run_id),
            Text(run.workflow).append(f" {run.version}", style="dim"),  # runs wait for it
            Text(status_text(run, live), style=STATUS_STYLE.get(run.status, "")),
            Text(started[5:19] if wide else started[11:19]),
            Text(format_duration(run_json(run)["duration"])),
        ]
        if wide:
            row.append(Text(str(run.attempt)))
        if people:
            row.append(Text(" / ".join(x or "-" for x in (run.session_id, run.user_id))))
        table.add_row(*row)
    out.print(table)


async def _runs(
    store: str,
    status: str | None,
    workflow: str | None,
    limit: int | None,
    waiting_for: str | None,
) -> tuple[list[RunInfo], list[LiveEngine]]:
    async with _engine(store, reading=True) as engine:
        runs = await engine.runs(
            status=status, workflow=workflow, limit=limit, waiting_for=waiting_for
        )
        return runs, await engine.live_engines()


# ---------------------------------------------------------------- show


@_command("show", short_help="A run: its steps, inputs, outputs, errors and tracebacks.")
@click.argument("run_id", metavar="RUN")
@click.option("--full", is_flag=True, help="Do not shorten inputs and outputs.")
@click.option(
    "--internal",
    is_flag=True,
    help="Also the records surestep keeps for itself (@deadline, journaled values...).",
)
@json_option
@store_option
def show_command(run_id: str, full: bool, internal: bool, as_json: bool, store: str) -> None:
    """Show RUN: its row, then each recorded step (seq, name, status, attempts,
    duration, input, output), then the error and traceback of what failed."""
    from rich.table import Table
    from rich.text import Text

    run, steps, children, live = run_loop(_show(store, run_id, internal))
    if as_json:
        _echo_json({**run_json(run, live), "steps": steps, "children": children})
        return
    out = _stdout()
    width = 10_000 if full else 60
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    took = format_duration(run_json(run)["duration"])
    head.add_row("run", Text(run.run_id))
    head.add_row("workflow", Text(f"{run.workflow}  (version {run.version})"))
    head.add_row("status", Text(status_text(run, live), style=STATUS_STYLE.get(run.status, "")))
    question = getattr(run, "question", None)
    if question is not None:
        head.add_row("answers", _answers_text(question))
    progress = getattr(run, "progress", None)
    if progress is not None:
        head.add_row("progress", _progress_text(progress))
    head.add_row("started", Text(format_time(run.created_at)))
    if run.finished:
        head.add_row("finished", Text(f"{format_time(run.updated_at)}  ({took})"))
    head.add_row("attempt", Text(str(run.attempt)))
    for label, value in (
        ("session", run.session_id),
        ("user", run.user_id),
        ("parent", getattr(run, "parent_id", None)),
    ):
        if value:
            head.add_row(label, Text(value))
    head.add_row("input", Text(_clip(run.workflow + call_text(run.args, run.kwargs), width)))
    if run.status == COMPLETED:
        head.add_row("result", Text(_clip(_compact(run.result), width)))
    if run.error:
        head.add_row("error", _error_text(run.error))
    for child in children:
        line = Text(f"{child['run_id']}  {child['workflow']}  ")
        line.append_text(_status_text(child["status"]))
        head.add_row("child", line)
    out.print(head)
    out.print()
    if not steps:
        out.print(Text("no steps recorded", style="dim"))
    else:
        table = Table(header_style="bold", pad_edge=False, box=None)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("STEP", overflow="fold")
        table.add_column("STATUS", no_wrap=True)
        table.add_column("ATTEMPT", justify="right", no_wrap=True)
        table.add_column("DURATION", justify="right", no_wrap=True)
        table.add_column("INPUT", overflow="fold")
        table.add_column("OUTPUT / ERROR", overflow="fold")
        for step in steps:
            attempt = step["attempt"]
            table.add_row(
                Text(str(step["seq"])),
                Text(step["name"]),
                _status_text(step["status"]),
                Text(str(attempt) if attempt else "-", style="yellow" if attempt > 1 else ""),
                Text(format_duration(step["duration"])),
                Text(_clip(call_text(step["input"]), width)),
                _error_text(step["error"])
                if step["error"]
                else Text(f"until {format_time(step['wake_at'])}")
                if step["wake_at"] is not None
                else Text(_clip(_compact(step["output"]), width)),
            )
        out.print(table)
    failed = [step for step in steps if step["error"] and step["status"] != "retrying"]
    for step in failed:
        _print_traceback(out, f"step {step['seq']} ({step['name']})", step["error"])
    if run.error and not failed:
        _print_traceback(out, "the workflow", run.error)


def _print_traceback(out: Console, what: str, error: dict[str, Any]) -> None:
    from rich.text import Text

    out.print()
    out.print(Text.assemble((f"{what} failed: ", "bold red"), _error_text(error)))
    if error.get("traceback"):
        out.print(Text(str(error["traceback"]).rstrip(), style="dim"))


async def _show(
    store: str, run_id: str, internal: bool
) -> tuple[RunInfo, list[dict[str, Any]], list[dict[str, Any]], list[LiveEngine]]:
    async with _engine(store, reading=True) as engine:
        run = await _resolve(engine, run_id)
        steps = await steps_json(engine, run, internal)
        children = await children_json(engine, run, steps)
        return run, steps, children, await engine.live_engines()


# ---------------------------------------------------------------- logs


@_command("logs", short_help="A run's log lines; --follow until it finishes.")
@click.argument("run_id", metavar="RUN")
@click.option("--follow", "-f", is_flag=True, help="Print new lines until the run finishes.")
@json_option
@store_option
def logs_command(run_id: str, follow: bool, as_json: bool, store: str) -> None:
    """Print RUN's log lines in time order (with --json, one JSON object a line):
    the lines its ctx.logger wrote, and its history from the journal (its
    start, each step's outcome with attempts and duration, its end)."""
    run_loop(_logs(store, run_id, follow, as_json))


async def _logs(store: str, run_id: str, follow: bool, as_json: bool) -> None:
    out = _stdout()
    seen: set[str] = set()
    async with _engine(store, reading=True) as engine:
        run_id = (await _resolve(engine, run_id)).run_id
        while True:
            run = await engine.get_run(run_id)
            lines = await log_lines(engine, run_id)
            for line in sorted((x for x in lines if x["id"] not in seen), key=lambda x: x["time"]):
                seen.add(line["id"])
                if as_json:
                    click.echo(orjson.dumps(line).decode())
                else:
                    out.print(_log_text(line))
            if not follow or run.finished:
                return
            await _wait_change(engine, 0.5)


LEVEL_STYLE = {"ERROR": "red", "CRITICAL": "bold red", "WARNING": "yellow", "DEBUG": "dim"}


def _log_text(line: dict[str, Any]) -> Text:
    from rich.text import Text

    level = str(line["level"]).upper()
    style = LEVEL_STYLE.get(level, "")
    return Text.assemble(
        (format_time(line["time"])[11:], "dim"),
        " ",
        (f"{level:<7}", style),
        " ",
        (str(line["message"]), style),
    )


async def _wait_change(engine: Engine, timeout: float) -> None:
    """Until the store says a run changed, or ``timeout`` seconds (steps send no wake-up)."""
    await engine.store.wait_changed(timeout)


# ---------------------------------------------------------------- cancel, send


@_command("cancel", short_help="Cancel an unfinished run.")
@click.argument("run_id", metavar="RUN")
@store_option
def cancel_command(run_id: str, store: str) -> None:
    """Cancel RUN wherever it executes: it stops at its next step. A run that
    has already finished is left as it is (and the command still exits 0)."""
    run_loop(_cancel(store, run_id))


async def _cancel(store: str, run_id: str) -> None:
    async with _engine(store) as engine:
        run = await _resolve(engine, run_id)
        if await engine.cancel(run.run_id):
            click.echo(f"cancelled run {run.run_id}")
        else:
            now = await engine.get_run(run.run_id)
            click.echo(f"run {run.run_id} had already finished ({now.status}); nothing to cancel")


@_command("send", short_help="Send an event (a name and a JSON payload) to a run.")
@click.argument("run_id", metavar="RUN")
@click.argument("event", metavar="EVENT")
@click.argument("payload", metavar="JSON", default="null")
@store_option
def send_command(run_id: str, event: str, payload: str, store: str) -> None:
    """Send EVENT with the JSON payload to RUN; a run waiting for it continues."""
    value = parse_json(payload, "the event's payload")
    run_loop(_send(store, run_id, event, value))


async def _send(store: str, run_id: str, event: str, payload: Any) -> None:
    async with _engine(store) as engine:
        run = await _resolve(engine, run_id)
        await engine.send_event(run.run_id, event, payload)
        click.echo(f"sent {event} to run {run.run_id}")


@_command("answer", short_help="Answer the question a run waits on (ctx.wait_for_user).")
@click.argument("run_id", metavar="RUN")
@click.argument("answer", metavar="ANSWER", required=False)
@click.option("--skip", is_flag=True, help="Skip the question (when it may be skipped).")
@store_option
def answer_command(run_id: str, answer: str | None, skip: bool, store: str) -> None:
    """Answer the question RUN waits on: text; an option's id (approval, select); ids
    joined by commas (multiselect); or the person's own words where the question
    allows them. --skip skips a question that may be skipped. `surestep show RUN`
    shows the question and its options."""
    if skip == (answer is not None):
        raise click.UsageError("give ANSWER or --skip, not both")
    run_loop(_answer(store, run_id, answer))


async def _answer(store: str, run_id: str, answer: str | None) -> None:
    async with _engine(store) as engine:
        run = await _resolve(engine, run_id)
        await engine.answer(run.run_id, answer)
        click.echo(
            f"answered run {run.run_id}" if answer is not None else f"skipped for run {run.run_id}"
        )


def _answers_text(question: dict[str, Any]) -> Text:
    """What the question a run waits on takes (its status says the question)."""
    from rich.text import Text

    text = Text()
    takes = [option["id"] for option in question["options"]]
    if question["allow_custom"]:
        takes.append("(their own words)")
    if question["skippable"]:
        takes.append("(--skip)")
    text.append(f"{question['input_type']}: {', '.join(takes) or 'text'}")
    text.append("  surestep answer RUN ANSWER", style="dim")
    return text


def _progress_text(report: dict[str, Any]) -> Text:
    """A progress report: the count (of the total) and the message."""
    from rich.text import Text

    count = f"{report['n']:g}" + (f" / {report['total']:g}" if report.get("total") else "")
    text = Text(count)
    if report.get("message"):
        text.append(f"  {report['message']}", style="dim")
    return text


# ---------------------------------------------------------------- schedules, emit


@main.group(
    "schedules",
    cls=click.Group,
    invoke_without_command=True,
    short_help="List schedules with their next tick; pause or resume one.",
    epilog=EXIT_CODES_HELP,
)
@json_option
@store_option
@click.pass_context
def schedules_command(ctx: click.Context, as_json: bool, store: str) -> None:
    """The stored schedules (workflows with cron= or every=): definition, catch-up
    policy, paused or not, the last tick fired and the next one."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table
    from rich.text import Text

    rows = run_loop(_schedules(store))
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        _stdout().print(
            "no schedules in this store: a workflow declared with cron= or every= is scheduled "
            "once a worker serving it starts (`surestep worker MODULE`, `surestep serve MODULE`)",
            markup=False,
        )
        return
    table = Table("workflow", "schedule", "catch-up", "state", "last tick", "next tick", "version")
    for row in rows:
        when = (
            f"cron {row['cron']} ({row['timezone']})" if row["cron"] else f"every {row['every']:g}s"
        )
        state = Text("paused", style="yellow") if row["paused"] else Text("active", style="green")
        last = format_time(row["last_tick"]) if row["last_tick"] is not None else "-"
        upcoming = format_time(row["next_tick"]) if row["next_tick"] is not None else "-"
        table.add_row(row["workflow"], when, row["catchup"], state, last, upcoming, row["version"])
    _stdout().print(table)


async def _schedules(store: str) -> list[dict[str, Any]]:
    async with _engine(store, reading=True) as engine:
        return await engine.schedules()


def _pause_command(name: str, paused: bool) -> click.Command:
    verb = "pause" if paused else "resume"
    summary = (
        "Fire no more ticks of a workflow's schedule until it is resumed."
        if paused
        else "Fire a paused schedule again, from its next tick."
    )

    @schedules_command.command(verb, short_help=summary, epilog=EXIT_CODES_HELP)
    @click.argument("workflow", metavar="NAME")
    @store_option
    def command(workflow: str, store: str) -> None:
        row = run_loop(_pause(store, workflow, paused))
        click.echo(f"{verb}d the schedule of {row['workflow']}")

    command.help = summary + (
        " Every process sees it at its next tick."
        if paused
        else " The ticks of the pause get no run."
    )
    return command


async def _pause(store: str, workflow: str, paused: bool) -> dict[str, Any]:
    async with _engine(store) as engine:
        if paused:
            return await engine.pause_schedule(workflow)
        return await engine.resume_schedule(workflow)


pause_command = _pause_command("pause", True)
resume_command = _pause_command("resume", False)


@_command("emit", short_help="Emit an event: start the workflows subscribed to it.")
@click.argument("event", metavar="EVENT")
@click.argument("payload", metavar="JSON", default="null")
@click.option(
    "--id", "event_id", metavar="ID", help="The event's id: the same id starts nothing new."
)
@json_option
@store_option
def emit_command(event: str, payload: str, event_id: str | None, as_json: bool, store: str) -> None:
    """Start one run of every workflow subscribed to EVENT (@workflow(triggers=[event(...)])),
    with the JSON object's keys as its keyword arguments; prints the runs' ids. The
    workflows' code is not needed here: subscriptions are in the store."""
    value = parse_json(payload, "the event's payload")
    runs = run_loop(_emit(store, event, value, event_id))
    if as_json:
        _echo_json([{"run_id": run.run_id, "workflow": run.workflow} for run in runs])
        return
    if not runs:
        click.echo(f"no workflow is subscribed to {event}: no run started")
    for run in runs:
        click.echo(f"{run.run_id} {run.workflow}")


async def _emit(store: str, event: str, payload: Any, event_id: str | None) -> list[RunInfo]:
    async with _engine(store) as engine:  # subscriptions live in an existing store
        handles = await engine.emit(event, payload, id=event_id)
        return [await handle.info() for handle in handles]


# ---------------------------------------------------------------- versions and deploys


def _module_workflows(module: ModuleType, names: Sequence[str]) -> list[WorkflowSpec]:
    """The workflows ``module`` defines (or those of ``names``)."""
    specs = {
        spec.name: spec
        for value in vars(module).values()
        if isinstance(spec := spec_of(value), WorkflowSpec)
    }
    missing = [name for name in names if name not in specs]
    if missing:
        raise CliError(f"{module.__name__} defines no workflow {missing[0]!r}", EXIT_NOT_FOUND)
    chosen = [specs[name] for name in names] if names else list(specs.values())
    if not chosen:
        raise CliError(f"{module.__name__} defines no @workflow", EXIT_NOT_FOUND)
    return chosen


@_command("deploy", short_help="Make a module's workflows current for new runs.")
@click.argument("module", metavar="MODULE")
@click.option(
    "--version", "version", metavar="V", help="Record this version instead of the code's."
)
@click.option(
    "--workflow", "-w", "names", multiple=True, metavar="NAME", help="Only this workflow."
)
@json_option
@store_option
def deploy_command(
    module: str, version: str | None, names: tuple[str, ...], as_json: bool, store: str
) -> None:
    """Record a deployment of each workflow MODULE defines (its declared version, or a
    digest of its code): new runs take it. Runs already started keep their version,
    and only workers serving that version resume them."""
    specs = _module_workflows(import_target(module), names)
    rows = run_loop(_deploy(store, specs, version))
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        click.echo(f"deployed {row['workflow']} version {row['version']} ({row['digest']})")


async def _deploy(store: str, specs: list[WorkflowSpec], version: str | None) -> list[Any]:
    async with _engine(store, create=True) as engine:
        return [await engine.deploy(spec.name, version) for spec in specs]


@_command("deployments", short_help="List deployments and their unfinished runs.")
@json_option
@store_option
def deployments_command(as_json: bool, store: str) -> None:
    """Every recorded deployment, oldest first, with how many of its runs are unfinished."""
    from rich.table import Table

    rows = run_loop(_deployments(store))
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        _stdout().print(
            "no deployments in this store: `surestep deploy MODULE` records one; until then "
            "each new run takes the version of the code that starts it",
            markup=False,
        )
        return
    table = Table("workflow", "version", "digest", "deployed", "in flight", "retention")
    for row in rows:
        when = format_time(row["time"])
        keep = describe_retention(row["retention"])
        table.add_row(
            row["workflow"], row["version"], row["digest"], when, str(row["in_flight"]), keep
        )
    _stdout().print(table)


async def _deployments(store: str) -> list[dict[str, Any]]:
    async with _engine(store, reading=True) as engine:
        return await engine.deployments()


@_command("replay", short_help="Check stored runs against today's code, running no step.")
@click.argument("module", metavar="MODULE")
@click.option("--check", is_flag=True, required=True, help="Only check (the one mode there is).")
@click.option("--run", "run_ids", multiple=True, metavar="RUN", help="Only this run.")
@click.option("--all-in-flight", is_flag=True, help="Every unfinished run (the default).")
@json_option
@store_option
def replay_command(
    module: str,
    check: bool,
    run_ids: tuple[str, ...],
    all_in_flight: bool,
    as_json: bool,
    store: str,
) -> None:
    """Replay the journals of stored runs against the workflows MODULE defines, as
    the code stands, without executing any step. Each run is "compatible" or shows
    its first divergence (step, recorded, asked, source line). Exit 1 when any run
    would diverge, so it can gate a deploy."""
    from rich.text import Text

    if run_ids and all_in_flight:
        raise CliError("give --run or --all-in-flight, not both")
    import_target(module)
    reports = run_loop(_replay(store, list(run_ids) or None))
    if as_json:
        _echo_json(
            [
                {
                    "run_id": r.run_id,
                    "workflow": r.workflow,
                    "compatible": r.compatible,
                    "replayed": r.replayed,
                    "problem": None if r.compatible else r.describe(),
                }
                for r in reports
            ]
        )
    else:
        for report in reports:
            style = "green" if report.compatible else "red"
            _stdout().print(Text(report.describe(), style=style))
        bad = sum(not r.compatible for r in reports)
        _stderr().print(Text(f"{len(reports)} run(s) checked, {bad} incompatible", style="dim"))
    if any(not r.compatible for r in reports):
        raise SystemExit(EXIT_FAILED)


async def _replay(store: str, run_ids: list[str] | None) -> list[Any]:
    from .testing import check_store

    async with _engine(store, reading=True) as engine:
        if run_ids is not None:
            run_ids = [(await _resolve(engine, run_id)).run_id for run_id in run_ids]
        return await check_store(engine, run_ids)


@_command("fork", short_help="A new run that reuses a run's journal up to a step.")
@click.argument("run_id", metavar="RUN")
@click.option("--from-step", "from_step", type=click.IntRange(min=0), required=True, metavar="K")
@store_option
def fork_command(run_id: str, from_step: int, store: str) -> None:
    """Start a new run of RUN's workflow and input that reuses its journal before
    step K and executes from there on today's code (by a worker that serves it)."""
    click.echo(run_loop(_fork(store, run_id, from_step)))


async def _fork(store: str, run_id: str, from_step: int) -> str:
    async with _engine(store) as engine:
        run = await _resolve(engine, run_id)
        handle = await engine.fork(run.run_id, from_step)
        return f"forked run {run.run_id} from step {from_step}: new run {handle.run_id}"


# ---------------------------------------------------------------- worker, ui


@_command("worker", short_help="Execute runs from the store: new ones and abandoned ones.")
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
@_whole_option(
    "--concurrency", "-c", minimum=1, default=100, help="At most this many runs at once."
)
@store_option
def worker_command(modules: tuple[str, ...], concurrency: int, store: str) -> None:
    """Import each MODULE (a dotted module name or a .py file) and execute the
    runs of its workflows: runs started elsewhere, and runs whose worker died.
    SIGTERM or Ctrl-C drains: no new runs, running ones finish or are given back."""
    from rich.text import Text

    try:
        from .worker import serve
    except ImportError as exc:
        raise CliError(f"workers are not available in this installation: {exc}") from None
    names = []
    for target in modules:
        module = import_target(target)
        if not any(isinstance(spec_of(value), WorkflowSpec) for value in vars(module).values()):
            raise CliError(
                f"{target} defines no @workflow: a worker of it would have nothing to execute"
            )
        names.append(module.__name__)
    _log_to_stderr()
    note = (
        f"worker: {', '.join(names)} from {store}, up to {concurrency} runs at once; Ctrl-C stops"
    )
    _stderr().print(Text(note, style="dim"))
    run_loop(serve(store, names, concurrency))


def _http_options(default_port: int) -> Callable[[F], F]:
    """The options ``ui`` and ``serve`` share: where to listen and who may use it."""

    def decorate(fn: F) -> F:
        options = [
            click.option(
                "--host", default="127.0.0.1", show_default=True, help="The address to listen on."
            ),
            click.option(
                "--port",
                type=click.IntRange(0, 65535),
                default=default_port,
                show_default=True,
                help="The port (0: any free one).",
            ),
            click.option(
                "--token",
                envvar="SURESTEP_UI_TOKEN",
                show_envvar=True,
                metavar="TOKEN",
                help="Require this token, which may read and act "
                "(a token is required when --host is not a loopback address).",
            ),
            click.option(
                "--read-token",
                envvar="SURESTEP_UI_READ_TOKEN",
                show_envvar=True,
                metavar="TOKEN",
                help="Also accept this token, which may only read.",
            ),
            click.option("--read-only", is_flag=True, help="No actions, whatever the token."),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _serve_http(
    engine: Engine,
    *,
    what: str,
    host: str,
    port: int,
    token: str | None,
    read_token: str | None,
    allow_actions: bool,
    dashboard: bool,
    store: str,
) -> None:
    """Serve the app under uvicorn until SIGINT or SIGTERM; prints where, once listening."""
    from .web.serve import serve

    if not is_loopback(host) and not (token or read_token):
        raise CliError(
            f"refusing to serve the {what} on {host} without --token (or SURESTEP_UI_TOKEN): "
            "anyone who reaches it would see every run's inputs and outputs"
        )

    def ready(url: str) -> None:
        mode = "actions allowed" if allow_actions else "read-only"
        # The token goes in a loopback URL only, which is opened on this machine.
        shown = f"{url}?token={token}" if token and is_loopback(host) else url
        click.echo(f"surestep {what}: {shown}  ({mode}; store {store}; Ctrl-C to stop)")
        sys.stdout.flush()

    _log_to_stderr(logging.WARNING)
    try:
        run_loop(
            serve(
                engine,
                host=host,
                port=port,
                token=token or None,
                read_token=read_token or None,
                allow_actions=allow_actions,
                dashboard=dashboard,
                on_ready=ready,
            )
        )
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@_command("ui", short_help="Serve the dashboard (127.0.0.1:8765 by default).")
@_http_options(8765)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Allow cancel and send-event when not on loopback (read-only there by default).",
)
@store_option
def ui_command(
    host: str,
    port: int,
    token: str | None,
    read_token: str | None,
    read_only: bool,
    allow_actions: bool,
    store: str,
) -> None:
    """Serve the dashboard: runs, a step timeline, inputs, outputs, errors and
    logs, with live updates; cancel runs and send them events.

    On a loopback address (the default) anyone on this machine may use it. On
    any other address it refuses to start without --token, and it is read-only
    unless --allow-actions. Its JSON API is the one `surestep serve` serves.
    """
    from .engine import Engine

    _require_store(store)
    _serve_http(
        Engine(store),
        what="dashboard",
        host=host,
        port=port,
        token=token,
        read_token=read_token,
        allow_actions=not read_only and (allow_actions or is_loopback(host)),
        dashboard=True,
        store=store,
    )


@_command("serve", short_help="Serve the HTTP API and the dashboard (127.0.0.1:8000).")
@click.argument("modules", nargs=-1, metavar="[MODULE]...")
@_http_options(8000)
@click.option(
    "--execute/--no-execute",
    default=True,
    show_default=True,
    help="Execute the runs started through the API here (else a surestep worker does).",
)
@click.option("--no-dashboard", is_flag=True, help="The API only, without the dashboard's page.")
@store_option
def serve_command(
    modules: tuple[str, ...],
    host: str,
    port: int,
    token: str | None,
    read_token: str | None,
    read_only: bool,
    execute: bool,
    no_dashboard: bool,
    store: str,
) -> None:
    """Serve the HTTP API (start runs, wait for results, stream their steps,
    cancel, send events) and the dashboard, under uvicorn.

    Import each MODULE (a dotted module name or a .py file): the API starts
    runs of their workflows. Those runs execute in this process (which first
    resumes the unfinished runs of those workflows that nobody holds), or with
    --no-execute in a `surestep worker` serving them. On a loopback address
    (the default) anyone on this machine may use it; on any other address it
    refuses to start without --token. --read-token adds a token that may only
    read.
    """
    from .engine import Engine

    for module in modules:
        import_target(module)
    _serve_http(
        Engine(store, execute=execute),
        what="server",
        host=host,
        port=port,
        token=token,
        read_token=read_token,
        allow_actions=not read_only,
        dashboard=not no_dashboard,
        store=store,
    )


@_command("gc", short_help="Remove finished runs whose retention ran out.")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Every finished run that finished longer ago than this (e.g. 30d), whatever "
    "its retention.",
)
@click.option(
    "--retention",
    metavar="DURATION",
    help="The retention of runs finished under no policy of their own (e.g. 7d, forever); "
    "default: the store's.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@json_option
@store_option
def gc_command(
    older_than: str | None, retention: str | None, dry_run: bool, as_json: bool, store: str
) -> None:
    """Remove the finished runs (with their journals, logs and events) whose
    retention ran out, or, with --older-than, every run that finished before then.
    Unfinished runs, and runs whose parent is still kept, are never removed."""
    report = run_loop(_gc(store, older_than, retention, dry_run))
    if as_json:
        _echo_json(report.to_dict())
        return
    from rich.table import Table

    out = _stdout()
    verb = "would remove" if dry_run else "removed"
    table = Table("run", "workflow", "status", "finished")
    for run in report.runs:
        table.add_row(
            run["run_id"], run["workflow"], run["status"], format_time(run["finished_at"])
        )
    if report.runs:
        out.print(table)
    records = "" if dry_run else f" and {report.records} records"
    out.print(f"{verb} {len(report.runs)} finished runs{records}")


async def _gc(store: str, older_than: str | None, retention: str | None, dry_run: bool) -> Any:
    async with _engine(store, retention=retention) as engine:
        return await engine.purge(older_than=older_than, dry_run=dry_run)


@_command("stats", short_help="The store's size, runs by status, the oldest finished run.")
@json_option
@store_option
def stats_command(as_json: bool, store: str) -> None:
    """How large the store is, how many runs it holds in each status, when its
    oldest finished run finished, and the retention applied by default."""
    stats = run_loop(_stats(store))
    if as_json:
        _echo_json(stats)
        return
    from rich.table import Table

    table = Table("", "", show_header=False, box=None)
    for name, value in stats["size"].items():
        if isinstance(value, dict):
            for table_name, size in value.items():
                table.add_row(f"size of {table_name}", _bytes(size))
        else:
            table.add_row(name.removesuffix("_bytes").replace("_", " "), _bytes(value))
    for status, count in stats["runs"].items():
        table.add_row(f"runs {status}", str(count))
    oldest = stats["oldest_finished"]
    table.add_row("oldest finished", format_time(oldest) if oldest else "none")
    table.add_row("purged, records being deleted", str(stats["hidden"]))
    table.add_row("default retention", stats["default_retention"])
    _stdout().print(table)


def _bytes(count: int) -> str:
    """``512 B``, ``3.2 MiB``."""
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


async def _stats(store: str) -> dict[str, Any]:
    async with _engine(store) as engine:
        return await engine.stats()


def _warnings_to_stderr() -> None:
    """The engine's warnings, one line each on stderr, as the command's own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("surestep: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def _log_to_stderr(level: int = logging.INFO) -> None:
    """Log lines on stderr: rich's in a terminal, plain timestamped lines elsewhere."""
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=_stderr(), show_path=False, markup=False, rich_tracebacks=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


if __name__ == "__main__":  # pragma: no cover
    main()
