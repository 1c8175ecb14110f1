"""manage.py apply -f / export: the registry as a file, secrets as ${VAR} references."""

import io

import pytest
from django.core.management import CommandError, call_command

from registry.fleet.document import SCHEMA
from registry.models import RoutingPolicy, Worker, WorkerEvent
from registry.presets import PRESETS

pytestmark = pytest.mark.django_db

FLEET = """\
version: 1
models:
  proxyllm:
    policy:
      strategy: round_robin
      fallbacks: [small]
      max_attempts: 3
    workers:
      - req_url_template: http://127.0.0.1:9001/api/generate
        body: {input: "{USER_PROMPT}", model_name: "{MODEL_NAME}"}
        response_extract: data.items[].attributes.answer
        headers: {Authorization: "Bearer ${PROXY_KEY}", X-Team: search}
        weight: 2
      - req_url_template: http://127.0.0.1:9002/api/generate?key=${PROXY_QUERY_KEY}
        body: {input: "{USER_PROMPT}"}
  small:
    workers:
      - preset: openai
        base_url: http://127.0.0.1:9003/v1
        api_key: ${SMALL_KEY}
        upstream_model: llama3.1:8b
"""
SECRETS = {"PROXY_KEY": "sk-proxy-0123456789", "PROXY_QUERY_KEY": "q-0123456789abc", "SMALL_KEY": "sk-small-9876543210"}


@pytest.fixture
def secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


def run(command: str, *args, stdin: str | None = None, monkeypatch=None) -> str:
    out = io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command(command, *args, stdout=out)
    return out.getvalue()


def apply_text(text: str, *args, monkeypatch) -> str:
    return run("apply", "-f", "-", *args, stdin=text, monkeypatch=monkeypatch)


def registry_state() -> list:
    workers = sorted(
        (w.model_name, w.req_url_template, w.kind, w.upstream_model, w.headers, w.body, w.weight, w.response_extract)
        for w in Worker.objects.all()
    )
    policies = sorted((p.model_name, p.strategy, p.fallbacks, p.max_attempts) for p in RoutingPolicy.objects.all())
    return [workers, policies]


def test_apply_makes_the_registry_match_and_a_second_apply_changes_nothing(secrets, monkeypatch):
    out = apply_text(FLEET, monkeypatch=monkeypatch)
    assert "applied 4 change(s)" in out
    first = Worker.objects.get(req_url_template="http://127.0.0.1:9001/api/generate")
    assert first.headers == {"Authorization": "Bearer sk-proxy-0123456789", "X-Team": "search"}
    assert first.weight == 2
    assert Worker.objects.get(req_url_template__contains="9002").req_url_template.endswith("?key=q-0123456789abc")
    small = Worker.objects.get(model_name="small")
    assert (small.kind, small.preset, small.upstream_model) == ("openai", "openai", "llama3.1:8b")
    assert small.headers == {"Authorization": "Bearer sk-small-9876543210"}
    policy = RoutingPolicy.objects.get(model_name="proxyllm")
    assert (policy.strategy, policy.fallbacks, policy.max_attempts) == ("round_robin", ["small"], 3)
    assert set(WorkerEvent.objects.values_list("actor", "action")) == {("manage.py apply", "registered")}
    # No secret reaches the output.
    assert not any(secret in out for secret in secrets.values())

    again = apply_text(FLEET, monkeypatch=monkeypatch)
    assert again.strip() == "nothing to change: the registry matches the file"


def test_a_field_left_out_returns_to_its_default_and_the_change_is_named(secrets, monkeypatch):
    apply_text(FLEET, monkeypatch=monkeypatch)
    out = apply_text(FLEET.replace("        weight: 2\n", ""), "--dry-run", monkeypatch=monkeypatch)
    assert "~ update worker proxyllm @ http://127.0.0.1:9001/api/generate: weight 2 -> 1" in out
    assert "dry run: 1 change(s) not written" in out
    assert Worker.objects.get(req_url_template__contains="9001").weight == 2  # a dry run writes nothing
    apply_text(FLEET.replace("        weight: 2\n", ""), monkeypatch=monkeypatch)
    assert Worker.objects.get(req_url_template__contains="9001").weight == 1
    assert WorkerEvent.objects.filter(action="changed", changed_fields=["weight"]).count() == 1


