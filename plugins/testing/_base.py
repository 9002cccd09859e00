"""What both conformance suites share: the skip-with-a-reason gate and checks."""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, NoReturn

import pytest


def missing_fixture(suite: str, name: str, what: str) -> NoReturn:
    """Fail a test whose connector test class forgot to define a fixture."""
    pytest.fail(
        f"{suite} needs a fixture {name!r} on the test class: {what} (see docs/plugins.md)",
        pytrace=False,
    )


def formatted(exc: BaseException) -> str:
    """Everything a log line with ``exc_info`` would show: message, chain, traceback."""
    return "".join(traceback.format_exception(exc))


def assert_no_secret(exc: BaseException, secret: str | None, where: str) -> None:
    """The secret must not appear in the error, its causes or its traceback text."""
    if secret:
        assert secret not in formatted(exc), (
            f"{where}: the error (or an exception chained to it) contains the secret; "
            "errors end up in logs, so never put credentials into messages"
        )


def assert_check_fails_cleanly(connector: Any, secret: str | None, kind: str) -> None:
    """``connector.check()`` raises ConnectorError with a message and without the secret.

    ``connector`` is closed afterwards either way; ``kind`` ("source" or
    "target") only words the failure message.
    """
    from ..errors import ConnectorError

    try:
        with pytest.raises(ConnectorError) as caught:
            connector.check()
    finally:
        connector.close()
    assert str(caught.value).strip(), "the error must say what is wrong"
    assert_no_secret(caught.value, secret, f"check() on a broken {kind}")


class ConformanceBase:
    """Lets a connector's test class skip a suite test, but only with a reason.

    ``unsupported = {"test_name": "reason"}`` on the subclass. For a
    parametrised test, the key is either the test name (all cases) or the
    full node name such as ``"test_hostile_name_stays_inside[nul-byte]"``.
    """

    unsupported: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _conformance_gate(self, request: pytest.FixtureRequest) -> Iterator[None]:
        cls = type(self)
        known = {name for name in dir(cls) if name.startswith("test_")}
        unknown = sorted(key for key in cls.unsupported if key.split("[", 1)[0] not in known)
        if unknown:
            pytest.fail(
                f"{cls.__name__}.unsupported names tests that do not exist: {unknown}; "
                f"the suite's tests are: {sorted(known)}",
                pytrace=False,
            )
        node: Any = request.node
        for key in (node.name, getattr(node, "originalname", node.name)):
            if key in cls.unsupported:
                reason = cls.unsupported[key]
                if not isinstance(reason, str) or not reason.strip():
                    pytest.fail(
                        f"{cls.__name__}.unsupported[{key!r}] must state a reason", pytrace=False
                    )
                pytest.skip(f"{cls.__name__} does not support {key}: {reason}")
        yield
