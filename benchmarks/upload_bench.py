"""Upload benchmark: upload_batch against a sequential put_object loop, s3transfer and the aws CLI.

One run, all contenders against the same S3 (moto's server in a child process) through a
loopback proxy that holds every response for --latency-ms (20 ms by default): real links
have latency, loopback alone hides it. Each contender runs in its own child process, so
its wall time and peak memory are its own. Python contenders are timed warm: each first
uploads one tiny object, as a long-running server's client always is (a fresh script's
first request also loads botocore's models and rules). The aws CLI is timed from outside,
its start-up included, as a person would experience it.

    .venv/bin/python benchmarks/upload_bench.py            # or: make bench-uploads

Prints, per data set, each contender's wall time, MB/s and speed-up over the sequential
loop measured in the same run, and the peak RSS of each Python contender.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the loopback proxy and the moto launcher live with the tests

KiB = 1024
MiB = 1024 * KiB
WARM_UP_KEY = "warm-up"
CPU_USED = [0.0]  # a child's CPU seconds (all threads) during its timed window
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class DataSet:
    name: str
    files: int
    size: int


DATA_SETS = (DataSet("20 x 100 KiB", 20, 100 * KiB), DataSet("200 x 100 KiB", 200, 100 * KiB),
             DataSet("5 x 20 MiB", 5, 20 * MiB))
BASELINE = "sequential put_object"
CONTENDERS = (BASELINE, "upload_batch", "s3transfer (defaults: 10 threads)", "s3transfer (16 threads)",
              "aws s3 cp --recursive")


# -- the parent: set up, run each contender in a child, print ------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="held per response (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is shown (default 3)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        return run_child(args.child, rest)

    import boto3

    from tests.objects.loopback_proxy import LoopbackProxy
    from tests.objects.moto_process import MotoServer

    has_aws_cli = shutil.which("aws") is not None
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; latency {args.latency_ms:g} ms "
          f"per response; aws CLI {'found' if has_aws_cli else 'not installed: skipped'}")
    with tempfile.TemporaryDirectory(prefix="upload-bench-") as temp:
        work = Path(temp)
        moto = MotoServer(work / "moto.log")
        proxy = LoopbackProxy(moto.port, latency_seconds=args.latency_ms / 1000).start()
        admin = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                             aws_access_key_id="testing", aws_secret_access_key="testing")
        try:
            for data_set in DATA_SETS:
                source = make_files(work / data_set.name.replace(" ", ""), data_set)
                results = {}
                for contender in CONTENDERS:
                    if contender.startswith("aws") and not has_aws_cli:
                        continue
                    runs = [measure(contender, source, data_set, proxy.url, admin, work) for _ in range(args.repeat)]
                    results[contender] = median_run(runs)
                report(data_set, results)
        finally:
            proxy.stop()
            moto.stop()
    return 0


def make_files(directory: Path, data_set: DataSet) -> Path:
    directory.mkdir(parents=True)
    for i in range(data_set.files):
        (directory / f"file-{i:04d}.bin").write_bytes(os.urandom(data_set.size))
    return directory


def measure(contender: str, source: Path, data_set: DataSet, endpoint: str, admin: Any, work: Path) -> dict[str, Any]:
    bucket = f"bench-{uuid.uuid4().hex[:16]}"
    admin.create_bucket(Bucket=bucket)
    env = {**os.environ, **CREDENTIALS, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    if contender.startswith("aws"):
        started = time.perf_counter()
        subprocess.run(["aws", "s3", "cp", str(source), f"s3://{bucket}/", "--recursive", "--only-show-errors",
                        "--endpoint-url", endpoint], check=True, env=env)
        outcome: dict[str, Any] = {"seconds": time.perf_counter() - started}
    else:
        command = [sys.executable, __file__, "--child", contender, str(source), endpoint, bucket, str(work)]
        completed = subprocess.run(command, check=True, env=env, capture_output=True, text=True)
        outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    landed = sum(o["Size"] for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                 for o in page.get("Contents", []) if not o["Key"].startswith(WARM_UP_KEY))
    if landed != data_set.files * data_set.size:
        raise RuntimeError(f"{contender}: {landed} bytes landed, expected {data_set.files * data_set.size}")
    return outcome


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    runs = sorted(runs, key=lambda run: run["seconds"])
    return runs[len(runs) // 2] | {"seconds": statistics.median(run["seconds"] for run in runs)}


def report(data_set: DataSet, results: dict[str, dict[str, Any]]) -> None:
    total = data_set.files * data_set.size
    baseline = results[BASELINE]["seconds"]
    print(f"\n{data_set.name} ({total / 1e6:.1f} MB)")
    print(f"  {'contender':36} {'wall s':>8} {'MB/s':>8} {'vs loop':>8} {'peak RSS MiB':>13}")
    for contender, outcome in results.items():
        seconds = outcome["seconds"]
        rss = f"{outcome['peak_rss_mib']:.0f}" if "peak_rss_mib" in outcome else "-"
        print(f"  {contender:36} {seconds:8.3f} {total / seconds / 1e6:8.1f} {baseline / seconds:7.1f}x {rss:>13}")
    ours = results["upload_batch"]["seconds"]
    others = ", ".join(f"{name} {results[name]['seconds'] / ours:.1f}x" for name in results
                       if name not in (BASELINE, "upload_batch"))
    print(f"  upload_batch is {baseline / ours:.1f}x the sequential loop; faster than: {others}")


# -- the children: one contender each --------------------------------------------------------

def run_child(contender: str, argv: list[str]) -> int:
    source, endpoint, bucket, work = Path(argv[0]), argv[1], argv[2], Path(argv[3])
    files = sorted(source.iterdir())
    if contender == "upload_batch":
        seconds = run_upload_batch(files, source, endpoint, bucket, work)
    elif contender == BASELINE:
        seconds = run_sequential(files, endpoint, bucket)
    else:
        seconds = run_s3transfer(files, endpoint, bucket, threads=16 if "16" in contender else None)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # ru_maxrss is in KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu_seconds": CPU_USED[0], "peak_rss_mib": usage.ru_maxrss / 1024}))
    return 0


def boto3_client(endpoint: str, max_pool_connections: int = 10) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, config=Config(
        s3={"addressing_style": "path"}, max_pool_connections=max_pool_connections))


def run_sequential(files: list[Path], endpoint: str, bucket: str) -> float:
    client = boto3_client(endpoint)
    client.put_object(Bucket=bucket, Key=WARM_UP_KEY, Body=b"x")
    started = time.perf_counter()
    cpu_started = time.process_time()
    for path in files:
        with path.open("rb") as body:
            client.put_object(Bucket=bucket, Key=path.name, Body=body)
    CPU_USED[0] = time.process_time() - cpu_started
    return time.perf_counter() - started


def run_s3transfer(files: list[Path], endpoint: str, bucket: str, threads: int | None) -> float:
    from s3transfer.manager import TransferConfig, TransferManager

    config = TransferConfig() if threads is None else TransferConfig(max_request_concurrency=threads)
    client = boto3_client(endpoint, max_pool_connections=config.max_request_concurrency)
    with TransferManager(client, config) as manager:
        manager.upload(io.BytesIO(b"x"), bucket, WARM_UP_KEY).result()
        started = time.perf_counter()
        cpu_started = time.process_time()
        futures = [manager.upload(str(path), bucket, path.name) for path in files]
        for future in futures:
            future.result()
        CPU_USED[0] = time.process_time() - cpu_started
        return time.perf_counter() - started


def run_upload_batch(files: list[Path], source: Path, endpoint: str, bucket: str, work: Path) -> float:
    """Through the real tool: an MCP client session (in-memory) to a Switchboard server with default settings."""
    import anyio
    from mcp import Client

    from server.app import build_server
    from server.config import Settings

    settings = Settings(
        data_dir=work / f"state-{uuid.uuid4().hex[:8]}", upload_roots=[source], s3_endpoint_url=endpoint,
        s3_bucket=bucket, s3_region="us-east-1", s3_addressing_style="path", s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )

    async def upload() -> float:
        async with Client(build_server(settings)) as client:
            await client.call_tool("upload_batch", {"files": [{"content": "x", "key": WARM_UP_KEY}]})
            started = time.perf_counter()
            cpu_started = time.process_time()
            result = await client.call_tool("upload_batch", {"files": [{"path": path.name} for path in files]})
            seconds = time.perf_counter() - started
            CPU_USED[0] = time.process_time() - cpu_started
        answer = result.structured_content or {}
        if result.is_error or answer.get("status") != "ok":
            raise RuntimeError(f"upload_batch did not upload everything: {result.content}")
        return seconds

    return anyio.run(upload)


if __name__ == "__main__":
    sys.exit(main())
