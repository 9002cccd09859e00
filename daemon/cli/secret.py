"""``invoicesync secret set`` and ``secret delete``: secrets in the system keyring."""

from __future__ import annotations

import sys

import click

from . import main
from .common import fail


@main.group()
def secret() -> None:
    """Store or delete secrets in the system keyring.

    The configuration refers to a stored secret as `keyring:NAME`. On a
    headless server without a keyring, use `env:VAR` or systemd credentials
    (`credential:NAME`) instead; see docs/secrets.md.
    """


@secret.command("set")
@click.option(
    "--allow-insecure-keyring",
    is_flag=True,
    help="Store the secret even if the keyring backend keeps it in plain text "
    "(keyrings.alt's PlaintextKeyring); refused otherwise.",
)
@click.argument("name")
def secret_set(name: str, allow_insecure_keyring: bool) -> None:
    """Store a secret in the keyring as NAME: typed at a prompt (not echoed), or piped in.

    On a terminal it asks twice; otherwise it reads standard input (one
    trailing newline is dropped), so scripts can do
    `printf %s "$PW" | invoicesync secret set NAME`.
    A keyring backend that keeps secrets in a plain-text file is refused unless
    --allow-insecure-keyring is given; with no keyring backend at all it fails
    at once, before asking.
    """
    from invoicesync.daemon.config.secrets import (
        SecretError,
        insecure_keyring_backend,
        keyring_available,
        refuse_insecure_keyring,
        set_secret,
    )

    # Refuse before prompting: nobody should type a secret for nothing.
    if not keyring_available():
        fail(
            f"cannot store secret {name!r}: no keyring backend on this machine (typical "
            "for a headless server); use env:VAR or credential:NAME in the configuration "
            "instead (see docs/secrets.md)"
        )
    insecure = insecure_keyring_backend()
    if not allow_insecure_keyring:
        try:
            refuse_insecure_keyring(name)
        except SecretError as exc:
            fail(str(exc))
    if sys.stdin.isatty():
        value = click.prompt(f"Secret for {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if insecure:
        click.echo(
            f"warning: the keyring backend {insecure} stores {name!r} in PLAIN TEXT "
            "(base64) in a file; anyone who can read that file can read the secret",
            err=True,
        )
    try:
        set_secret(name, value, allow_insecure=allow_insecure_keyring)
    except SecretError as exc:
        fail(str(exc))
    click.echo(f"stored; refer to it as keyring:{name}")


@secret.command("delete")
@click.argument("name")
def secret_delete(name: str) -> None:
    """Remove the secret NAME from the keyring."""
    from invoicesync.daemon.config.secrets import SecretError, delete_secret

    try:
        delete_secret(name)
    except SecretError as exc:
        fail(str(exc))
    click.echo(f"deleted {name}")
