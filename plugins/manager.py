"""Loading plugins: built-ins first, then entry points, then strict validation.

Built-in connectors are registered through exactly the same hooks as
third-party plugins. Third-party packages register under the entry point group
``invoicesync``; ``INVOICESYNC_PLUGINS=name,name`` limits which entry points
load (built-ins always load). Any plugin that fails to import, implements an
unknown hook, or registers a type name twice stops the start with a
:class:`~invoicesync.plugins.errors.PluginError` that names it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .checks import AttributeCheck
from .connectors import Source, Target
from .errors import PluginError

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginRegistry",
    "load_plugins",
]

ENTRY_POINT_GROUP = "invoicesync"

#: Built-in plugins (name, module), registered before any entry point, in this order.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("demo", "invoicesync.connectors_builtin.demo"),
    ("folder", "invoicesync.connectors_builtin.folder"),
    ("sftp", "invoicesync.connectors_builtin.sftp"),
    ("email", "invoicesync.connectors_builtin.email"),
    ("restriction-checks", "invoicesync.daemon.restrictions.builtin_checks"),
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "sources": self.sources,
            "targets": self.targets,
            "checks": self.checks,
        }


@dataclass
class PluginRegistry:
    """The loaded plugin set and the connector types and checks it provides."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo]
    sources: dict[str, type[Source[Any]]]
    targets: dict[str, type[Target[Any]]]
    checks: dict[str, type[AttributeCheck]]

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


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    return f"unknown {kind} type {name!r}; installed: {', '.join(sorted(known)) or 'none'}"


def _allowed_entry_points() -> set[str] | None:
    raw = os.environ.get("INVOICESYNC_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_plugins(
    *,
    builtins: Sequence[tuple[str, str]] = BUILTIN_PLUGINS,
    entry_points: bool = True,
    extra: Sequence[object] = (),
    trace: Callable[[str], None] | None = None,
) -> PluginRegistry:
    """Load and validate the plugin set.

    ``extra`` registers further plugin objects (tests use it). ``trace``
    receives one line per hook call when set (``INVOICESYNC_TRACE_PLUGINS=1``).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}

    for name, module_name in builtins:
        module = importlib.import_module(module_name)
        _register(pm, module, name, infos, builtin=True, version=None)

    if entry_points:
        allowed = _allowed_entry_points()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            dist = ep.dist
            label = f"{ep.name} ({dist.name} {dist.version})" if dist else ep.name
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {label} failed to load from entry point {ep.value!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            _register(
                pm, plugin, ep.name, infos, builtin=False, version=dist.version if dist else None
            )
        if allowed:
            missing = allowed - set(infos)
            if missing:
                raise PluginError(
                    "INVOICESYNC_PLUGINS names plugins that are not installed: "
                    + ", ".join(sorted(missing))
                )

    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"extra-{i}"
        _register(pm, plugin, name, infos, builtin=False, version=None)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_name(exc.plugin) or exc.plugin!r}: {exc}") from exc

    if trace is not None:
        _install_tracing(pm, trace)

    registry = PluginRegistry(pm, list(infos.values()), {}, {}, {})
    _collect(pm, registry, infos)
    return registry


def _register(
    pm: pluggy.PluginManager,
    plugin: object,
    name: str,
    infos: dict[str, PluginInfo],
    *,
    builtin: bool,
    version: str | None,
) -> None:
    if name in infos:
        raise PluginError(f"two plugins are named {name!r}; uninstall one of them")
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
    hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
    infos[name] = PluginInfo(name=name, version=version, builtin=builtin, hooks=hooks)


def _collect(
    pm: pluggy.PluginManager, registry: PluginRegistry, infos: dict[str, PluginInfo]
) -> None:
    """Ask every plugin for its types, naming the plugin in any conflict."""
    kinds: list[tuple[str, str, dict[str, Any], str]] = [
        ("invoicesync_register_sources", "sources", registry.sources, "type_name"),
        ("invoicesync_register_targets", "targets", registry.targets, "type_name"),
        ("invoicesync_register_checks", "checks", registry.checks, "key"),
    ]
    owners: dict[tuple[str, str], str] = {}
    for hook_name, attr, table, key_attr in kinds:
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            try:
                provided = impl.function() or []
            except Exception as exc:
                raise PluginError(
                    f"plugin {plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
            for cls in provided:
                key = getattr(cls, key_attr, None)
                if not isinstance(key, str) or not key:
                    raise PluginError(
                        f"plugin {plugin_name!r} registered {cls!r} without a {key_attr}"
                    )
                if not _has_options_model(cls):
                    raise PluginError(
                        f"plugin {plugin_name!r}: {cls.__name__}.Options must be a pydantic model"
                    )
                if key in table:
                    raise PluginError(
                        f"{attr[:-1]} type {key!r} is registered twice: by "
                        f"{owners[(attr, key)]!r} and by {plugin_name!r}"
                    )
                table[key] = cls
                owners[(attr, key)] = plugin_name
                getattr(infos[plugin_name], attr).append(key)


def _has_options_model(cls: type) -> bool:
    from pydantic import BaseModel

    options = getattr(cls, "Options", None)
    return isinstance(options, type) and issubclass(options, BaseModel)


def _install_tracing(pm: pluggy.PluginManager, trace: Callable[[str], None]) -> None:
    def before(hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        names = ", ".join(pm.get_name(i.plugin) or "?" for i in hook_impls)
        trace(f"hook {hook_name} -> [{names}] args={sorted(kwargs)}")

    def after(
        outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        trace(f"hook {hook_name} done{' with error' if outcome.exception else ''}")

    pm.add_hookcall_monitoring(before, after)
