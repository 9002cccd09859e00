"""Reading, validating and locating the configuration file (SPEC section 4)."""

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
