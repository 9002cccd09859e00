"""Secret references in the configuration (SPEC section 4) and their redaction.

Secrets are never written in the configuration file. A string value of the form

* ``keyring:NAME`` is read from the system keyring (service ``invoicesync``,
  stored there by ``invoicesync secret set NAME``),
* ``env:VAR`` from the environment variable ``VAR``,
* ``credential:NAME`` from the file ``NAME`` in systemd's
  ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=`` / ``SetCredentialEncrypted=``),

and :func:`resolve_secret_refs` replaces each with the secret it names. It also
returns the set of secret values, which :func:`redact_secrets` turns into a
structlog processor that masks them in every log event. Messages built here
name the reference (``env:IMAP_PASSWORD``), never the value.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from invoicesync.plugins.errors import ConfigurationError

__all__ = [
    "KEYRING_SERVICE",
    "MIN_REDACTABLE",
    "REDACTED",
    "SecretError",
    "SecretRedactor",
    "credential_forms",
    "delete_secret",
    "get_secret",
    "insecure_keyring_backend",
    "keyring_available",
    "redact_secrets",
    "refuse_insecure_keyring",
    "resolve_secret_refs",
    "secret_paths",
    "set_secret",
]

KEYRING_SERVICE = "invoicesync"
"""The keyring service name under which every invoicesync secret is stored."""

REDACTED = "***"
"""What a secret value is replaced with in log events."""

MIN_REDACTABLE = 8
"""Shorter secrets are not masked: masking ``2026`` or ``ent`` inside unrelated
text (every timestamp, ``document.imported``) corrupts the output and shows
where the secret occurs. ``check-config`` warns about them instead."""

PathKey = str | int
_PREFIXES = ("keyring:", "env:", "credential:")
# Names of keyring entries and credentials: what a user can type on a command
# line and what systemd accepts as a credential name (no path separators).
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_NO_BACKEND_HINT = (
    "no usable keyring backend on this machine (typical for a headless service); "
    "use env:VAR to read the secret from an environment variable, or "
    "credential:NAME to read it from systemd's $CREDENTIALS_DIRECTORY "
    "(LoadCredential=NAME:/path/to/file in the unit)"
)


class SecretError(ConfigurationError):
    """A secret reference could not be resolved, or the keyring refused an operation.

    ``path`` is the position of the value in the configuration data (keys and
    list indexes, e.g. ``("sources", 0, "options", "password")``) so that the
    configuration loader can name the file, the line and the dotted path.
    The message never contains a secret value.
    """

    def __init__(self, path: tuple[PathKey, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message

    def dotted_path(self) -> str:
        """``sources[0].options.password`` for ``("sources", 0, "options", "password")``."""
        return format_path(self.path)

    def __str__(self) -> str:
        if not self.path:
            return self.message
        return f"{self.dotted_path()}: {self.message}"


def format_path(path: tuple[PathKey, ...]) -> str:
    """Render a data path the way configuration errors show it."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out


def is_secret_ref(value: object) -> bool:
    """Whether ``value`` is a string that names a secret (``keyring:``, ``env:``...)."""
    return isinstance(value, str) and value.startswith(_PREFIXES)


# -- keyring -----------------------------------------------------------------


def _keyring_backend() -> Any:
    import keyring

    return keyring.get_keyring()


def keyring_available() -> bool:
    """Whether a keyring backend that can store secrets is configured."""
    return _backend_usable(_keyring_backend())


def _backend_usable(backend: Any) -> bool:
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return any(_backend_usable(b) for b in backend.backends)
    return True


