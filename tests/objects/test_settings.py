"""Upload and S3 settings from the environment, and which object store they select."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.config import Settings
from server.errors import InvalidArgument
from server.objects import LocalObjectStore, S3ObjectStore
from server.objects.from_settings import open_object_store
from tests.objects.moto_process import MotoServer


def test_env_names_as_documented(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWITCHBOARD_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("SWITCHBOARD_S3_REGION", "eu-west-1")
    monkeypatch.setenv("SWITCHBOARD_S3_BUCKET", "artifacts")
    monkeypatch.setenv("SWITCHBOARD_S3_ADDRESSING_STYLE", "path")
    monkeypatch.setenv("SWITCHBOARD_UPLOAD_ROOTS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    monkeypatch.setenv("SWITCHBOARD_UPLOAD_MAX_FILE_BYTES", "1000")
    settings = Settings()
    assert (settings.s3_endpoint_url, settings.s3_region, settings.s3_bucket, settings.s3_addressing_style) == (
        "http://127.0.0.1:9000", "eu-west-1", "artifacts", "path",
    )
    assert settings.upload_roots == [tmp_path / "a", tmp_path / "b"]
    assert settings.upload_max_file_bytes == 1000
    assert not settings.uses_local_object_store


def test_upload_roots_accept_a_json_list_and_default_to_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWITCHBOARD_UPLOAD_ROOTS", raising=False)
    assert Settings().upload_roots == [Path.cwd()]
    monkeypatch.setenv("SWITCHBOARD_UPLOAD_ROOTS", '["/srv/with space", "/data"]')
    assert Settings().upload_roots == [Path("/srv/with space"), Path("/data")]


def test_multipart_sizes_below_the_s3_minimum_are_refused() -> None:
    with pytest.raises(ValueError, match="upload_part_size_bytes"):
        Settings(upload_part_size_bytes=1024 * 1024)


async def test_nothing_configured_means_the_local_store_under_the_data_dir(tmp_path: Path) -> None:
    store = await open_object_store(Settings(data_dir=tmp_path / "data"))
    assert isinstance(store, LocalObjectStore) and store.default_bucket == "local"
    assert (tmp_path / "data" / "objects").is_dir()


async def test_an_endpoint_means_s3_and_half_the_static_keys_is_refused(tmp_path: Path, moto: MotoServer) -> None:
    store = await open_object_store(Settings(
        data_dir=tmp_path, s3_endpoint_url=moto.url, s3_bucket="artifacts", s3_access_key_id="testing",
        s3_secret_access_key="testing",
    ))
    try:
        assert isinstance(store, S3ObjectStore) and store.default_bucket == "artifacts"
        assert moto.url in store.description and "testing" not in store.description
    finally:
        await store.close()
    with pytest.raises(InvalidArgument, match="set both"):
        await open_object_store(Settings(data_dir=tmp_path, s3_endpoint_url=moto.url, s3_access_key_id="x"))
