"""The ``filename`` attribute check: the original file name matches a glob.

It is registered through exactly the hook third-party plugins use
(``invoicesync_register_checks``, see the package), so it doubles as the
example of writing one::

    attributes:
      filename: {glob: ["*.pdf", "*.xml"]}        # case-insensitive by default
      filename: {glob: "RE-*.pdf", case_sensitive: true}
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, ClassVar

from invoicesync.plugins import AttributeCheck, CheckOutcome, Document
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = ["FilenameCheck", "FilenameOptions"]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class FilenameOptions(BaseModel):
    """``filename: {glob: PATTERN | [PATTERN, ...], case_sensitive: false}``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # built when configured

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
