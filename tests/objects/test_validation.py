"""Which files a batch may read: never the server's configuration file, and no hidden file or
directory unless the operator allows them. Checked against the local store: the rules are the
same whatever holds the objects."""

from __future__ import annotations

import os
from pathlib import Path

from server.objects import BatchRequest, FileSpec, LocalObjectStore
from tests.objects.conftest import Target, make_uploader

SECRETS = [".env", ".git/config", "sub/.aws/credentials", ".ssh/id_rsa", "env-alias"]
CONFIG_NAMES = ["conf/switchboard.toml", "config-link", "config-hardlink"]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def local_target(tmp_path: Path) -> Target:
    return Target("local", LocalObjectStore(tmp_path / "objects"), "local")


def secrets_and_config(root: Path) -> Path:
    """Hidden files, a visible link to one, and the config file under three names; returns the config file."""
    for name in SECRETS[:-1]:
        write(root / name, f"secret in {name}")
    (root / "env-alias").symlink_to(root / ".env")
    config = root / "conf" / "switchboard.toml"
    write(config, 'http_token = "do-not-upload"\n')
    (root / "config-link").symlink_to(config)
    os.link(config, root / "config-hardlink")
    write(root / "notes.txt", "fine")
    return config


async def test_hidden_files_and_the_config_file_are_refused_by_default(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = secrets_and_config(root)
    target = local_target(tmp_path)
    uploader = make_uploader(target, [root], private_files=[config])
    result = await uploader.upload(BatchRequest(
        [FileSpec(path=name) for name in [*SECRETS, *CONFIG_NAMES, "notes.txt"]], bucket="local",
    ))
    assert [item.key for item in result.uploaded] == ["notes.txt"]
    assert [(f.source, f.code) for f in result.failed] == [(name, "forbidden") for name in SECRETS + CONFIG_NAMES]
    hidden, config_refusals = result.failed[:len(SECRETS)], result.failed[len(SECRETS):]
    assert all("SWITCHBOARD_UPLOAD_ALLOW_HIDDEN" in f.message for f in hidden)
    assert "'.aws'" in hidden[2].message and "'.env'" in hidden[4].message  # the alias is judged where it leads
    assert all("configuration file" in f.message for f in config_refusals)
    for key in (".env", "env-alias", "conf/switchboard.toml", "config-link", "config-hardlink"):
        assert await target.store.head_object("local", key) is None


async def test_allowing_hidden_files_never_allows_the_config_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = secrets_and_config(root)
    write(root / ".hidden.toml", "not the config")
    uploader = make_uploader(local_target(tmp_path), [root], private_files=[config], allow_hidden=True)
    allowed = [*SECRETS[:-1], ".hidden.toml"]  # not env-alias: it would upload .env again, under the same key
    result = await uploader.upload(BatchRequest(
        [FileSpec(path=name) for name in [*allowed, *CONFIG_NAMES]], bucket="local",
    ))
    assert [item.source for item in result.uploaded] == allowed
    assert [(f.source, f.code) for f in result.failed] == [(name, "forbidden") for name in CONFIG_NAMES]


async def test_a_hidden_directory_the_operator_chose_as_a_root_does_not_count(tmp_path: Path) -> None:
    chosen = tmp_path / ".agents" / "out"
    write(chosen / "report.md", "# report")
    outer = tmp_path / "repo"
    write(outer / ".cache" / "out" / "result.csv", "a,b")
    write(outer / ".cache" / "token", "secret")
    # The nested root makes .cache/out an operator's choice; the rest of .cache stays hidden.
    roots = [chosen, outer, outer / ".cache" / "out"]
    uploader = make_uploader(local_target(tmp_path), roots)
    result = await uploader.upload(BatchRequest(
        [FileSpec(path="report.md"), FileSpec(path=str(outer / ".cache" / "out" / "result.csv")),
         FileSpec(path=str(outer / ".cache" / "token"))],
        bucket="local",
    ))
    assert [item.key for item in result.uploaded] == ["report.md", ".cache/out/result.csv"]
    assert [(f.source, f.code) for f in result.failed] == [(str(outer / ".cache" / "token"), "forbidden")]


async def test_text_that_is_not_unicode_is_refused_by_the_engine_itself(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    uploader = make_uploader(local_target(tmp_path), [root])
    result = await uploader.upload(BatchRequest(
        [FileSpec(text="half \ud800 pair", key="a.txt"), FileSpec(text="fine", key="b\udc00.txt"),
         FileSpec(text="fine", key="c.txt")], bucket="local",
    ))
    assert [item.key for item in result.uploaded] == ["c.txt"]
    assert [f.code for f in result.failed] == ["invalid_argument", "invalid_argument"]
    assert "lone surrogate" in result.failed[0].message and "non-printable" in result.failed[1].message
