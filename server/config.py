"""Settings: ``SWITCHBOARD_*`` environment variables over an optional TOML file over defaults.

Every default works on a laptop with nothing else installed: data lives in
``./.switchboard/`` and the server speaks stdio.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
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

    vector_backend: Literal["hnsw", "qdrant"] = Field(
        "hnsw", description="`hnsw`: embedded index in the data directory; `qdrant`: a Qdrant collection."
    )
    vector_embedder: Literal["auto", "hashing", "sentence-transformers"] = Field(
        "auto",
        description="`hashing` needs no model; `sentence-transformers` needs the [semantic] extra and vector_model; "
        "`auto` picks sentence-transformers when vector_model is set, else hashing.",
    )
    vector_model: str | None = Field(
        None, description="sentence-transformers model: a local directory or a model already in the local cache."
    )
    vector_dimensions: int = Field(384, ge=16, le=4096, description="Dimensions of the hashing embedder.")
    vector_indexed_namespaces: Annotated[list[str], NoDecode] = Field(
        ["*"],
        description="Namespaces whose every write is indexed for semantic search, comma-separated; `*` = all, "
        "empty = none (a store can still pass index: true).",
    )
    vector_reembed: bool = Field(
        False, description="At start, re-embed stored vectors made by another embedder instead of refusing to start."
    )
    vector_hnsw_m: int = Field(16, ge=2, le=128, description="HNSW links per node (M).")
    vector_hnsw_ef_construction: int = Field(200, ge=8, description="HNSW build-time candidate list size.")
    vector_hnsw_ef_search: int = Field(64, ge=1, description="HNSW search-time candidate list size (at least k).")
    vector_save_every: int = Field(
        1000, ge=1, description="Save the HNSW index file after this many vector writes (and always at shutdown)."
    )
    vector_qdrant_url: str | None = Field(None, description="Qdrant server URL, e.g. http://qdrant:6333.")
    vector_qdrant_api_key: SecretStr | None = Field(None, description="Qdrant API key, if the server wants one.")
    vector_qdrant_collection: str = Field("switchboard-memory", min_length=1, description="Qdrant collection name.")

    @field_validator("vector_indexed_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

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

    @property
    def vector_index_path(self) -> Path:
        return self.data_dir / "vectors.hnsw"

    @property
    def qdrant_local_path(self) -> Path:
        """Embedded Qdrant storage, used when the qdrant backend has no URL."""
        return self.data_dir / "qdrant"

    @property
    def qdrant_state_path(self) -> Path:
        return self.data_dir / "qdrant-state.json"
