"""Loading plugins from real entry points: what works, and every way it fails.

Each failure must name the plugin at fault, and ``load_plugins`` must raise
instead of returning a half-loaded set.
"""

from __future__ import annotations

import json

import pytest
from fixtures.plugin_dists import InstallPlugin
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.plugins import PLUGIN_API_VERSION, PluginError
from invoicesync.plugins.testing import make_document

GOOD_PLUGIN = """
from typing import Any
from invoicesync.plugins import (
    ConnectorOptions, ExportItem, ExportResult, FetchResult, Source, Target, hookimpl,
)

class Opts(ConnectorOptions):
    url: str = "http://example.invalid"

class GoodSource(Source[Opts]):
    type_name = "good-source"
    Options = Opts
    def fetch(self, cursor: str | None) -> FetchResult:
        return None
        yield

class GoodTarget(Target[Opts]):
    type_name = "good-target"
    Options = Opts
    def export(self, item: ExportItem) -> ExportResult:
        return ExportResult(item.remote_name)

@hookimpl
def invoicesync_register_sources():
    return [GoodSource]

@hookimpl
def invoicesync_register_targets():
    return [GoodTarget]
"""

TARGET_RETURNING = """
from invoicesync.plugins import ConnectorOptions, ExportResult, Target, hookimpl
from pydantic import BaseModel, ConfigDict

class Opts(ConnectorOptions):
    pass

class T(Target[Opts]):
    type_name = {type_name!r}
    Options = Opts
    def export(self, item):
        return ExportResult(item.remote_name)

{extra}

@hookimpl
def invoicesync_register_targets():
    return {returns}
"""


def target_plugin(type_name: str = "t", returns: str = "[T]", extra: str = "") -> str:
    return TARGET_RETURNING.format(type_name=type_name, returns=returns, extra=extra)


def load(monkeypatch: pytest.MonkeyPatch, *names: str, **kwargs: object):  # type: ignore[no-untyped-def]
    """Load built-ins plus exactly the named entry points (others may be installed)."""
    monkeypatch.setenv("INVOICESYNC_PLUGINS", ",".join(names))
    return load_plugins(**kwargs)  # type: ignore[arg-type]


