"""Settings, at the bottom of the layers: `settings.Settings` (environment over TOML file over
defaults) and the models of its tables, `agent_type.AgentType` and `query_rule.QueryRule`.
This package imports nothing else of Switchboard's."""

from server.config.settings import (
    CONFIG_FILE_ENV,
    DEFAULT_CONFIG_FILE,
    S3_MIN_PART_BYTES,
    GiB,
    MiB,
    Settings,
    config_file_path,
)

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_CONFIG_FILE",
    "S3_MIN_PART_BYTES",
    "GiB",
    "MiB",
    "Settings",
    "config_file_path",
]