def test_export_then_apply_dry_run_says_nothing_changes_and_holds_no_secret(secrets, monkeypatch):
    apply_text(FLEET, monkeypatch=monkeypatch)
    RoutingPolicy.objects.create(model_name="other", strategy="random")  # made elsewhere: the API, the admin
    exported = run("export")
    assert not any(secret in exported for secret in secrets.values()), exported
    assert "${PROXYLLM_AUTHORIZATION}" in exported and "${PROXYLLM_KEY}" in exported
    assert "# Secrets are references; set these variables first:" in exported
    # The references it made, set to the secrets, as CI would.
    for name, value in {
        "PROXYLLM_AUTHORIZATION": "Bearer sk-proxy-0123456789",
        "PROXYLLM_KEY": "q-0123456789abc",
        "SMALL_AUTHORIZATION": "Bearer sk-small-9876543210",
    }.items():
        monkeypatch.setenv(name, value)
    out = apply_text(exported, "--dry-run", "--prune", monkeypatch=monkeypatch)
    assert out.strip() == "nothing to change: the registry matches the file"


def test_prune_removes_what_the_file_no_longer_names(secrets, monkeypatch):
    apply_text(FLEET, monkeypatch=monkeypatch)
    smaller = FLEET.split("  small:\n")[0].replace(
        "    policy:\n      strategy: round_robin\n      fallbacks: [small]\n      max_attempts: 3\n", ""
    )
    kept = apply_text(smaller, monkeypatch=monkeypatch)
    assert kept.strip() == "nothing to change: the registry matches the file"  # without --prune nothing goes
    out = apply_text(smaller, "--prune", monkeypatch=monkeypatch)
    assert "- delete worker small @ http://127.0.0.1:9003/v1" in out
    assert "- delete policy proxyllm" in out
    assert not Worker.objects.filter(model_name="small").exists()
    assert not RoutingPolicy.objects.exists()
    assert WorkerEvent.objects.filter(action="offline", model_name="small", actor="manage.py apply").count() == 1


@pytest.mark.parametrize(
    ("mistake", "line", "says"),
    [
        (("        weight: 2\n", "        weight: -1\n"), 13, "weight: -1 is less than the minimum of 0"),
        (("        weight: 2\n", "        wieght: 2\n"), 9, "'wieght' was unexpected"),
        (("${SMALL_KEY}", "${NOT_SET_ANYWHERE}"), 20, "environment variable NOT_SET_ANYWHERE is not set"),
        (('body: {input: "{USER_PROMPT}"}', 'body: {input: "no placeholder"}'), 14, "body: must contain {USER_PROMPT}"),
        (("      strategy: round_robin\n", "      strategy: fastest\n"), 5, "'fastest' is not one of"),
        (("  small:\n", "  proxyllm:\n"), 16, "'proxyllm' appears twice"),
        (("version: 1\n", "version: 1\n  bad indent: [\n"), 2, "not valid YAML"),
    ],
)
def test_a_bad_file_changes_nothing_and_names_its_line(secrets, monkeypatch, mistake, line, says):
    before = registry_state()
    with pytest.raises(CommandError) as refused:
        apply_text(FLEET.replace(*mistake), monkeypatch=monkeypatch)
    message = str(refused.value)
    assert "nothing changed" in message
    assert f"<stdin>:{line}:" in message and says in message, message
    assert registry_state() == before and not WorkerEvent.objects.exists()


def test_the_schema_knows_every_preset():
    assert set(SCHEMA["$defs"]["worker"]["properties"]["preset"]["enum"]) == set(PRESETS)


def test_a_fleet_file_names_engines_and_picks_an_engine_strategy(monkeypatch):
    text = """\
version: 1
models:
  llama:
    policy: {strategy: prefix_aware}
    workers:
      - preset: vllm
        base_url: http://127.0.0.1:9011/v1
      - preset: openai
        base_url: http://127.0.0.1:9012/v1
        engine: sglang
        metrics_url: http://127.0.0.1:9013/metrics?token=${METRICS_TOKEN}
"""
    monkeypatch.setenv("METRICS_TOKEN", "mt-0123456789abc")
    apply_text(text, monkeypatch=monkeypatch)

    engines = dict(Worker.objects.values_list("req_url_template", "engine"))
    assert engines == {"http://127.0.0.1:9011/v1": "vllm", "http://127.0.0.1:9012/v1": "sglang"}
    assert RoutingPolicy.objects.get(model_name="llama").strategy == "prefix_aware"
    exported = run("export")
    assert "engine: sglang" in exported and "mt-0123456789abc" not in exported
