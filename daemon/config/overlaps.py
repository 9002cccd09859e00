"""Folders that must not lie inside one another (issue 10 item 5).

An export folder inside a source folder loops without end: every sync
imports its own exports again, and in watch mode each export triggers the
next import until the disk is full. The state folder inside a source folder
imports the catalog's own blobs; a source or an export folder inside the state
folder mixes documents with the catalog. So the configuration is refused when
one of these resolved folders lies inside (or is) another:

- a ``folder`` source's ``path`` and a ``folder`` export's ``path`` (either
  way round; an export folder *below* a source that is not ``recursive`` is
  fine, that source never enters it);
- the state folder (and a local ``blobs`` folder) and any ``folder`` source
  or export ``path`` (either way round; again, below a source that is not
  ``recursive`` is fine).

Paths are compared after resolving symbolic links (``realpath``), so a link
cannot hide the overlap; folders that do not exist yet are compared as they
will be created.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .models import Config

__all__ = ["FOLDER_TYPE", "Place", "overlapping_folders"]

FOLDER_TYPE = "folder"
"""The connector type (source and target) whose ``path`` option is a local folder."""


@dataclass(frozen=True)
class Place:
    """A folder invoicesync reads or writes, and where the configuration says so."""

    what: str  # "the folder source 'inbox'", "the state folder"
    path: Path  # as configured (absolute)
    real: str  # resolved
    loc: tuple[str | int, ...]  # configuration path of the value, () when defaulted
    recursive: bool = True  # for sources: whether sub-folders are walked


def _inside(inner: str, outer: str) -> bool:
    """``inner`` is ``outer`` or lies below it (both resolved)."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _place(what: str, path: Path, loc: tuple[str | int, ...], recursive: bool = True) -> Place:
    return Place(what, path, os.path.realpath(path), loc, recursive)


def _option_path(options: BaseModel | None) -> Path | None:
    value = getattr(options, "path", None)
    return value if isinstance(value, Path) else None


def overlapping_folders(
    config: Config,
    source_options: dict[str, BaseModel],
    export_options: dict[str, BaseModel],
    describe: Callable[[tuple[str | int, ...]], str],
) -> list[tuple[tuple[str | int, ...], str]]:
    """Every forbidden overlap: (configuration path to blame, message).

    ``describe(loc)`` renders where a value is written (``sources[0].options.path,
    line 7``) so that a message can name the other place too.
    """
    sources: list[Place] = []
    for i, source in enumerate(config.sources):
        options: Any = source_options.get(source.id)
        path = _option_path(options) if source.type == FOLDER_TYPE else None
        if path is not None:
            recursive = bool(getattr(options, "recursive", True))
            sources.append(
                _place(
                    f"the folder of source {source.id!r}",
                    path,
                    ("sources", i, "options", "path"),
                    recursive,
                )
            )
    exports: list[Place] = []
    for i, export in enumerate(config.exports):
        path = _option_path(export_options.get(export.id)) if export.type == FOLDER_TYPE else None
        if path is not None:
            exports.append(
                _place(
                    f"the folder of export {export.id!r}", path, ("exports", i, "options", "path")
                )
            )
    state = [_place("the state folder", config.state, ("state",))]
    if config.blobs is not None and "://" not in config.blobs:
        state.append(_place("the blobs folder", Path(config.blobs), ("blobs",)))

    found: list[tuple[tuple[str | int, ...], str]] = []

    def refuse(blamed: Place, other: Place, why: str) -> None:
        where = describe(other.loc)
        relation = "is" if blamed.real == other.real else "lies inside"
        if _inside(other.real, blamed.real) and blamed.real != other.real:
            relation = "contains"
        found.append(
            (
                blamed.loc,
                f"{blamed.what} {blamed.path} {relation} {other.what} {other.path}"
                f"{f' ({where})' if where else ''}: {why}; keep them apart",
            )
        )

    for out in exports:
        for src in sources:
            if _inside(out.real, src.real):
                if out.real != src.real and not src.recursive:
                    continue  # that source never enters sub-folders
                refuse(out, src, "every sync would import its own exports again")
            elif _inside(src.real, out.real):
                refuse(out, src, "every sync would import its own exports again")
    for place in state:
        for src in sources:
            below_flat = place.real != src.real and not src.recursive
            if (_inside(place.real, src.real) and not below_flat) or _inside(src.real, place.real):
                refuse(src, place, "the source would import the catalog's own files")
        for out in exports:
            if _inside(place.real, out.real) or _inside(out.real, place.real):
                refuse(out, place, "exports would be written among the catalog's files")
    return found
