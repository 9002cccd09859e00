"""Configuration and plugins: ``check-config``, ``plugins`` and ``config-schema``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import main
from .common import EXIT_FAILED, EXIT_OK, cells
from .context import AppContext


@main.command("check-config")
@click.option("--connect", is_flag=True, help="Also connect to every source and target (check()).")
@click.pass_obj
def check_config(app: AppContext, connect: bool) -> None:
    """Validate the configuration, every connector's options included."""
    loaded = app.loaded
    cfg = loaded.config
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    app.out.print(
        f"{loaded.path}: OK — {len(cfg.sources)} source(s), {len(cfg.exports)} export "
        f"account(s), {len(cfg.companies)} company profile(s)",
        markup=False,
    )
    if not connect:
        return
    from invoicesync.plugins.errors import ConfigurationError, ConnectorError
    from rich.markup import escape

    failed = False
    with app.runtime(read_only=True) as rt:
        connectors: list[tuple[str, Any, Callable[[Any], Any]]] = [
            (f"source {s.id}", s, rt.make_source) for s in cfg.sources
        ] + [(f"export {a.id}", a, rt.make_target) for a in cfg.exports]
        for label, entry, make in connectors:
            try:
                connector = make(entry)
                try:
                    connector.check()
                finally:
                    connector.close()
                app.out.print(f"  [green]✓[/] {escape(label)}")
            except (ConnectorError, ConfigurationError, OSError) as exc:
                failed = True
                app.out.print(f"  [red]✗[/] {escape(label)}: ", end="")
                app.out.print(str(exc), markup=False)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(app: AppContext, as_json: bool) -> None:
    """Installed plugins and the connector types, checks and extractors each adds.

    A connector whose optional Python package is missing is marked with what
    installs it (e.g. `sftp (needs: pip install 'invoicesync[sftp]')`); a
    configuration using it is invalid until then.
    """
    from invoicesync.daemon import __version__
    from invoicesync.daemon.extras import missing_requirements
    from rich.table import Table

    registry = app.registry
    needs: dict[str, str] = {}
    for kind, types in (("source", registry.sources), ("target", registry.targets)):
        for name, cls in types.items():
            missing = missing_requirements(cls)
            if missing:
                needs[f"{kind}:{name}"] = "pip install " + " ".join(
                    sorted({f"'{hint}'" for hint in missing.values()})
                )
    if as_json:
        out = []
        for info in registry.plugins:
            row = info.as_dict()
            row["missing"] = {
                key.split(":", 1)[1]: hint
                for key, hint in needs.items()
                if key.split(":", 1)[1]
                in (info.sources if key.startswith("source:") else info.targets)
            }
            out.append(row)
        click.echo(json.dumps(out, indent=2))
        return

    def listing(kind: str, names: list[str]) -> str:
        return (
            ", ".join(
                name + (f" (needs: {needs[f'{kind}:{name}']})" if f"{kind}:{name}" in needs else "")
                for name in names
            )
            or "-"
        )

    table = Table("plugin", "version", "sources", "targets", "checks", "extractors")
    for info in registry.plugins:
        table.add_row(
            *cells(
                info.name + (" (built-in)" if info.builtin else ""),
                info.version or __version__,
                listing("source", info.sources),
                listing("target", info.targets),
                ", ".join(info.checks) or "-",
                ", ".join(info.extractors) or "-",
            )
        )
    app.out.print(table)


@main.command("config-schema")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@click.pass_obj
def config_schema(app: AppContext, output: Path | None) -> None:
    """Print the JSON Schema of the configuration, connectors' options included.

    For editors: save it and add `# yaml-language-server: $schema=PATH` at the
    top of your configuration file.
    """
    from invoicesync.daemon.config.schema import build_schema

    text = json.dumps(build_schema(app.registry), indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)
