"""The host side of plugins: which exist, in what order, and how hooks are called.

This is the daemon's half of the plugin system; ``invoicesync.plugins`` holds
only what a plugin author uses (hook markers, models, base classes). Loading
goes built-ins first, then entry points, then strict validation. Built-in
connectors and restriction checks are registered through exactly the same hooks as
third-party plugins. Third-party packages register under the entry point group
``invoicesync``; ``INVOICESYNC_PLUGINS=name,name`` limits which entry points
load (built-ins always load). Any plugin that fails to import, implements an
unknown hook, or registers a type name twice stops the start with a
:class:`~invoicesync.plugins.errors.PluginError` that names it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
from invoicesync.plugins import hookspecs
from invoicesync.plugins.checks import AttributeCheck
from invoicesync.plugins.connectors import Source, Target
from invoicesync.plugins.errors import PluginError
from invoicesync.plugins.extractors import Extractor
from invoicesync.plugins.models import Document

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ISOLATED_HOOKS",
    "Answer",
    "PluginInfo",
    "PluginRegistry",
    "load_plugins",
]

ENTRY_POINT_GROUP = "invoicesync"

#: Built-in plugins (name, module), registered before any entry point, in this order.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("demo", "invoicesync.connectors_builtin.demo"),
    ("folder", "invoicesync.connectors_builtin.folder"),
    ("imap", "invoicesync.connectors_builtin.imap"),
    ("http_portal", "invoicesync.connectors_builtin.http_portal"),
    ("webdav", "invoicesync.connectors_builtin.webdav"),
    ("s3", "invoicesync.connectors_builtin.s3"),
    ("rclone", "invoicesync.connectors_builtin.rclone"),
    ("sftp", "invoicesync.connectors_builtin.sftp"),
    ("email", "invoicesync.connectors_builtin.email"),
    ("restriction-checks", "invoicesync.connectors_builtin.checks"),
    ("einvoice", "invoicesync.connectors_builtin.einvoice"),
)


@dataclass
class PluginInfo:
    """What ``invoicesync plugins`` shows about one plugin."""

    name: str
    version: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    extractors: list[str] = field(default_factory=list)
    module: str | None = None
    """Where the plugin was loaded from: a module, or an entry point's ``module:attr``."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``invoicesync plugins --json``."""
        return {
            "name": self.name,
            "version": self.version,
            "builtin": self.builtin,
            "module": self.module,
            "hooks": self.hooks,
            "sources": self.sources,
            "targets": self.targets,
            "checks": self.checks,
            "extractors": self.extractors,
        }


Trace = Callable[[str], None]


@dataclass
class PluginRegistry:
    """The loaded plugin set and the connector types and checks it provides."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo]
    sources: dict[str, type[Source[Any]]]
    targets: dict[str, type[Target[Any]]]
    checks: dict[str, type[AttributeCheck]]
    extractors: dict[str, type[Extractor]] = field(default_factory=dict)
    trace: Trace | None = None

    @property
    def hook(self) -> Any:
        """The pluggy hook relay, for calling event hooks."""
        return self.manager.hook

    def source_type(self, name: str) -> type[Source[Any]]:
        try:
            return self.sources[name]
        except KeyError:
            raise KeyError(_unknown("source", name, self.sources)) from None

    def target_type(self, name: str) -> type[Target[Any]]:
        try:
            return self.targets[name]
        except KeyError:
            raise KeyError(_unknown("target", name, self.targets)) from None

    def plugin_of(self, kind: str, type_name: str) -> str | None:
        """The name of the plugin that registered a source/target type or check key."""
        table = {"source": "sources", "target": "targets", "check": "checks"}[kind]
        for info in self.plugins:
            if type_name in getattr(info, table):
                return info.name
        return None

    def notify(
        self,
        hook_name: str,
        on_error: Callable[[str, Exception], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Call an event hook through pluggy, each plugin's failure isolated.

        Event hooks must never raise, but a buggy plugin must not stop an
        import or an export either: a plugin that raises is reported to
        ``on_error(plugin_name, exception)`` and the other plugins still run
        (see :func:`_isolate`). Plugins' ``wrapper``/``hookwrapper``
        implementations wrap the call as pluggy defines.
        """
        try:
            answers = getattr(self.manager.hook, hook_name)(**kwargs)
        except Exception as exc:
            # Only a wrapper can make the call itself raise: every plain
            # implementation of an isolated hook is guarded.
            if on_error is not None:
                on_error(_wrapper_names(self.manager, hook_name), exc)
            return
        if on_error is None:
            return
        for answer in answers:
            if isinstance(answer, Answer) and answer.error is not None:
                on_error(answer.plugin, answer.error)


