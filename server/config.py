"""Settings: ``SWITCHBOARD_*`` environment variables over an optional TOML file over defaults.

Every default works on a laptop with nothing else installed: data lives in
``./.switchboard/`` and the server speaks stdio.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_ENV = "SWITCHBOARD_CONFIG"
DEFAULT_CONFIG_FILE = "switchboard.toml"

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Everything an operator can set. Field ``x`` is env var ``SWITCHBOARD_X`` or key ``x`` in the TOML file."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="forbid", validate_default=True)

    data_dir: Path = Field(Path(".switchboard"), description="Where the SQLite database and other state live.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level (stderr).")

    http_host: str = Field("127.0.0.1", description="Bind address of the streamable HTTP transport.")
    http_port: int = Field(8765, ge=0, le=65535, description="Port of the streamable HTTP transport.")
    http_token: SecretStr | None = Field(
        None, description="Bearer token HTTP clients must send; required unless bound to loopback."
    )

    memory_max_value_bytes: int = Field(MiB, ge=1, description="Largest serialised value `store` accepts.")
    memory_max_ttl_seconds: int = Field(
        10 * 365 * 24 * 3600, ge=1, description="Largest `ttl` a store may ask for (a larger one is refused)."
    )
    memory_sweep_interval_seconds: float = Field(
        30.0, gt=0, description="How often the sweeper deletes expired entries."
    )
    memory_sweep_batch_size: int = Field(
        500, ge=1, description="Rows the sweeper deletes per transaction, so writes never wait long behind it."
    )
    memory_sqlite_synchronous: Literal["full", "normal"] = Field(
        "full",
        description="`full` fsyncs every commit (survives power loss); `normal` survives a process crash only.",
    )
    memory_group_commit_max: int = Field(
        512, ge=1, description="Most queued writes committed together in one transaction."
    )

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        if CONFIG_FILE_ENV in os.environ and not config_file.is_file():
            raise FileNotFoundError(f"{CONFIG_FILE_ENV} names {config_file}, which is not a file")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file))

    @property
    def database_path(self) -> Path:
        return self.data_dir / "memory.sqlite3"
