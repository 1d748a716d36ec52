"""``switchboard objects list|get``: what upload_batch stored, fetched by key from a shell, byte for
byte, from the local store and from S3 (moto), in process (``main``) and through a real pipe."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.cli import main
from server.objects import BatchRequest, FileSpec, LocalObjectStore
from tests.objects.conftest import MiB, Target, make_uploader
from tests.objects.moto_process import MotoServer

REPO = Path(__file__).resolve().parents[2]
BINARY = bytes(range(256)) * 64 + b"\r\n\x00\r\n"  # every byte value, and line endings a text stream would alter


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir whose local store holds what one upload_batch call stored; the working directory is
    elsewhere (no switchboard.toml) and no S3 setting is inherited, so the local store is used."""
    for name in list(os.environ):
        if name.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "root"
    (root / "out").mkdir(parents=True)
    (root / "out" / "blob.bin").write_bytes(BINARY)
    (root / "out" / "résumé.txt").write_text("naïve\n", encoding="utf-8")
    (root / "big.bin").write_bytes(os.urandom(6 * MiB))
    (root / "top.txt").write_text("top\n")
    data = tmp_path / "data"
    store = LocalObjectStore(data / "objects")
    uploader = make_uploader(Target("local", store, "local"), [root], threshold=5 * MiB, part_size=5 * MiB)
    files = [FileSpec(path=name) for name in ("out/blob.bin", "out/résumé.txt", "big.bin", "top.txt")]
    result = anyio.run(uploader.upload, BatchRequest(files, bucket="local", prefix="run-1"))
    assert result.status == "ok", result.failed
    return data


def run(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes, str]:
    code = main(list(argv))
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def test_list_prints_key_size_and_etag_in_key_order(data_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, out, err = run(capsysbinary, "objects", "list", "--data-dir", str(data_dir))
    assert (code, err) == (0, "")
    rows = [line.split("\t") for line in out.decode().splitlines()]
    assert [(key, int(size)) for key, size, _ in rows] == [
        ("run-1/big.bin", 6 * MiB), ("run-1/out/blob.bin", len(BINARY)),
        ("run-1/out/résumé.txt", len("naïve\n".encode())), ("run-1/top.txt", 4),
    ]
    assert rows[0][2].endswith("-2")  # multipart ETag: two parts
    code, out, _ = run(capsysbinary, "objects", "list", "--prefix", "run-1/out/", "--data-dir", str(data_dir))
    assert code == 0 and [line.split("\t")[0] for line in out.decode().splitlines()] == [
        "run-1/out/blob.bin", "run-1/out/résumé.txt",
    ]


def test_get_writes_the_objects_bytes_to_stdout_or_a_file(
    data_dir: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    root = tmp_path / "root"
    for key, source in [("run-1/out/blob.bin", "out/blob.bin"), ("run-1/big.bin", "big.bin"),
                        ("run-1/out/résumé.txt", "out/résumé.txt")]:
        assert run(capsysbinary, "objects", "get", key, "--data-dir", str(data_dir)) == (
            0, (root / source).read_bytes(), "",
        )
    target = tmp_path / "fetched.bin"
    code, out, err = run(capsysbinary, "objects", "get", "run-1/big.bin", "-o", str(target),
                         "--data-dir", str(data_dir))
    assert (code, out, err) == (0, b"", "")
    assert target.read_bytes() == (root / "big.bin").read_bytes()


def test_a_failed_get_says_why_and_leaves_the_output_file_as_it_was(
    data_dir: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("previous")
    code, out, err = run(capsysbinary, "objects", "get", "run-1/missing.txt", "-o", str(target),
                         "--data-dir", str(data_dir))
    assert (code, out) == (1, b"") and err.startswith("switchboard: not_found: ") and "run-1/missing.txt" in err
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "keep.txt",
    ]
    code, _, err = run(capsysbinary, "objects", "list", "--bucket", "other", "--data-dir", str(data_dir))
    assert code == 1 and "no bucket 'other'" in err


def test_a_data_dir_without_a_store_is_named_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWITCHBOARD_S3_BUCKET", raising=False)
    monkeypatch.delenv("SWITCHBOARD_S3_ENDPOINT_URL", raising=False)
    code, out, err = run(capsysbinary, "objects", "list", "--data-dir", str(tmp_path / "nowhere"))
    assert (code, out) == (1, b"") and "no local object store at" in err and "--data-dir" in err
    assert not (tmp_path / "nowhere").exists()


def test_get_through_a_real_pipe_is_binary_safe(data_dir: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "server.cli", "objects", "get", "run-1/out/blob.bin", "--data-dir", str(data_dir)],
        check=False, capture_output=True, cwd=data_dir.parent, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert (completed.returncode, completed.stderr) == (0, b"")
    assert completed.stdout == BINARY


def test_list_and_get_read_s3_when_it_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes], moto: MotoServer,
    s3_admin: Any,
) -> None:
    bucket = f"cli-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    s3_admin.put_object(Bucket=bucket, Key="run-2/blob.bin", Body=BINARY)
    s3_admin.put_object(Bucket=bucket, Key="other.txt", Body=b"other")
    monkeypatch.chdir(tmp_path)
    for name, value in {"ENDPOINT_URL": moto.url, "BUCKET": bucket, "REGION": "us-east-1",
                        "ADDRESSING_STYLE": "path", "ACCESS_KEY_ID": "testing",
                        "SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(f"SWITCHBOARD_S3_{name}", value)
    code, out, err = run(capsysbinary, "objects", "list", "--prefix", "run-2/")
    assert (code, err) == (0, "")
    assert [line.split("\t")[:2] for line in out.decode().splitlines()] == [["run-2/blob.bin", str(len(BINARY))]]
    assert run(capsysbinary, "objects", "get", "run-2/blob.bin") == (0, BINARY, "")
    code, out, err = run(capsysbinary, "objects", "get", "run-2/missing")
    assert (code, out) == (1, b"") and err.startswith("switchboard: not_found: ")
    assert not (tmp_path / ".switchboard").exists()  # reading S3 never creates a local store