@dataclass(frozen=True)
class Answer:
    """What one plugin's implementation of an isolated hook gave back.

    pluggy collects one result per implementation; for the hooks in
    :data:`ISOLATED_HOOKS` that result is an ``Answer`` naming the plugin,
    so a caller knows who returned what and who raised.
    """

    plugin: str
    value: Any = None
    error: Exception | None = None


#: Hooks whose implementations are called each in isolation: an exception is
#: caught and returned as an :class:`Answer` so one plugin never silences the
#: others (events), and a failing registration names its plugin.
ISOLATED_HOOKS = frozenset(
    {
        "invoicesync_register_sources",
        "invoicesync_register_targets",
        "invoicesync_register_checks",
        "invoicesync_register_extractors",
        "invoicesync_document_imported",
        "invoicesync_document_exported",
    }
)


def _isolate(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Guard each of ``plugin``'s plain implementations of an isolated hook.

    pluggy stops a hook call at the first implementation that raises, and
    wrappers only see that exception afterwards: there is no pluggy option
    that lets the remaining implementations run. So the implementation's
    function itself is replaced by one that turns its result (or exception)
    into an :class:`Answer`. Calls still go through ``pm.hook.<name>``, with
    pluggy's ordering, wrappers and call monitoring.
    """
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.name not in ISOLATED_HOOKS:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                # HookImpl.function is typed Final, but it is a plain slot that
                # pluggy reads on every call.
                object.__setattr__(impl, "function", _guarded(impl.function, name))


def _guarded(function: Callable[..., Any], plugin: str) -> Callable[..., Answer]:
    def call(*args: Any) -> Answer:
        try:
            return Answer(plugin, function(*args))
        except Exception as exc:
            return Answer(plugin, error=exc)

    return call


def _wrapper_names(pm: pluggy.PluginManager, hook_name: str) -> str:
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    names = [pm.get_name(i.plugin) or "?" for i in impls if i.wrapper or i.hookwrapper]
    return ", ".join(names) or "?"


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    return f"unknown {kind} type {name!r}; installed: {', '.join(sorted(known)) or 'none'}"


def _allowed_entry_points() -> set[str] | None:
    raw = os.environ.get("INVOICESYNC_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _own_version() -> str | None:
    try:
        return importlib.metadata.version("invoicesync")
    except importlib.metadata.PackageNotFoundError:
        return None


def load_plugins(
    *,
    builtins: Sequence[tuple[str, str]] = BUILTIN_PLUGINS,
    entry_points: bool = True,
    extra: Sequence[object] = (),
    trace: Trace | None = None,
) -> PluginRegistry:
    """Load and validate the plugin set, all or nothing.

    ``extra`` registers further plugin objects (tests use it). ``trace``
    receives one line per plugin loaded and per hook call when set
    (``INVOICESYNC_TRACE_PLUGINS=1``). Raises
    :class:`~invoicesync.plugins.errors.PluginError` naming the plugin at
    fault; nothing is returned then, so nothing can run half-loaded.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    own_version = _own_version()

    for name, module_name in builtins:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(
                f"built-in plugin {name!r} failed to import from {module_name!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _register(pm, module, name, infos, builtin=True, version=own_version, origin=module_name)
        if trace is not None:
            trace(f"plugin {name} loaded (built-in, {module_name})")

    if entry_points:
        allowed = _allowed_entry_points()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                if trace is not None:
                    trace(f"plugin {ep.name} skipped: not in INVOICESYNC_PLUGINS")
                continue
            dist = ep.dist
            label = f"{ep.name!r} ({dist.name} {dist.version})" if dist else repr(ep.name)
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {label} failed to load from entry point {ep.value!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            _register(
                pm,
                plugin,
                ep.name,
                infos,
                builtin=False,
                version=dist.version if dist else None,
                origin=ep.value,
            )
            if trace is not None:
                trace(f"plugin {ep.name} loaded (entry point {ep.value})")
        if allowed:
            missing = allowed - set(infos)
            if missing:
                raise PluginError(
                    "INVOICESYNC_PLUGINS names plugins that are not installed: "
                    + ", ".join(sorted(missing))
                )

    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"extra-{i}"
        _register(pm, plugin, name, infos, builtin=False, version=None, origin=name)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("invoicesync_")))
        raise PluginError(
            f"plugin {pm.get_name(exc.plugin) or exc.plugin!r} is invalid: {exc} "
            f"(the hooks are: {known})"
        ) from exc

    registry = PluginRegistry(pm, list(infos.values()), {}, {}, {}, trace=trace)
    _collect(pm, registry, infos, trace)
    if trace is not None:
        _install_tracing(pm, trace)
    return registry


def _register(
    pm: pluggy.PluginManager,
    plugin: object,
    name: str,
    infos: dict[str, PluginInfo],
    *,
    builtin: bool,
    version: str | None,
    origin: str | None,
) -> None:
    if name in infos:
        raise PluginError(
            f"two plugins are named {name!r} ({infos[name].module} and {origin}); "
            "uninstall one of them"
        )
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
    hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
    _isolate(pm, plugin, name)
    if not hooks:
        # Almost always an entry point naming the wrong module: say so now
        # rather than let the plugin's types be "unknown" at configuration time.
        raise PluginError(
            f"plugin {name!r} ({origin}) implements no invoicesync hook: the entry point "
            "must name the module with the @hookimpl functions"
        )
    infos[name] = PluginInfo(
        name=name, version=version, builtin=builtin, hooks=hooks, module=origin
    )


_KEY_WORD = {"checks": "key", "extractors": "name"}

# What users write as ``type:`` must be easy to type and safe in logs and paths.
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def _collect(
    pm: pluggy.PluginManager,
    registry: PluginRegistry,
    infos: dict[str, PluginInfo],
    trace: Trace | None,
) -> None:
    """Ask every plugin for its types, naming the plugin in any conflict."""
    kinds: list[tuple[str, str, dict[str, Any], str, type]] = [
        ("invoicesync_register_sources", "sources", registry.sources, "type_name", Source),
        ("invoicesync_register_targets", "targets", registry.targets, "type_name", Target),
        ("invoicesync_register_checks", "checks", registry.checks, "key", AttributeCheck),
        ("invoicesync_register_extractors", "extractors", registry.extractors, "name", Extractor),
    ]
    owners: dict[tuple[str, str], str] = {}
    for hook_name, attr, table, key_attr, base in kinds:
        # pluggy calls the last registered plugin first; registration order
        # (built-ins first) lets a conflict name the newcomer.
        answers = getattr(pm.hook, hook_name)()
        for answer in reversed(answers):
            if not isinstance(answer, Answer):  # a wrapper replaced the results
                raise PluginError(f"a wrapper of {hook_name} returned {answer!r}")
            plugin_name = answer.plugin
            where = f"plugin {plugin_name!r} ({hook_name})"
            if answer.error is not None:
                exc = answer.error
                raise PluginError(f"{where} raised {type(exc).__name__}: {exc}") from exc
            provided = answer.value
            if provided is None:
                provided = []
            if not isinstance(provided, list | tuple):
                raise PluginError(f"{where} must return a list of classes, got {provided!r}")
            if trace is not None:
                names = ", ".join(getattr(c, "__name__", repr(c)) for c in provided)
                trace(f"hook {hook_name} -> {plugin_name} returned [{names}]")
            builtin = infos[plugin_name].builtin
            for cls in provided:
                key = _validate_class(where, cls, base, key_attr, check_schema=not builtin)
                if key in table:
                    raise PluginError(
                        f"{attr[:-1]} {_KEY_WORD.get(attr, 'type')} {key!r} is "
                        f"registered twice: by plugin {owners[(attr, key)]!r} and by "
                        f"plugin {plugin_name!r}"
                    )
                table[key] = cls
                owners[(attr, key)] = plugin_name
                getattr(infos[plugin_name], attr).append(key)


def _validate_class(
    where: str, cls: object, base: type, key_attr: str, *, check_schema: bool = True
) -> str:
    """Check one registered class; return its type name (or check key).

    ``check_schema``: also build its options' JSON schema. Done for plugins
    of others; skipped for the built-ins, whose schemas the test suite builds
    (tests/plugins/test_builtin_options_schemas.py): building every options
    model of every connector at each start cost more than a no-op sync's work
    (docs/performance.md, "Start-up"); a model nobody configured is now
    never built (``defer_build``).
    """
    from pydantic import BaseModel

    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{where} returned {cls!r}, which is not a subclass of {base.__name__}")
    key = getattr(cls, key_attr, None)
    if not isinstance(key, str) or not key:
        raise PluginError(f"{where}: {cls.__name__} does not set {key_attr}")
    if key_attr in ("type_name", "name") and not _TYPE_NAME.match(key):
        raise PluginError(
            f"{where}: {cls.__name__}.{key_attr} {key!r} must be lowercase letters, digits, "
            "'-' or '_', starting with a letter"
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise PluginError(f"{where}: {cls.__name__} does not implement {missing}")
    if base is Extractor:
        return key  # extractors take no options
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise PluginError(
            f"{where}: {cls.__name__}.Options must be a pydantic model, got {options!r}"
        )
    if not check_schema:
        return key
    try:
        options.model_json_schema()
    except Exception as exc:
        # config-schema and check-config need every options model's schema;
        # finding out at start-up beats a crash when a user asks for it.
        raise PluginError(
            f"{where}: {cls.__name__}.Options cannot produce a JSON schema "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return key


def _render_args(kwargs: Mapping[str, Any]) -> str:
    """Hook arguments for a trace line: ids and short strings, never whole objects."""
    parts = []
    for name in sorted(kwargs):
        value = kwargs[name]
        if isinstance(value, Document):
            shown = repr(value.id)
        elif isinstance(value, str):
            shown = repr(value if len(value) <= 80 else value[:77] + "...")
        elif isinstance(value, bool | int | float) or value is None:
            shown = repr(value)
        else:
            shown = f"<{type(value).__name__}>"
        parts.append(f"{name}={shown}")
    return ", ".join(parts)


def _install_tracing(pm: pluggy.PluginManager, trace: Trace) -> None:
    started = threading.local()

    def before(hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        names = ", ".join(pm.get_name(i.plugin) or "?" for i in reversed(hook_impls))
        stack = started.__dict__.setdefault("stack", [])
        stack.append(time.perf_counter())
        trace(f"hook {hook_name}({_render_args(kwargs)}) -> [{names}]")

    def after(
        outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        stack = started.__dict__.get("stack") or [time.perf_counter()]
        elapsed_ms = (time.perf_counter() - stack.pop()) * 1000
        error = outcome.exception
        status = f"raised {type(error).__name__}" if error is not None else "done"
        line = f"hook {hook_name} {status} in {elapsed_ms:.1f} ms"
        answers = [
            a for a in (outcome.get_result() if error is None else []) if isinstance(a, Answer)
        ]
        if any(a.error is not None for a in answers):
            # Name who failed and who still ran (the isolation at work).
            line += " -> " + "; ".join(
                f"{a.plugin} ok"
                if a.error is None
                else f"in {a.plugin} raised {type(a.error).__name__}"
                for a in answers
            )
        trace(line)

    pm.add_hookcall_monitoring(before, after)
