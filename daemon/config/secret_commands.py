"""``invoicesync secret set NAME`` / ``secret delete NAME`` (SPEC section 5).

A click group the CLI attaches with ``main.add_command(secret)``. The value is
prompted for without echo (twice, to catch typos) on a terminal; from a pipe
it is read as one line, so scripts can do
``printf %s "$PW" | invoicesync secret set imap``.
"""

from __future__ import annotations

import sys

import click

from .secrets import SecretError, delete_secret, set_secret

__all__ = ["secret"]

EXIT_USAGE = 2


@click.group()
def secret() -> None:
    """Store or remove secrets in the system keyring (for keyring:NAME references)."""


def _fail(exc: SecretError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(EXIT_USAGE)


@secret.command("set")
@click.argument("name")
def set_command(name: str) -> None:
    """Store the secret NAME (prompted, never echoed); use it as keyring:NAME."""
    stdin = sys.stdin
    if stdin.isatty():
        value = click.prompt(
            f"Secret for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
    else:
        value = stdin.readline().rstrip("\r\n")
    try:
        set_secret(name, value)
    except SecretError as exc:
        _fail(exc)
    click.echo(f"stored {name} in the keyring; reference it as keyring:{name}")


@secret.command("delete")
@click.argument("name")
def delete_command(name: str) -> None:
    """Remove the secret NAME from the keyring."""
    try:
        delete_secret(name)
    except SecretError as exc:
        _fail(exc)
    click.echo(f"deleted {name} from the keyring")
