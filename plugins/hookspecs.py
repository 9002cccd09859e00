"""Hook specifications: everything a plugin can add to invoicesync.

Hooks are grouped by lifecycle. Each only ever gains arguments, never loses or
renames one (pluggy passes implementations just the arguments they name, so
old plugins keep working). Implement a hook with the ``hookimpl`` marker::

    from invoicesync.plugins import hookimpl

    @hookimpl
    def invoicesync_register_targets():
        return [MyTarget]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .checks import AttributeCheck
    from .connectors import Source, Target
    from .extractors import Extractor
    from .models import Document

PROJECT_NAME = "invoicesync"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- Registration: called once, when plugins are loaded ----------------------


@hookspec
def invoicesync_register_sources() -> list[type[Source[Any]]]:
    """Return the source connector classes this plugin adds.

    Each class sets ``type_name`` (the ``type:`` users write under
    ``sources:``), an ``Options`` pydantic model and implements ``fetch``.
    Two plugins registering the same ``type_name`` is an error at start-up.
    """
    raise NotImplementedError


@hookspec
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    """Return the export target classes this plugin adds.

    Each class sets ``type_name`` (the ``type:`` users write under
    ``exports:``), an ``Options`` pydantic model and implements ``export``.
    Two plugins registering the same ``type_name`` is an error at start-up.
    """
    raise NotImplementedError


@hookspec
def invoicesync_register_checks() -> list[type[AttributeCheck]]:
    """Return attribute checks usable under ``restrictions.attributes``.

    Each class sets ``key`` (its YAML key), an ``Options`` model and
    implements ``evaluate(document)``. A key already taken (by a built-in
    check or another plugin) is an error at start-up.
    """
    raise NotImplementedError


@hookspec
def invoicesync_register_extractors() -> list[type[Extractor]]:
    """Return the extractors this plugin adds (API 1.2).

    Each class sets ``name`` (what users list under a source's ``extract:``),
    ``label`` and ``priority``, and implements ``detect`` (cheap) and
    ``extract``. They run at import, before the catalog commit; the source's
    explicit fields always win. Two plugins registering the same ``name`` is
    an error at start-up.
    """
    raise NotImplementedError


# -- Events: called while the engine works ------------------------------------


@hookspec
def invoicesync_document_imported(document: Document, source_id: str, new_revision: bool) -> None:
    """Called after a document (or a new revision of it) was committed to the catalog.

    ``new_revision`` is false for a metadata-only update. Runs in the
    importing thread: keep it quick and never raise.
    """


@hookspec
def invoicesync_document_exported(
    document: Document, account_id: str, remote_name: str, remote_ref: str
) -> None:
    """Called after a document was exported and the ledger committed it.

    Runs in the exporting thread: keep it quick and never raise.
    """
