"""Steady completion traffic against a gateway while a test (or bench/outage.py) fails a service.

Each of a few client threads sends one completion after another and records when it started,
how long it took and what came back, tagged with the phase the test had set when it started.
"""

import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests

from tests.conftest import SEED_ANSWER, seed_registration
from tests.gateway_process import GatewayProcess

COMPLETIONS = "/api/v1/chat/completions"


@dataclass(frozen=True)
class Sample:
    phase: str
    started: float
    seconds: float
    status: int  # 0: no HTTP answer (connection error, client timeout)
    code: str


class SteadyLoad:
    def __init__(self, *, url: str, key: str, model: str = "proxyllm", clients: int = 4, client_timeout: float = 30.0):
        self.url = url + COMPLETIONS
        self.headers = {"Authorization": f"Bearer {key}"}
        self.model = model
        self.clients = clients
        self.client_timeout = client_timeout
        self.phase = "warm"
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "SteadyLoad":
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.client_timeout + 5)

    def in_phase(self, phase: str) -> list[Sample]:
        return [sample for sample in self.samples if sample.phase == phase]

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            phase, started = self.phase, time.monotonic()
            try:
                response = session.post(
                    self.url,
                    json={"model_name": self.model, "input": "hi"},
                    headers=self.headers,
                    timeout=self.client_timeout,
                )
                status = response.status_code
                code = "" if status == 200 else response.json().get("code", "")
            except requests.RequestException as exc:
                status, code = 0, type(exc).__name__
            self.samples.append(Sample(phase, started, time.monotonic() - started, status, code))


def summary(samples: list[Sample]) -> dict:
    served = sum(1 for sample in samples if sample.status == 200)
    return {
        "requests": len(samples),
        "served": served,
        "served_fraction": served / len(samples) if samples else 0.0,
        "worst_seconds": max((sample.seconds for sample in samples), default=0.0),
        "codes": sorted({sample.code for sample in samples if sample.status != 200}),
    }


def through(url: str, proxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def service_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def start_serving(env: dict, upstream, *, gateway_env: dict) -> tuple[GatewayProcess, str, str]:
    """A gateway with one worker for proxyllm; returns it, an inference key and an admin key."""
    direct = GatewayProcess(env=env)
    inference_key = direct.create_api_key(scope="inference")
    admin_key = direct.create_api_key(scope="admin")
    gateway = GatewayProcess(env=gateway_env).start()
    gateway.headers = {"Authorization": f"Bearer {admin_key}"}
    gateway.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER))).raise_for_status()
    return gateway, inference_key, admin_key


def logged_rows(database_url: str) -> dict[str, int]:
    import psycopg2

    with psycopg2.connect(database_url) as db, db.cursor() as cursor:
        cursor.execute("SELECT error_code, count(*) FROM console_requestlog GROUP BY error_code")
        counts = dict(cursor.fetchall())
    return {"all": sum(counts.values()), **counts}


def complete(gateway: GatewayProcess, key: str, *, timeout: float = 10.0) -> requests.Response:
    return requests.post(
        gateway.url + COMPLETIONS,
        json={"model_name": "proxyllm", "input": "hi"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )
