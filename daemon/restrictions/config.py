"""The ``restrictions:`` block of an export account, as validated configuration.

Validation that needs to know the rest of the configuration (which source and
company ids exist, which plugin checks are installed) reads it from the pydantic
validation context: ``known_sources``, ``known_companies``, ``checks``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator


class OriginsMode(StrEnum):
    INCLUDE = "include"
    EXCLUDE = "exclude"


class OriginsConfig(BaseModel):
    """The "Companies & Portals" checklist."""

    model_config = ConfigDict(extra="forbid")

    mode: OriginsMode = OriginsMode.INCLUDE
    sources: list[str] = Field(default_factory=list)
    companies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_ids(self, info: ValidationInfo) -> OriginsConfig:
        ctx: dict[str, Any] = info.context or {}
        if not self.sources and not self.companies and self.mode is OriginsMode.INCLUDE:
            raise ValueError("an include list needs at least one source or company id")
        for field, known_key in (("sources", "known_sources"), ("companies", "known_companies")):
            known = ctx.get(known_key)
            if known is None:
                continue
            unknown = [i for i in getattr(self, field) if i not in known]
            if unknown:
                raise ValueError(
                    f"unknown {field[:-1] if field == 'sources' else 'company'} id(s) "
                    f"{', '.join(map(repr, unknown))}; known: {', '.join(sorted(known)) or 'none'}"
                )
        return self


class RestrictionsConfig(BaseModel):
    """Every restriction given must hold for a document to be exported."""

    model_config = ConfigDict(extra="forbid")

    origins: OriginsConfig | None = None
