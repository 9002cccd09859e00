"""Attribute checks shipped with invoicesync, registered through the plugin hook.

They use exactly the hook third-party plugins use (``invoicesync_register_checks``),
so this module doubles as the example of writing one::

    attributes:
      filename: {glob: ["*.pdf", "*.xml"]}        # case-insensitive by default
      filename: {glob: "RE-*.pdf", case_sensitive: true}
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, ClassVar

from invoicesync.plugins.checks import AttributeCheck, CheckOutcome
from invoicesync.plugins.hookspecs import hookimpl
from invoicesync.plugins.models import Document
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = ["BUILTIN_CHECKS", "FilenameCheck"]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class FilenameOptions(BaseModel):
    """``filename: {glob: PATTERN | [PATTERN, ...], case_sensitive: false}``."""

    model_config = ConfigDict(extra="forbid")

    glob: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_one_or_many)] = (
        Field(min_length=1, description="shell-style patterns (*, ?, [abc]); any may match")
    )
    case_sensitive: bool = False


class FilenameCheck(AttributeCheck):
    """The document's original file name matches one of the glob patterns."""

    key: ClassVar[str] = "filename"
    Options: ClassVar[type[BaseModel]] = FilenameOptions
    description: ClassVar[str] = "original file name matches a glob pattern"

    def __init__(self, options: BaseModel) -> None:
        super().__init__(options)
        assert isinstance(options, FilenameOptions)
        self.patterns = list(options.glob)
        flags = 0 if options.case_sensitive else re.IGNORECASE
        # One compiled alternation: fnmatch.translate anchors each pattern.
        self._regex = re.compile(
            "|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns), flags
        )

    def evaluate(self, document: Document) -> CheckOutcome:
        passed = self._regex.match(document.filename) is not None
        shown = ", ".join(self.patterns)
        verb = "matches" if passed else "does not match"
        return CheckOutcome(passed, f"file name {document.filename!r} {verb} {shown}")


BUILTIN_CHECKS: tuple[type[AttributeCheck], ...] = (FilenameCheck,)


@hookimpl
def invoicesync_register_checks() -> list[type[AttributeCheck]]:
    """The built-in attribute checks."""
    return list(BUILTIN_CHECKS)