def _backend_name(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _storing_backend(backend: Any) -> Any:
    # A chainer stores into the first of its (priority-sorted) backends that
    # accepts the secret; the first usable one is where it would land.
    from keyring.backends import chainer

    if isinstance(backend, chainer.ChainerBackend):
        for candidate in backend.backends:
            if _backend_usable(candidate):
                return _storing_backend(candidate)
    return backend


def insecure_keyring_backend() -> str | None:
    """The dotted name of the keyring backend if it keeps secrets in plain text, else None.

    keyrings.alt's ``PlaintextKeyring`` (what keyring picks on a headless
    machine once keyrings.alt is installed) writes secrets base64-encoded into
    a file anyone with read access to the home folder can decode.
    """
    backend = _storing_backend(_keyring_backend())
    name = _backend_name(backend)
    if "plaintext" in type(backend).__name__.lower() or name in _INSECURE_BACKENDS:
        return name
    return None


# Backends that keep secrets readable by whoever reads their file (besides any
# class named *Plaintext*).
_INSECURE_BACKENDS = frozenset({"keyrings.alt.file.PlaintextKeyring", "keyrings.alt.Gnome.Keyring"})


def _check_name(path: tuple[PathKey, ...], kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise SecretError(
            path,
            f"invalid {kind} name {name!r}: use letters, digits, '_', '.', '@' or '-' "
            "(at most 128 characters, no path separators)",
        )


def get_secret(name: str, *, path: tuple[PathKey, ...] = ()) -> str:
    """The secret stored in the keyring under ``name``; SecretError if absent."""
    import keyring.errors

    _check_name(path, "keyring secret", name)
    backend = _keyring_backend()
    if not _backend_usable(backend):
        raise SecretError(path, f"cannot read keyring:{name}: {_NO_BACKEND_HINT}")
    try:
        value = backend.get_password(KEYRING_SERVICE, name)
    except keyring.errors.NoKeyringError:
        raise SecretError(path, f"cannot read keyring:{name}: {_NO_BACKEND_HINT}") from None
    except Exception as exc:
        # The backend's message is about the backend (locked, D-Bus down), but
        # we do not chain it: keep whatever it carries out of our error text.
        raise SecretError(
            path,
            f"cannot read keyring:{name}: the keyring backend failed ({type(exc).__name__}); "
            "unlock it, or use env:VAR or credential:NAME instead",
        ) from None
    if value is None:
        raise SecretError(
            path,
            f"no secret named {name!r} in the keyring; store it with "
            f"`invoicesync secret set {name}`",
        )
    if value == "":
        raise SecretError(path, f"keyring:{name} is empty")
    return str(value)


def refuse_insecure_keyring(name: str) -> None:
    """SecretError if the keyring backend would keep the secret ``name`` in plain text."""
    insecure = insecure_keyring_backend()
    if insecure:
        raise SecretError(
            (),
            f"refusing to store secret {name!r}: the keyring backend {insecure} keeps "
            "secrets in plain text in a file; use env:VAR or credential:NAME instead "
            "(see docs/secrets.md), choose a real keyring with PYTHON_KEYRING_BACKEND, "
            "or pass --allow-insecure-keyring if a plain-text file is what you want",
        )


def set_secret(name: str, value: str, *, allow_insecure: bool = False) -> None:
    """Store ``value`` in the keyring under ``name`` (``invoicesync secret set NAME``).

    Refuses a backend that keeps secrets in plain text (see
    :func:`insecure_keyring_backend`) unless ``allow_insecure`` is given.
    """
    _check_name((), "secret", name)
    if not value:
        raise SecretError((), "refusing to store an empty secret")
    backend = _keyring_backend()
    if not _backend_usable(backend):
        raise SecretError((), f"cannot store secret {name!r}: {_NO_BACKEND_HINT}")
    if not allow_insecure:
        refuse_insecure_keyring(name)
    try:
        backend.set_password(KEYRING_SERVICE, name, value)
    except Exception as exc:
        raise SecretError(
            (),
            f"cannot store secret {name!r}: the keyring backend failed "
            f"({type(exc).__name__}: {_scrub(str(exc), [value])})",
        ) from None


def delete_secret(name: str) -> None:
    """Remove the secret ``name`` from the keyring (``invoicesync secret delete NAME``)."""
    import keyring.errors

    _check_name((), "secret", name)
    backend = _keyring_backend()
    if not _backend_usable(backend):
        raise SecretError((), f"cannot delete secret {name!r}: {_NO_BACKEND_HINT}")
    try:
        backend.delete_password(KEYRING_SERVICE, name)
    except keyring.errors.PasswordDeleteError:
        raise SecretError((), f"no secret named {name!r} in the keyring") from None
    except Exception as exc:
        raise SecretError(
            (), f"cannot delete secret {name!r}: the keyring backend failed ({type(exc).__name__})"
        ) from None


# -- resolving references ----------------------------------------------------


def _resolve_one(
    ref: str,
    path: tuple[PathKey, ...],
    credentials_dir: str | os.PathLike[str] | None,
    env: Mapping[str, str],
) -> str:
    kind, _, name = ref.partition(":")
    if kind == "keyring":
        return get_secret(name, path=path)
    if kind == "env":
        if not _ENV_NAME.match(name):
            raise SecretError(path, f"invalid environment variable name in {ref!r}")
        value = env.get(name)
        if value is None:
            raise SecretError(path, f"environment variable {name} (from {ref}) is not set")
        if value == "":
            raise SecretError(path, f"environment variable {name} (from {ref}) is empty")
        return value
    # credential:
    _check_name(path, "credential", name)
    if not credentials_dir:
        raise SecretError(
            path,
            f"{ref}: $CREDENTIALS_DIRECTORY is not set; credential: works when systemd "
            f"starts invoicesync with LoadCredential={name}:/path/to/secret in the unit "
            "(use env:VAR or keyring:NAME otherwise)",
        )
    file = Path(credentials_dir) / name
    try:
        raw = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretError(
            path,
            f"{ref}: no credential {name!r} in $CREDENTIALS_DIRECTORY ({credentials_dir}); "
            f"add LoadCredential={name}:/path/to/secret to the unit",
        ) from None
    except UnicodeDecodeError:
        raise SecretError(path, f"{ref}: the credential file is not UTF-8 text") from None
    except OSError as exc:
        raise SecretError(path, f"{ref}: cannot read {file}: {exc.strerror}") from None
    # Files written by `echo` or an editor end with a newline that is not
    # part of the secret.
    value = raw[:-2] if raw.endswith("\r\n") else raw[:-1] if raw.endswith("\n") else raw
    if value == "":
        raise SecretError(path, f"{ref}: the credential file is empty")
    return value


def secret_paths(data: Any, path: tuple[PathKey, ...] = ()) -> list[tuple[PathKey, ...]]:
    """The paths of every secret reference in plain YAML data (dict keys never count)."""
    if isinstance(data, Mapping):
        return [p for key, item in data.items() for p in secret_paths(item, (*path, key))]
    if isinstance(data, list | tuple):
        return [p for i, item in enumerate(data) for p in secret_paths(item, (*path, i))]
    return [path] if is_secret_ref(data) else []


def resolve_secret_refs(
    data: Any,
    *,
    credentials_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Any, set[str]]:
    """Replace every ``keyring:``/``env:``/``credential:`` string in ``data`` by its secret.

    ``data`` is plain YAML data (dicts, lists, scalars); a new structure is
    returned (the input is not modified) together with the set of secret
    values found, for :func:`redact_secrets`. ``credentials_dir`` defaults to
    ``$CREDENTIALS_DIRECTORY`` and ``env`` to :data:`os.environ`, both read at
    call time. Dict keys are never treated as references. The first
    reference that cannot be resolved raises :class:`SecretError` with its path.
    """
    if env is None:
        env = os.environ
    if credentials_dir is None:
        credentials_dir = env.get("CREDENTIALS_DIRECTORY") or os.environ.get(
            "CREDENTIALS_DIRECTORY"
        )
    secrets: set[str] = set()

    def walk(value: Any, path: tuple[PathKey, ...]) -> Any:
        # Plain dict/list copies: the loader maps a path back to file:line
        # through its own (ruamel) tree, which stays untouched.
        if isinstance(value, Mapping):
            return {key: walk(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item, (*path, i)) for i, item in enumerate(value)]
        if is_secret_ref(value):
            secret = _resolve_one(value, path, credentials_dir, env)
            secrets.add(secret)
            return secret
        return value

    return walk(data, ()), secrets


# -- redaction in logs -------------------------------------------------------


def _variants(value: str) -> set[str]:
    # A secret can also show up percent-encoded (in a URL a library logged).
    # Too short a value is not masked at all (see MIN_REDACTABLE).
    if len(value) < MIN_REDACTABLE:
        return set()
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    return {f for f in forms if f}


def credential_forms(username: str, secret: str) -> set[str]:
    """How a user name and password travel on the wire, base64-encoded.

    HTTP basic auth sends ``base64(user:pw)``, SASL PLAIN (IMAP, SMTP)
    ``base64(\\0user\\0pw)`` or ``base64(user\\0user\\0pw)``; a server or a
    library that echoes them must not put the password in our output. The
    password alone, base64-encoded, is included too (tokens sent that way).
    """
    forms = set()
    for plain in (
        f"{username}:{secret}",
        f"\0{username}\0{secret}",
        f"{username}\0{username}\0{secret}",
        secret,
    ):
        encoded = base64.b64encode(plain.encode("utf-8")).decode("ascii")
        forms |= {encoded, encoded.rstrip("=")}
    return {f for f in forms if len(f) >= MIN_REDACTABLE}


def _scrub(text: str, values: Iterable[str]) -> str:
    for value in sorted({v for s in values for v in _variants(s)}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


class SecretRedactor:
    """A structlog processor that replaces known secret values with ``***``.

    It walks every string in the event dict, nested dicts, lists and tuples
    included (keys too), so a secret that slipped into a message, an
    exception text or a URL never reaches the renderer. Install it after
    ``format_exc_info`` (so rendered tracebacks are covered) and right before
    the renderer. :meth:`update` swaps the secret set on a configuration reload.
    """

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self.update(secret_values)

    def update(self, secret_values: Iterable[str]) -> None:
        """Redact exactly these values from now on."""
        forms = {form for value in secret_values if value for form in _variants(value)}
        # Longest first, so a secret that contains another is masked whole.
        pattern = (
            re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
            if forms
            else None
        )
        with self._lock:
            self._pattern = pattern

    def redact(self, value: Any) -> Any:
        """``value`` with every secret occurrence masked (strings and containers)."""
        pattern = self._pattern
        if pattern is None:
            return value
        return self._walk(value, pattern)

    def _walk(self, value: Any, pattern: re.Pattern[str]) -> Any:
        if isinstance(value, str):
            return pattern.sub(REDACTED, value)
        if isinstance(value, bytes | bytearray):
            try:
                text = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return value
            redacted = pattern.sub(REDACTED, text)
            return value if redacted == text else redacted.encode("utf-8")
        if isinstance(value, Mapping):
            return {self._walk(k, pattern): self._walk(v, pattern) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return type(value)(self._walk(v, pattern) for v in value)
        if isinstance(value, BaseException):
            # An exception object left for a later renderer: render it now so
            # its text can be checked (its args may carry the secret).
            text = f"{type(value).__name__}: {value}"
            redacted = pattern.sub(REDACTED, text)
            return value if redacted == text else redacted
        return value

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        pattern = self._pattern
        if pattern is None:
            return event_dict
        for key in list(event_dict):
            event_dict[key] = self._walk(event_dict[key], pattern)
        return event_dict


def redact_secrets(secret_values: Iterable[str]) -> SecretRedactor:
    """A structlog processor masking ``secret_values`` (see :class:`SecretRedactor`)."""
    return SecretRedactor(secret_values)
