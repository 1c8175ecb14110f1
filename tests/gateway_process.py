"""The gateway as `make serve` runs it (gunicorn, gevent workers), in a process of its own."""

import os
import socket
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    def __init__(self, *, env: dict[str, str], port: int | None = None, log_path: Path | None = None):
        self.port = port or free_port()
        # The gateway's log goes to a file: a pipe that nobody reads fills up and blocks the gateway.
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="mmm-gateway-", suffix=".log")[1])
        # As `make serve` runs it: keys are optional unless the test's env says otherwise. The
        # webhook sender it starts beside itself only where a test asks for it: one more Django
        # process per gateway costs every other test a second of the machine's two cores.
        self.env = {
            **os.environ,
            "MMM_REQUIRE_AUTH": "false",
            "MMM_WEBHOOK_SENDER": "false",
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        self.process: subprocess.Popen | None = None
        self.headers: dict[str, str] = {}  # sent with post() and get(), e.g. an API key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60
        )

    def create_api_key(self, *, scope: str) -> str:
        """A new key of ``scope``, made as an operator would: create_api_key prints it last."""
        made = self.manage("create_api_key", "--name", f"test {scope} key", "--scope", scope)
        made.check_returncode()
        return made.stdout.strip().splitlines()[-1]

    def start(self) -> "GatewayProcess":
        with self.log_path.open("a") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", "mmm/gunicorn.conf.py", "mmm.wsgi"],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        wait_until(self._answers, timeout=30, poll=0.1, what=f"the gateway on {self.url} to answer")
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gateway exited at start: {self.log_path.read_text()}")
        try:
            requests.get(self.url + "/api/server/workers", timeout=5)
            return True
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still loading
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def post(self, path: str, payload) -> requests.Response:
        return requests.post(self.url + path, json=payload, headers=self.headers, timeout=30)

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(self.url + path, params=params, headers=self.headers, timeout=30)


@contextmanager
def gateway_database(tmp_path: Path):
    """A database of its own for gateway processes: a fresh PostgreSQL database when the
    suite runs on PostgreSQL, else a SQLite file. Yields the environment to run with."""
    base = os.environ.get("DATABASE_URL", "")
    env = {"MMM_VAR_DIR": str(tmp_path)}
    if not base.startswith("postgres"):
        yield {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.sqlite3'}"}
        return
    import psycopg2

    name = f"mmm_e2e_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield {**env, "DATABASE_URL": base.rsplit("/", 1)[0] + "/" + name}
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
