"""Restriction checks that plugins can add under ``restrictions.attributes``.

An attribute check has a ``key`` (the YAML key under ``attributes:``), an
``Options`` model validating what the user wrote there, and an
``evaluate(document)`` that says whether the document passes, and why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, RootModel

from .models import Document

__all__ = ["AttributeCheck", "CheckOutcome"]


@dataclass(frozen=True)
class CheckOutcome:
    """Whether a document passed one check, with a reason a person can read."""

    passed: bool
    reason: str


class AttributeCheck(ABC):
    """A restriction check keyed under ``restrictions.attributes``.

    Subclasses set ``key`` and ``Options``; the engine validates the user's
    value with ``Options`` (a pydantic model, or a ``RootModel`` for a scalar
    or a list) and builds one instance per export account.
    """

    key: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = RootModel[Any]
    description: ClassVar[str] = ""

    def __init__(self, options: BaseModel) -> None:
        self.options = options

    @abstractmethod
    def evaluate(self, document: Document) -> CheckOutcome:
        """Decide for one document; pure and quick (it runs per candidate)."""
