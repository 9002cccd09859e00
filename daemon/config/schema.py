"""The JSON Schema of the configuration, with every installed connector's options.

Editors using yaml-language-server validate and complete the file with it.
Connector options are attached per ``type`` with ``if``/``then``, so the schema
follows whatever plugins are installed.
"""

from __future__ import annotations

from typing import Any

from invoicesync.daemon.plugin_host import PluginRegistry

from .models import Config


def build_schema(registry: PluginRegistry) -> dict[str, Any]:
    schema = Config.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "invoicesync configuration"
    defs = schema.setdefault("$defs", {})
    for section, def_name, types in (
        ("sources", "SourceConfig", registry.sources),
        ("exports", "ExportConfig", registry.targets),
    ):
        branches = []
        for type_name, cls in sorted(types.items()):
            options = cls.Options.model_json_schema(
                mode="validation", ref_template="#/$defs/{model}"
            )
            defs.update(options.pop("$defs", {}))
            key = f"{section}-{type_name}-options"
            defs[key] = options
            branches.append(
                {
                    "if": {"properties": {"type": {"const": type_name}}},
                    "then": {"properties": {"options": {"$ref": f"#/$defs/{key}"}}},
                }
            )
        target = defs[def_name]
        target["properties"]["type"]["enum"] = sorted(types)
        if branches:
            target["allOf"] = branches
    return schema
