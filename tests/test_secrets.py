"""Secret references (keyring:, env:, credential:) and their redaction in logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import keyring
import pytest
import structlog
from invoicesync.daemon.config.secrets import (
    KEYRING_SERVICE,
    SecretError,
    delete_secret,
    get_secret,
    keyring_available,
    redact_secrets,
    resolve_secret_refs,
    set_secret,
)
from invoicesync.plugins import ConfigurationError
from keyring.backends import chainer, fail

SECRET = "s3cr3t-Pa$$w0rd/with:colons"


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[object]:
    """A real file-backed keyring (keyrings.alt) in a temporary folder."""
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring" / "keyring_pass.cfg")  # type: ignore[misc]
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """The situation of a headless service: keyring's fail backend."""
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def _config(**options: object) -> dict[str, object]:
    return {
        "version": 1,
        "sources": [{"id": "mail", "type": "imap", "options": dict(options)}],
        "exports": [],
    }


def test_env_reference_is_replaced_and_collected() -> None:
    data = _config(host="imap.example.org", password="env:IMAP_PW", port=993)
    resolved, secrets = resolve_secret_refs(data, env={"IMAP_PW": SECRET})
    assert resolved["sources"][0]["options"] == {
        "host": "imap.example.org",
        "password": SECRET,
        "port": 993,
    }
    assert secrets == {SECRET}
    # The input is not modified: the loader keeps its own tree for line numbers.
    assert data["sources"][0]["options"]["password"] == "env:IMAP_PW"  # type: ignore[index]


def test_missing_env_names_variable_and_path_not_value() -> None:
    with pytest.raises(SecretError) as info:
        resolve_secret_refs(_config(password="env:NOPE_NOT_SET"), env={"OTHER": SECRET})
    assert info.value.path == ("sources", 0, "options", "password")
    assert "NOPE_NOT_SET" in str(info.value)
    assert str(info.value).startswith("sources[0].options.password: ")
    assert SECRET not in str(info.value)
    assert isinstance(info.value, ConfigurationError)


def test_empty_env_is_an_error() -> None:
    with pytest.raises(SecretError, match="is empty"):
        resolve_secret_refs({"a": ["env:EMPTY"]}, env={"EMPTY": ""})


def test_invalid_env_name() -> None:
    with pytest.raises(SecretError, match="invalid environment variable name"):
        resolve_secret_refs({"a": "env:1-bad"}, env={})


def test_credential_reference_reads_file_without_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "imap-password").write_text(SECRET + "\n", encoding="utf-8")
    (tmp_path / "token").write_text("tok\n\n", encoding="utf-8")
    resolved, secrets = resolve_secret_refs(
        {"p": "credential:imap-password", "t": ["credential:token"]},
        credentials_dir=tmp_path,
        env={},
    )
    assert resolved == {"p": SECRET, "t": ["tok\n"]}
    assert secrets == {SECRET, "tok\n"}


def test_credential_directory_from_environment(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET, encoding="utf-8")
    resolved, _ = resolve_secret_refs(
        {"p": "credential:pw"}, env={"CREDENTIALS_DIRECTORY": str(tmp_path)}
    )
    assert resolved == {"p": SECRET}


def test_credential_without_directory_names_loadcredential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(SecretError) as info:
        resolve_secret_refs({"x": {"y": "credential:pw"}}, env={})
    assert info.value.path == ("x", "y")
    assert "LoadCredential=pw" in info.value.message


def test_missing_credential_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="no credential 'absent'"):
        resolve_secret_refs({"p": "credential:absent"}, credentials_dir=tmp_path, env={})


@pytest.mark.parametrize("name", ["../etc/shadow", "a/b", "", ".hidden", "x y"])
def test_credential_names_cannot_escape_the_directory(tmp_path: Path, name: str) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(SecretError, match="invalid credential name"):
        resolve_secret_refs({"p": f"credential:{name}"}, credentials_dir=tmp_path / "sub", env={})


def test_keyring_round_trip_with_real_file_backend(file_keyring: object) -> None:
    assert keyring_available()
    set_secret("imap-acme", SECRET, allow_insecure=True)
    assert keyring.get_password(KEYRING_SERVICE, "imap-acme") == SECRET
    resolved, secrets = resolve_secret_refs({"password": "keyring:imap-acme"}, env={})
    assert resolved == {"password": SECRET}
    assert secrets == {SECRET}
    delete_secret("imap-acme")
    with pytest.raises(SecretError, match="invoicesync secret set imap-acme") as info:
        resolve_secret_refs({"password": "keyring:imap-acme"}, env={})
    assert info.value.path == ("password",)


