"""Production settings pass check --deploy; `make serve`'s auth-off mode stays on loopback."""

import subprocess
import sys

from cryptography.fernet import Fernet

from tests.gateway_process import BIN, ROOT

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "p" * 20 + "roduction-secret-key-of-sufficient-length-and-variety-0123456789",
    "MMM_SECRET_KEYS": Fernet.generate_key().decode(),
    "MMM_BEHIND_TLS_PROXY": "true",
    "ALLOWED_HOSTS": "gateway.example.com",
}


def run(args: list[str], env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MMM_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_about_a_derived_secrets_key_and_auth_off(tmp_path):
    env = {**PRODUCTION, "MMM_SECRET_KEYS": "", "MMM_REQUIRE_AUTH": "false"}

    result = run([sys.executable, "manage.py", "check", "--deploy"], env, tmp_path)

    assert "mmm.W001" in result.stderr and "mmm.W002" in result.stderr


def test_gunicorn_refuses_a_public_bind_with_auth_off(tmp_path):
    result = run(
        [str(BIN / "gunicorn"), "-c", "mmm/gunicorn.conf.py", "mmm.wsgi"],
        {"MMM_REQUIRE_AUTH": "false", "HOST": "0.0.0.0", "PORT": "19599"},
        tmp_path,
    )

    assert result.returncode != 0
    assert "refusing to serve on 0.0.0.0 with MMM_REQUIRE_AUTH off" in result.stderr


def test_the_workers_gil_switch_interval_comes_from_the_environment(tmp_path):
    read = [sys.executable, "-c", "import runpy; print(runpy.run_path('mmm/gunicorn.conf.py')['_GIL_SWITCH_SECONDS'])"]

    assert run(read, {"MMM_REQUIRE_AUTH": "true"}, tmp_path).stdout.split()[-1] == "0.0005"
    assert run(read, {"MMM_GIL_SWITCH_SECONDS": "0.002"}, tmp_path).stdout.split()[-1] == "0.002"
    refused = run(read, {"MMM_GIL_SWITCH_SECONDS": "0"}, tmp_path)
    assert refused.returncode != 0 and "MMM_GIL_SWITCH_SECONDS" in refused.stderr
