"""Ops commands for the `flask` CLI (`flask --app wsgi <command>`)."""

from __future__ import annotations

import click
from flask import Flask, current_app


def register(app: Flask) -> None:
    """Attach grokproxy's commands to the app's CLI."""
    app.cli.add_command(upgrade_db)


@click.command("upgrade-db")
def upgrade_db() -> None:
    """Apply pending migrations under the same lock gunicorn's start-up uses."""
    from .dbupgrade import upgrade_database

    upgrade_database(current_app._get_current_object())
    click.echo("database schema is up to date")