def test_delete_missing_secret(file_keyring: object) -> None:
    with pytest.raises(SecretError, match="no secret named 'never-set'"):
        delete_secret("never-set")


def test_set_secret_refuses_bad_name_and_empty_value(file_keyring: object) -> None:
    with pytest.raises(SecretError, match="invalid secret name"):
        set_secret("../x", "v")
    with pytest.raises(SecretError, match="empty"):
        set_secret("ok", "")


def test_no_keyring_backend_names_alternatives(no_keyring: None) -> None:
    assert not keyring_available()
    for call in (
        lambda: resolve_secret_refs({"pw": "keyring:imap"}, env={}),
        lambda: set_secret("imap", SECRET),
        lambda: delete_secret("imap"),
        lambda: get_secret("imap"),
    ):
        with pytest.raises(SecretError) as info:
            call()
        text = str(info.value)
        assert "env:VAR" in text
        assert "credential:NAME" in text
        assert "LoadCredential" in text
        assert SECRET not in text


def test_empty_chainer_counts_as_no_backend() -> None:
    previous = keyring.get_keyring()

    class EmptyChainer(chainer.ChainerBackend):
        backends: ClassVar[list[object]] = []  # a chainer that found no backend at all

    keyring.set_keyring(EmptyChainer())
    try:
        assert not keyring_available()
        with pytest.raises(SecretError, match="credential:NAME"):
            get_secret("x")
    finally:
        keyring.set_keyring(previous)


def test_non_reference_strings_and_keys_untouched() -> None:
    data = {"env:KEY": "value", "list": ["plain", 1, None, True], "url": "https://x/env:y"}
    resolved, secrets = resolve_secret_refs(data, env={})
    assert resolved == data
    assert secrets == set()


def test_redactor_masks_nested_values_and_encoded_forms() -> None:
    redact = redact_secrets({SECRET, "token-4711"})
    event = {
        "event": f"login failed with {SECRET}",
        "url": "https://h/?p=" + "s3cr3t-Pa%24%24w0rd%2Fwith%3Acolons",
        "nested": {"list": [f"x{SECRET}y", 3], "tuple": ("token-4711",)},
        "exc": ValueError(f"bad {SECRET}"),
        "count": 5,
    }
    out = redact(None, "info", event)
    assert out["event"] == "login failed with ***"
    assert out["url"] == "https://h/?p=***"
    assert out["nested"] == {"list": ["x***y", 3], "tuple": ("***",)}
    assert out["exc"] == "ValueError: bad ***"
    assert out["count"] == 5


def test_redactor_update_and_empty() -> None:
    redact = redact_secrets([])
    assert redact(None, "info", {"event": "token-4711"}) == {"event": "token-4711"}
    redact.update({"token-4711"})
    assert redact(None, "info", {"event": "token-4711"}) == {"event": "***"}


def test_redactor_leaves_secrets_too_short_to_mask_safely() -> None:
    """Masking "2026" or "ent" would corrupt timestamps and event names (issue 10 item 6)."""
    redact = redact_secrets({"2026", "ent"})
    event = {"event": "document.imported", "timestamp": "2026-11-30T10:00:00Z"}
    assert redact(None, "info", dict(event)) == event


def test_redactor_in_a_structlog_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str] = []

    def capture(logger: object, name: str, event_dict: dict[str, object]) -> str:
        rendered = structlog.processors.JSONRenderer()(logger, name, event_dict)
        lines.append(str(rendered))
        raise structlog.DropEvent

    logger = structlog.wrap_logger(
        logging.getLogger("redact-test"),
        processors=[
            structlog.processors.format_exc_info,
            redact_secrets({SECRET}),
            capture,
        ],
    )
    try:
        raise RuntimeError(f"server said: wrong password {SECRET}")
    except RuntimeError:
        logger.exception("connector.error", detail=SECRET)
    assert len(lines) == 1
    assert SECRET not in lines[0]
    assert "***" in lines[0]
    assert "connector.error" in lines[0]
