"""Settings: ``SWITCHBOARD_*`` environment variables over an optional TOML file over defaults.

Every default works on a laptop with nothing else installed: data lives in
``./.switchboard/`` and the server speaks stdio.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from server.config.agent_type import AgentType
from server.config.query_rule import QueryRule

CONFIG_FILE_ENV = "SWITCHBOARD_CONFIG"
DEFAULT_CONFIG_FILE = "switchboard.toml"


def config_file_path() -> Path:
    """The TOML file settings are read from now: ``$SWITCHBOARD_CONFIG``, else ./switchboard.toml."""
    return Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))


MiB = 1024 * 1024
GiB = 1024 * MiB
# S3 refuses parts below 5 MiB (except the last), so neither the threshold nor the part size may go lower.
S3_MIN_PART_BYTES = 5 * MiB


class Settings(BaseSettings):
    """Everything an operator can set. Field ``x`` is env var ``SWITCHBOARD_X`` or key ``x`` in the TOML file."""

    # hide_input_in_errors: a rejected setting may be a secret (a token, a key); never echo it.
    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_", extra="forbid", validate_default=True, hide_input_in_errors=True
    )

    data_dir: Path = Field(Path(".switchboard"), description="Where the SQLite database and other state live.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level (stderr).")

    http_host: str = Field("127.0.0.1", description="Bind address of the streamable HTTP transport.")
    http_port: int = Field(8765, ge=0, le=65535, description="Port of the streamable HTTP transport.")
    http_token: SecretStr | None = Field(
        None, description="Bearer token HTTP clients must send; required unless bound to loopback."
    )
    # Both message limits leave room for the largest documented call: a store_batch of up to
    # 10,000 entries whose values may total 64 MiB, JSON-escaped (upload_batch inline content is
    # at most 1 MiB per file).
    http_max_body_bytes: int = Field(
        128 * MiB, ge=1024, description="Largest HTTP request body; a larger one is refused with HTTP 413."
    )
    stdio_max_line_bytes: int = Field(
        128 * MiB, ge=1024,
        description="Longest message (one line) the stdio transport accepts; a longer one is refused and "
        "discarded unread.",
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
    memory_max_batch_bytes: int = Field(
        64 * MiB, ge=1, description="Most bytes of serialised values one store_batch call may write."
    )
    memory_max_answer_bytes: int = Field(
        256 * 1024, ge=1024,
        description="Most bytes of values one search answer carries; further matches come with a preview "
        "(an answer lands in the caller's context, as text and again as structured content).",
    )
    memory_readers: int = Field(
        4, ge=1, le=64, description="SQLite read connections, so a quick read never waits behind a long scan."
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
    vector_min_score: float | None = Field(
        None, ge=-1, le=1,
        description="Default memory_search floor; unset: the embedder's measured one (hashing 0.2, a model none).",
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
    # -- object storage and upload_batch ----------------------------------------------------
    # With neither an endpoint nor a bucket, uploads go to a directory under data_dir.
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint (MinIO, R2, Ceph...); unset with a bucket set means AWS itself."
    )
    s3_region: str | None = Field(None, description="Region to sign for; unset: the AWS config chain, else us-east-1.")
    s3_bucket: str | None = Field(None, description="Bucket used when a call names none.")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="`path` for most self-hosted endpoints (MinIO, Ceph); `virtual` or `auto` for AWS and R2."
    )
    s3_access_key_id: str | None = Field(
        None, description="Static credentials; unset: the standard AWS chain (AWS_* env, ~/.aws, instance role)."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="Goes with s3_access_key_id.")
    s3_conditional_writes: bool = Field(
        True, description="The endpoint honours `If-None-Match: *`; false: overwrite=false falls back to a HEAD check."
    )
    upload_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path.cwd()],
        description="Directories upload_batch may read files from (os.pathsep-separated or a JSON list); "
        "default: the working directory.",
    )
    upload_allow_hidden: bool = Field(
        False, description="Let upload_batch read hidden files and directories under the roots (any part of the path "
        "below the root starting with '.': .env, .git/, .aws/); the config file is never uploaded.",
    )
    upload_max_files: int = Field(1000, ge=1, description="Most files one upload_batch call takes.")
    upload_max_file_bytes: int = Field(5 * GiB, ge=1, description="Largest file upload_batch accepts.")
    upload_max_call_bytes: int = Field(20 * GiB, ge=1, description="Most bytes one upload_batch call uploads.")
    upload_max_inline_bytes: int = Field(
        MiB, ge=1, description="Largest inline `content`/`content_base64` of one file (after decoding)."
    )
    upload_max_concurrency: int = Field(
        64, ge=1, le=1024, description="Largest max_concurrency a call may ask for; also the S3 connection pool size."
    )
    upload_multipart_threshold_bytes: int = Field(
        8 * MiB, ge=S3_MIN_PART_BYTES, description="Files this large or larger go as multipart uploads."
    )
    upload_part_size_bytes: int = Field(
        8 * MiB, ge=S3_MIN_PART_BYTES,
        description="Part size of multipart uploads (grown if a file would need more than 10,000 parts).",
    )
    upload_buffer_bytes: int = Field(
        32 * MiB, ge=S3_MIN_PART_BYTES,
        description="File bytes held in memory at once across all uploads in flight; bounds memory whatever the sizes.",
    )
    upload_max_attempts: int = Field(
        4, ge=1, le=20, description="Tries per S3 request on transient faults (5xx, SlowDown, timeouts, resets)."
    )
    upload_retry_initial_seconds: float = Field(
        0.2, gt=0, description="First retry backoff window; it doubles per try up to 10 s, each wait random within it."
    )
    upload_request_timeout_seconds: float = Field(
        60.0, gt=0, description="Connect and read timeout of one S3 request; a timeout is retried."
    )

    # -- agents ----------------------------------------------------------------------------------
    agent_types: dict[str, AgentType] = Field(
        default_factory=dict,
        description="Agent types by name, over the built-in ones ([agent_types.<name>] in the TOML file, or a JSON "
        "object): runtime, command, model, permission_mode, system_prompt, allowed_tools, disallowed_tools, "
        "allow_bypass_permissions, env, env_passthrough, "
        "max_running, pool_size, on_permission_request, approval_timeout_s, workspace, setup, setup_timeout_s, "
        "sandbox, sandbox_network, read_roots.",
    )
    agent_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path.cwd()],
        description="Directories an agent's cwd may be in (os.pathsep-separated or a JSON list); default: the "
        "working directory. Without a cwd an agent works in <data_dir>/agents/<agent_id>/.",
    )
    agent_allow_adhoc_commands: bool = Field(
        False, description="Let a spawn request carry its own exec command instead of a configured type's."
    )
    agent_max_per_call: int = Field(50, ge=1, le=1000, description="Most agents one agents_spawn_parallel call starts.")
    agent_max_running: int | None = Field(
        None, ge=1, le=100_000,
        description="Most agents whose processes run at once, server-wide (a claude session, an exec task); more wait "
        "queued. Unset: what the open-file limit (6 per agent) and the available memory (200 MB per agent) allow.",
    )
    agent_claude_cli: str | None = Field(
        None, description="The claude executable for claude agents; unset: the CLI bundled with claude-agent-sdk."
    )
    agent_shared_memory: bool = Field(
        True, description="Give claude agents this server's memory as an MCP server (loopback HTTP, a token per agent)."
    )
    agent_spawn_timeout_s: float = Field(
        30.0, gt=0, description="How long a claude agent may take to start and answer initialize (then retried)."
    )
    agent_spawn_attempts: int = Field(
        3, ge=1, le=10, description="Tries per agent on transient spawn failures (EAGAIN, EMFILE, initialize timeout)."
    )
    agent_resume_on_start: bool = Field(
        False, description="At start, resume every agent the previous run lost (claude: its Claude Code session) and "
        "start the query it was running again, told it was interrupted by a restart.")
    agent_terminate_grace_s: float = Field(
        5.0, ge=0, description="At shutdown: how long agents get after SIGTERM before SIGKILL."
    )
    agent_watchdog_grace_s: float = Field(
        2.0, ge=0, description="After the server dies without a shutdown: SIGTERM-to-SIGKILL wait of the watchdog."
    )
    agent_output_tail_bytes: int = Field(
        64 * 1024, ge=1024, description="Output of each agent kept in memory (all of it goes to its log file)."
    )
    transcript_tool_result_bytes: int = Field(
        4096, ge=256, le=1024 * 1024,
        description="Of each tool result (and each long string of a tool call's input), what a transcript keeps.")
    agent_metrics_interval_s: float = Field(
        10.0, gt=0, description="How often each running agent's CPU and RSS are sampled into agent-metrics."
    )
    agent_activity_namespace: str = Field("agent-activities", min_length=1, description="Spawn and completion records.")
    agent_activity_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="TTL of activity records.")
    agent_results_namespace: str = Field("agent-results", min_length=1, description="Each task's result.")
    agent_results_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="TTL of result records.")
    agent_metrics_namespace: str = Field("agent-metrics", min_length=1, description="CPU, RSS and uptime samples.")
    agent_metrics_ttl_s: int = Field(3600, ge=1, description="TTL of metrics samples.")

    # -- workspaces --------------------------------------------------------------------------------
    workspace_ttl_h: float = Field(
        168.0, ge=0, description="Hours after its agent ended that a worktree is removed, once its branch is merged "
        "or was discarded (an unmerged branch keeps its worktree; a branch always outlives its worktree).")
    workspace_author: str = Field(
        "Switchboard agent <switchboard@localhost>",
        description="Author and committer of the commits made for agents (`Name <email>`).")
    workspace_disk_warn_gb: float = Field(
        20.0, gt=0, description="`doctor` warns when the worktrees together take more than this on disk.")
    workspace_sweep_interval_s: float = Field(
        3600.0, gt=0, description="How often ended agents' worktrees are checked against workspace_ttl_h.")

    @field_validator("workspace_author")
    @classmethod
    def _author_has_email(cls, author: str) -> str:
        if not re.fullmatch(r"[^<>\n]+ <[^<>\s]+>", author.strip()):
            raise ValueError(f"workspace_author {author!r} is not `Name <email>`")
        return author.strip()

    @property
    def workspace_identity(self) -> tuple[str, str]:
        """workspace_author as git's (name, email)."""
        name, _, email = self.workspace_author.rpartition(" <")
        return name.strip(), email.rstrip(">")

    # -- queries -------------------------------------------------------------------------------------
    query_command_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Executables query_control execute_command may run (names looked up on the server's PATH, or "
        "absolute paths; os.pathsep-separated or a JSON list). Empty (the default): execute_command is refused.",
    )
    query_command_timeout_s: float = Field(30.0, gt=0, le=3600, description="execute_command: most time it may take.")
    query_command_output_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024 * 1024, description="execute_command: stdout and stderr kept, each (the end)."
    )
    query_rules: list[QueryRule] = Field(
        default_factory=list,
        description="Adaptive rules ([[query_rules]] tables, or a JSON list): name, action (terminate | pause | "
        "change_model), model, agent_type, and conditions max_runtime_s, max_cost_usd, max_tokens, min_turns, "
        "max_turn_latency_s (all given must hold).",
    )
    query_rules_interval_s: float = Field(1.0, gt=0, le=60, description="How often the rules are checked.")
    query_events_namespace: str = Field("query-events", min_length=1, description="Control actions and rule firings.")
    query_events_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="TTL of query event records.")

    # -- budgets -------------------------------------------------------------------------------------
    budget_usd_per_day: float | None = Field(
        None, gt=0, description="Most the server's agents may spend per UTC day (estimated live from each model "
        "turn's usage at list prices); a spawn or query_start with nothing left is refused with budget_exhausted.")

    # -- approvals -----------------------------------------------------------------------------------
    approval_timeout_s: float = Field(
        900.0, gt=0, le=7 * 24 * 3600,
        description="How long a permission request or question waits for an answer (a type's approval_timeout_s "
        "overrides it); then it expires and the agent is told no one answered.")
    notify_url: str | None = Field(
        None, description="An http(s) URL that gets a POST of a small JSON document for each new permission request "
        "or question (a Slack/Discord/ntfy-style webhook); retried, never blocking the agent.")

    @field_validator("notify_url")
    @classmethod
    def _notify_url_is_http(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"https?://[^/\s]+", url):
            raise ValueError("notify_url must be an http:// or https:// URL")
        return url or None

    @field_validator("query_command_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        return _split_paths(value)

    @field_validator("query_rules")
    @classmethod
    def _rule_names_unique(cls, rules: list[QueryRule]) -> list[QueryRule]:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"query rule names must be unique; repeated: {', '.join(duplicates)}")
        return rules

    @field_validator("agent_roots", mode="before")
    @classmethod
    def _split_agent_roots(cls, value: object) -> object:
        return _split_paths(value)

    @field_validator("agent_roots")
    @classmethod
    def _check_agent_roots(cls, roots: list[Path]) -> list[Path]:
        if not roots:
            raise ValueError("agent_roots needs at least one directory")
        return [root.expanduser().absolute() for root in roots]

    @field_validator("http_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty; unset it to serve without a token (loopback only)")
        return value

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("upload_roots", mode="before")
    @classmethod
    def _split_upload_roots(cls, value: object) -> object:
        return _split_paths(value)

    @field_validator("upload_roots")
    @classmethod
    def _check_upload_roots(cls, roots: list[Path]) -> list[Path]:
        if not roots:
            raise ValueError("upload_roots needs at least one directory")
        return [root.expanduser() for root in roots]

    # Where these settings came from, fixed when they are read (a later chdir or env change does not
    # move it): upload_batch must never send it anywhere, as it may hold the token or S3 keys.
    _config_file: Path = PrivateAttr(default_factory=lambda: config_file_path().absolute())

    @property
    def config_file(self) -> Path:
        """The settings file (absolute; it may not exist), which upload_batch refuses to upload."""
        return self._config_file

    @property
    def uses_local_object_store(self) -> bool:
        """No endpoint and no bucket configured: objects go to a directory under ``data_dir``."""
        return self.s3_endpoint_url is None and self.s3_bucket is None

    @property
    def local_objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = config_file_path()
        if CONFIG_FILE_ENV in os.environ and not config_file.is_file():
            raise FileNotFoundError(f"{CONFIG_FILE_ENV} names {config_file}, which is not a file")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file))

    @property
    def agents_database_path(self) -> Path:
        return self.data_dir / "agents.sqlite3"

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

    @property
    def agent_state_root(self) -> Path:
        """Where each agent's own directory (logs, inputs, default cwd) is made: ``<agent_state_root>/<agent_id>``."""
        return self.data_dir / "agents"

    @property
    def run_dir(self) -> Path:
        """Files the server writes for its own processes (the claude launcher)."""
        return self.data_dir / "run"


def _split_paths(value: object) -> object:
    # From the environment a list of directories arrives as one string: a JSON list, or paths joined like PATH.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in text.split(os.pathsep) if part]
    return value
