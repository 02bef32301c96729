"""ini configuration: schema, loading and error reporting."""

from sysadmd.config.errors import ConfigError, ConfigErrors
from sysadmd.config.loader import Config, find_default_config, load_config

__all__ = ["Config", "ConfigError", "ConfigErrors", "load_config", "find_default_config"]
