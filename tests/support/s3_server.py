"""A real S3-compatible server on loopback for the team-backend tests: versitygw (built by
scripts/bootstrap.sh into .tools/bin) with its posix backend in a temporary folder.

One server per test session (`s3_server`); each test gets its own empty bucket
(`s3_bucket`), which is what a team starts from. The server is stopped by its PID when
the session ends. Requests to it go through `curl --aws-sigv4`: signed like any S3
client's, and no S3 library is needed.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from engine import TOOLS_BIN, read_versions

__all__ = ["S3Bucket", "S3Server", "s3_bucket", "s3_server"]

REGION = "us-east-1"
# The SHA-256 of an empty body: S3 servers want it named on bodiless requests.
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    """A running versitygw: its endpoint and the root credentials it was started with."""

    process: subprocess.Popen[bytes]
    endpoint: str
    access_key: str
    secret_key: str
    log: Path

    def request(self, method: str, path: str) -> subprocess.CompletedProcess[str]:
        """A signed request; the result has the body as stdout and the HTTP status last."""
        return subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "10",
                "--aws-sigv4",
                f"aws:amz:{REGION}:s3",
                "--user",
                f"{self.access_key}:{self.secret_key}",
                "-H",
                f"x-amz-content-sha256: {EMPTY_SHA256}",
                "-X",
                method,
                "-w",
                "\n%{http_code}",
                f"{self.endpoint}{path}",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    def create_bucket(self, name: str) -> None:
        result = self.request("PUT", f"/{name}")
        status = result.stdout.rsplit("\n", 1)[-1]
        if status != "200":
            raise RuntimeError(f"S3 server: cannot create bucket {name}: {result.stdout}")

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The object keys under prefix (ListObjectsV2; a test's buckets stay small)."""
        # Encoded here as SigV4's canonical query wants it (curl signs the query as given).
        result = self.request("GET", f"/{bucket}?list-type=2&prefix={quote(prefix, safe='')}")
        body, _, status = result.stdout.rpartition("\n")
        if status != "200":
            raise RuntimeError(f"S3 server: cannot list {bucket}/{prefix}: {result.stdout}")
        # Keys are the only <Key> elements of a listing; pulumi's keys need no unescaping.
        return re.findall(r"<Key>([^<]*)</Key>", body)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(folder: Path) -> S3Server:
    binary = TOOLS_BIN / "versitygw"
    want = read_versions()["VERSITYGW_VERSION"]
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: scripts/bootstrap.sh builds it ({want})")
    data, log = folder / "data", folder / "versitygw.log"
    data.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    access, secret = "glidepath-test", secrets.token_hex(16)
    env = {**os.environ, "ROOT_ACCESS_KEY_ID": access, "ROOT_SECRET_ACCESS_KEY": secret}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), "--port", f"127.0.0.1:{port}", "--quiet", "posix", str(data)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = S3Server(process, f"http://127.0.0.1:{port}", access, secret, log)
    # Ready when a signed request is answered: at most 100 tries over about 10 s.
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"versitygw exited ({process.returncode}): {log.read_text()}")
        if server.request("GET", "/").stdout.endswith("\n200"):
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"versitygw on port {port} did not answer in 10 s: {log.read_text()}")


@dataclass
class S3Bucket:
    """One empty bucket on the session's server, and what pulumi needs to use it."""

    server: S3Server
    name: str

    @property
    def backend_url(self) -> str:
        # gocloud's s3 URL: the server's endpoint (http on loopback), path-style addressing
        # (no per-bucket DNS name here) and a region for request signing.
        return (
            f"s3://{self.name}?endpoint={self.server.endpoint}"
            f"&s3ForcePathStyle=true&region={REGION}"
        )

    def env(self) -> dict[str, str]:
        """PULUMI_BACKEND_URL and the credentials, as a CI job's environment has them."""
        return {
            "PULUMI_BACKEND_URL": self.backend_url,
            "AWS_ACCESS_KEY_ID": self.server.access_key,
            "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
        }

    def lock_keys(self) -> list[str]:
        return self.server.keys(self.name, ".pulumi/locks/")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_server(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    name = f"glidepath-{secrets.token_hex(4)}"
    s3_server.create_bucket(name)
    return S3Bucket(s3_server, name)