def test_a_plugin_package_adds_its_types(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = install_plugin("good", GOOD_PLUGIN, dist="invoicesync-good", version="2.3.1")
    registry = load(monkeypatch, "good")
    assert registry.source_type("good-source").__name__ == "GoodSource"
    assert registry.target_type("good-target").__name__ == "GoodTarget"
    info = next(p for p in registry.plugins if p.name == "good")
    assert info.as_dict() == {
        "name": "good",
        "version": "2.3.1",
        "builtin": False,
        "module": module,
        "hooks": ["invoicesync_register_sources", "invoicesync_register_targets"],
        "sources": ["good-source"],
        "targets": ["good-target"],
        "checks": [],
        "extractors": [],
    }
    assert json.loads(json.dumps([p.as_dict() for p in registry.plugins]))
    assert registry.plugin_of("target", "good-target") == "good"
    builtins = [p for p in registry.plugins if p.builtin]
    assert {p.name for p in builtins} >= {"demo", "folder"}
    assert PLUGIN_API_VERSION.split(".")[0] == "1"


def test_without_an_allow_list_every_entry_point_loads(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("good", GOOD_PLUGIN)
    monkeypatch.delenv("INVOICESYNC_PLUGINS", raising=False)
    registry = load_plugins()
    assert "good-target" in registry.targets


def test_the_allow_list_keeps_other_plugins_from_even_importing(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("good", GOOD_PLUGIN)
    install_plugin("explosive", "raise RuntimeError('imported although not allowed')")
    registry = load(monkeypatch, "good")
    assert "good" in {p.name for p in registry.plugins}
    assert "explosive" not in {p.name for p in registry.plugins}


def test_the_allow_list_names_plugins_that_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PluginError, match="not installed: nosuchplugin"):
        load(monkeypatch, "nosuchplugin")


def test_an_import_error_names_plugin_package_and_cause(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("broken", "import no_such_dependency_xyz\n", dist="broken-dist", version="0.9")
    with pytest.raises(PluginError) as caught:
        load(monkeypatch, "broken")
    message = str(caught.value)
    assert "'broken' (broken-dist 0.9)" in message
    assert "ModuleNotFoundError" in message and "no_such_dependency_xyz" in message


def test_a_builtin_that_fails_to_import_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PluginError, match="built-in plugin 'ghost' failed to import"):
        load_plugins(builtins=[("ghost", "invoicesync.connectors_builtin.ghost")])


def test_an_unknown_hook_is_named(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        "typo",
        "from invoicesync.plugins import hookimpl\n"
        "@hookimpl\ndef invoicesync_register_sourcez():\n    return []\n",
    )
    with pytest.raises(PluginError) as caught:
        load(monkeypatch, "typo")
    message = str(caught.value)
    assert "plugin 'typo'" in message and "invoicesync_register_sourcez" in message
    assert "invoicesync_register_sources" in message  # the hooks it could have meant


def test_a_plugin_without_hooks_is_named(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The classic slip: the entry point names the connector module, not the hooks.
    module = install_plugin("empty", "class SomeTarget:\n    pass\n")
    with pytest.raises(PluginError, match=rf"plugin 'empty' \({module}\) implements no"):
        load(monkeypatch, "empty")


def test_a_hook_with_an_unknown_argument_is_named(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        "badargs",
        "from invoicesync.plugins import hookimpl\n"
        "@hookimpl\ndef invoicesync_document_exported(document, colour):\n    pass\n",
    )
    with pytest.raises(PluginError, match=r"(?s)plugin 'badargs'.*colour"):
        load(monkeypatch, "badargs")


def test_a_type_name_registered_twice_names_both_plugins(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("first", target_plugin("dup"), dist="first-dist")
    install_plugin("second", target_plugin("dup"), dist="second-dist")
    with pytest.raises(PluginError) as caught:
        load(monkeypatch, "first", "second")
    message = str(caught.value)
    assert "target type 'dup' is registered twice" in message
    assert "'first'" in message and "'second'" in message


def test_a_plugin_name_used_twice_is_refused(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("same", target_plugin("one"), dist="dist-one")
    install_plugin("same", target_plugin("two"), dist="dist-two")
    with pytest.raises(PluginError, match="two plugins are named 'same'"):
        load(monkeypatch, "same")


def test_a_plugin_named_like_a_builtin_is_refused(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("folder", target_plugin("x"))
    with pytest.raises(PluginError, match="two plugins are named 'folder'"):
        load(monkeypatch, "folder")


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            target_plugin(extra="class NotPydantic:\n    pass\nT.Options = NotPydantic"),
            r"plugin 'bad' \(invoicesync_register_targets\): T.Options must be a pydantic model",
        ),
        (
            target_plugin(
                extra="class Opaque:\n    pass\n"
                "class NoSchema(BaseModel):\n"
                "    model_config = ConfigDict(arbitrary_types_allowed=True)\n"
                "    thing: Opaque | None = None\n"
                "T.Options = NoSchema"
            ),
            r"plugin 'bad' \(invoicesync_register_targets\): T.Options cannot produce a JSON "
            r"schema",
        ),
        (
            target_plugin(returns="T"),
            r"plugin 'bad' \(invoicesync_register_targets\) must return a list of classes",
        ),
        (
            target_plugin(returns="[int]"),
            r"plugin 'bad' \(invoicesync_register_targets\) returned <class 'int'>, which is "
            r"not a subclass of Target",
        ),
        (
            target_plugin(type_name="Bad Name"),
            r"plugin 'bad' \(invoicesync_register_targets\): T.type_name 'Bad Name' must be",
        ),
        (
            target_plugin(
                extra="class A(Target):\n    type_name = 'a'\n    Options = Opts\n", returns="[A]"
            ),
            r"plugin 'bad' \(invoicesync_register_targets\): A does not implement export",
        ),
        (
            target_plugin(extra="def boom():\n    raise KeyError('no config')\n", returns="boom()"),
            r"plugin 'bad' \(invoicesync_register_targets\) raised KeyError: 'no config'",
        ),
    ],
    ids=[
        "options-not-pydantic",
        "options-without-json-schema",
        "not-a-list",
        "not-a-target",
        "bad-type-name",
        "abstract",
        "hook-raises",
    ],
)
def test_an_unusable_registration_is_named(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch, plugin: str, message: str
) -> None:
    install_plugin("bad", plugin)
    with pytest.raises(PluginError, match=message):
        load(monkeypatch, "bad")


EVENTS_PLUGIN = """
from invoicesync.plugins import hookimpl
calls = []

@hookimpl
def invoicesync_document_exported(document, account_id, remote_name, remote_ref):
    calls.append((document.id, account_id))
    if account_id == "explode":
        raise RuntimeError("listener failed")
"""

QUIET_PLUGIN = """
from invoicesync.plugins import hookimpl
calls = []

@hookimpl
def invoicesync_document_exported(document):
    calls.append(document.id)
"""


def test_tracing_logs_every_hook_call_with_plugin_names(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("good", GOOD_PLUGIN)
    install_plugin("events", EVENTS_PLUGIN)
    lines: list[str] = []
    registry = load(monkeypatch, "good", "events", trace=lines.append)
    assert "plugin good loaded (entry point " in "\n".join(lines)
    assert "hook invoicesync_register_targets -> good returned [GoodTarget]" in lines
    assert any(
        line.startswith("hook invoicesync_register_targets -> folder returned [") for line in lines
    )
    document = make_document(external_id="x1", source="portal")
    lines.clear()
    registry.hook.invoicesync_document_exported(
        document=document, account_id="acc", remote_name="a/b.pdf", remote_ref="ref-1"
    )
    assert lines[0] == (
        "hook invoicesync_document_exported(account_id='acc', document='portal/x1', "
        "remote_name='a/b.pdf', remote_ref='ref-1') -> [events]"
    )
    assert lines[1].startswith("hook invoicesync_document_exported done in ")
    assert len(lines) == 2


def test_notify_isolates_a_failing_plugin(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    events = install_plugin("events", EVENTS_PLUGIN)
    quiet = install_plugin("quiet", QUIET_PLUGIN)
    lines: list[str] = []
    registry = load(monkeypatch, "events", "quiet", trace=lines.append)
    errors: list[tuple[str, Exception]] = []
    document = make_document(external_id="x2", source="portal")
    registry.notify(
        "invoicesync_document_exported",
        on_error=lambda name, exc: errors.append((name, exc)),
        document=document,
        account_id="explode",
        remote_name="n.pdf",
        remote_ref="r",
    )
    assert [(name, str(exc)) for name, exc in errors] == [("events", "listener failed")]
    assert sys.modules[events].calls == [("portal/x2", "explode")]
    assert sys.modules[quiet].calls == ["portal/x2"]
    assert any("-> quiet" in line for line in lines)
    assert any("in events raised RuntimeError" in line for line in lines)


WRAPPER_PLUGIN = """
from invoicesync.plugins import hookimpl
seen = []

@hookimpl(wrapper=True)
def invoicesync_document_exported(document, account_id):
    seen.append(("before", document.id, account_id))
    result = yield
    seen.append(("after", len(result)))
    return result
"""


def test_a_plugins_wrapper_wraps_the_event_hook(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``@hookimpl(wrapper=True)`` runs around the other implementations, as in pluggy.

    The host used to call each implementation's function itself, so a wrapper
    was called as a plain function: a generator created and never run.
    """
    import sys

    wrapper = install_plugin("wrapping", WRAPPER_PLUGIN)
    events = install_plugin("events", EVENTS_PLUGIN)
    quiet = install_plugin("quiet", QUIET_PLUGIN)
    registry = load(monkeypatch, "wrapping", "events", "quiet")
    errors: list[tuple[str, Exception]] = []
    document = make_document(external_id="x3", source="portal")
    registry.notify(
        "invoicesync_document_exported",
        on_error=lambda name, exc: errors.append((name, exc)),
        document=document,
        account_id="explode",
        remote_name="n.pdf",
        remote_ref="r",
    )
    # The wrapper ran once, before and after both plain implementations, and
    # the raising one neither stopped the quiet one nor went unreported.
    assert sys.modules[wrapper].seen == [("before", "portal/x3", "explode"), ("after", 2)]
    assert sys.modules[events].calls == [("portal/x3", "explode")]
    assert sys.modules[quiet].calls == ["portal/x3"]
    assert [(name, str(exc)) for name, exc in errors] == [("events", "listener failed")]


RAISING_WRAPPER_PLUGIN = """
from invoicesync.plugins import hookimpl

@hookimpl(wrapper=True)
def invoicesync_document_exported():
    raise RuntimeError("wrapper broke")
    yield
"""


def test_a_raising_wrapper_is_named_and_does_not_escape(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("badwrap", RAISING_WRAPPER_PLUGIN)
    registry = load(monkeypatch, "badwrap")
    errors: list[tuple[str, Exception]] = []
    registry.notify(
        "invoicesync_document_exported",
        on_error=lambda name, exc: errors.append((name, exc)),
        document=make_document(external_id="x4"),
        account_id="a",
        remote_name="n.pdf",
        remote_ref="r",
    )
    assert [(name, str(exc)) for name, exc in errors] == [("badwrap", "wrapper broke")]
