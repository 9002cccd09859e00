"""invoicesync plugin: export documents to Paperless-ngx.

Installed, it registers the ``paperless`` export target through the entry
point group ``invoicesync`` (see this package's pyproject.toml)::

    exports:
      - id: paperless
        type: paperless
        filename: "{company} {type} {number}.{ext}"
        options:
          url: https://paperless.example.com
          token: keyring:paperless-token
"""

from __future__ import annotations

from typing import Any

from invoicesync.plugins import PLUGIN_API_VERSION, PluginError, Target, hookimpl

from .target import PaperlessOptions, PaperlessTarget

__all__ = ["PaperlessOptions", "PaperlessTarget"]
__version__ = "0.1.0"

# The plugin API promises compatibility within a major version: refuse to
# load against another one instead of failing in the middle of a sync.
if PLUGIN_API_VERSION.split(".")[0] != "1":
    raise PluginError(
        f"invoicesync-paperless {__version__} needs plugin API 1.x, "
        f"this invoicesync has {PLUGIN_API_VERSION}"
    )


@hookimpl
def invoicesync_register_targets() -> list[type[Target[Any]]]:
    """Add the ``paperless`` export target."""
    return [PaperlessTarget]
