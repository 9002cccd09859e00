"""Reading, validating and locating the configuration file (SPEC section 4).

The names below are imported from their modules on first use (PEP 562):
importing a light module of this package, such as ``config.secrets`` (which
the log redactor needs) or ``config.durations``, must not load the YAML
loader, pydantic and every plugin with it.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loader import ConfigError, find_config_file, load_config
    from .models import Config, ExportConfig, SourceConfig

__all__ = [
    "Config",
    "ConfigError",
    "ExportConfig",
    "SourceConfig",
    "find_config_file",
    "load_config",
]

_HOME = {
    "ConfigError": "loader",
    "find_config_file": "loader",
    "load_config": "loader",
    "Config": "models",
    "ExportConfig": "models",
    "SourceConfig": "models",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
