"""Secret references in the configuration (``keyring:``, ``env:``, ``credential:``).

Placeholder until the secrets module lands: it resolves ``env:`` only.
"""

from __future__ import annotations

import os
from typing import Any


class SecretError(Exception):
    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def resolve_secret_refs(data: Any) -> tuple[Any, set[str]]:
    found: set[str] = set()

    def walk(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and node.startswith("env:"):
            name = node[4:]
            if name not in os.environ:
                raise SecretError(path, f"environment variable {name} is not set")
            found.add(os.environ[name])
            return os.environ[name]
        return node

    return walk(data, ()), found
