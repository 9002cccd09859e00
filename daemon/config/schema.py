"""The JSON Schema of the configuration, with every installed connector's options.

Editors using yaml-language-server validate and complete the file with it.
Connector options are attached per ``type`` with ``if``/``then``, so the schema
follows whatever plugins are installed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from invoicesync.daemon.plugin_host import PluginRegistry
from pydantic.json_schema import GenerateJsonSchema

from .durations import format_duration
from .models import Config

# pydantic's names for constraints it could not map to a JSON Schema keyword
# (they end up verbatim in the schema, where validators ignore them).
_STANDARD_BOUNDS = {
    "gt": "exclusiveMinimum",
    "ge": "minimum",
    "lt": "exclusiveMaximum",
    "le": "maximum",
}


class _Generator(GenerateJsonSchema):
    """Defaults as users write them: ``30s``, not pydantic's ISO ``PT30S``."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def _standard_keywords(node: Any) -> None:
    """Rename ``gt``/``le``... to JSON Schema's keywords, in place (plugins' models too)."""
    if isinstance(node, list):
        for item in node:
            _standard_keywords(item)
        return
    if not isinstance(node, dict):
        return
    # Only where a schema is (one with a type or another keyword), never
    # inside ``properties``, whose keys are option names.
    for key, value in list(node.items()):
        if key == "properties" and isinstance(value, dict):
            for sub in value.values():
                _standard_keywords(sub)
            continue
        if key in _STANDARD_BOUNDS and isinstance(value, int | float) and "type" in node:
            node.setdefault(_STANDARD_BOUNDS[key], value)
            del node[key]
            continue
        _standard_keywords(value)


def build_schema(registry: PluginRegistry) -> dict[str, Any]:
    """The configuration's JSON Schema (draft 2020-12) for the installed plugins."""
    schema = Config.model_json_schema(mode="validation", schema_generator=_Generator)
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
                mode="validation", ref_template="#/$defs/{model}", schema_generator=_Generator
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
    _standard_keywords(schema)
    return schema
