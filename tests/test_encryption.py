"""Upstream secrets: header values and URL query strings encrypted at rest, rotatable,
write-only in the API and the admin."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from registry.models import Worker
from tests.conftest import SEED_ANSWER, seed_registration

pytestmark = pytest.mark.django_db

SECRET = "sk-canary-" + "Q7w" * 10
URL = "http://127.0.0.1:9/gen"


def stored_headers_column() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT headers FROM registry_worker")
        return cursor.fetchone()[0]


def register(api, url=URL):
    response = api.post(
        "/api/server/register", seed_registration(url, headers={"Authorization": f"Bearer {SECRET}"}), format="json"
    )
    assert response.status_code == 200, response.json()


def test_header_values_are_encrypted_in_the_database_and_sent_upstream_as_given(api, upstream):
    register(api, upstream.on("/gen", json=SEED_ANSWER))

    raw = stored_headers_column()
    assert SECRET not in raw and "Authorization" not in raw
    assert Worker.objects.get().headers == {"Authorization": f"Bearer {SECRET}"}
    api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")
    assert upstream.hits("/gen")[0].headers["Authorization"] == f"Bearer {SECRET}"


def test_empty_headers_are_stored_as_they_are_and_any_other_value_encrypted(api, upstream):
    # No secret in {}: a fleet without upstream keys is read without decrypting (mmm.encryption).
    response = api.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER)), format="json")
    assert response.status_code == 200, response.json()
    assert stored_headers_column() == "{}"
    assert Worker.objects.get().headers == {}

    worker = Worker.objects.get()
    worker.headers = {"X-Team": "a"}
    worker.save(update_fields=["headers"])
    assert stored_headers_column().startswith("gAAAA")  # a Fernet token
    assert Worker.objects.get().headers == {"X-Team": "a"}


def test_an_empty_value_stored_encrypted_before_still_reads(api, upstream):
    from mmm import encryption

    register(api, upstream.on("/gen", json=SEED_ANSWER))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE registry_worker SET headers = %s", [encryption.encrypt("{}")])
    assert Worker.objects.get().headers == {}
    call_command("rotate_secrets")
    assert stored_headers_column() == "{}"


def test_keys_rotate_the_first_encrypts_all_decrypt(api, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MMM_SECRET_KEYS = [old]
    register(api)
    written_with_old = stored_headers_column()

    settings.MMM_SECRET_KEYS = [new, old]
    assert Worker.objects.get().headers["Authorization"] == f"Bearer {SECRET}"
    call_command("rotate_secrets")
    assert stored_headers_column() != written_with_old

    settings.MMM_SECRET_KEYS = [new]
    assert Worker.objects.get().headers["Authorization"] == f"Bearer {SECRET}"


def test_a_value_no_configured_key_opens_is_a_clear_error(api, settings):
    settings.MMM_SECRET_KEYS = [Fernet.generate_key().decode()]
    register(api)
    settings.MMM_SECRET_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted with MMM_SECRET_KEYS"):
        Worker.objects.get()


def test_a_malformed_key_in_the_setting_fails_loudly(settings):
    from mmm import encryption

    settings.MMM_SECRET_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="must be Fernet keys"):
        encryption.encrypt("x")


def test_the_encrypted_column_cannot_be_filtered_on_by_mistake():
    with pytest.raises(NotImplementedError, match="encrypted"):
        Worker.objects.filter(headers={"a": "b"}).exists()


def test_the_admin_shows_header_values_masked_and_keeps_a_value_left_masked(admin_client, api):
    register(api)
    worker = Worker.objects.get()
    page = admin_client.get(f"/admin/registry/worker/{worker.pk}/change/").content.decode()
    assert SECRET not in page and "***" in page

    form = {
        "model_name": "proxyllm",
        "req_url_template": URL,
        "method": "POST",
        "headers": '{"Authorization": "***", "X-Team": "a"}',
        "body": '{"input": "{USER_PROMPT}"}',
        "response_extract": "",
        "owner": "",
        "weight": "2",
        "enabled": "on",
        "timeout": "",
        "health_url": "",
        "kind": "template",
    }
    assert admin_client.post(f"/admin/registry/worker/{worker.pk}/change/", form).status_code == 302
    assert Worker.objects.get().headers == {"Authorization": f"Bearer {SECRET}", "X-Team": "a"}

    form["headers"] = '{"Authorization": "Bearer new-value"}'
    admin_client.post(f"/admin/registry/worker/{worker.pk}/change/", form)
    assert Worker.objects.get().headers == {"Authorization": "Bearer new-value"}


def test_the_worker_list_masks_keys_in_query_strings_and_body_templates(api):
    url = URL + "?key=" + SECRET + "&prompt={USER_PROMPT}"
    body = {"api_key": SECRET, "input": "{USER_PROMPT}", "token": "{MODEL_NAME}"}
    api.post("/api/server/register", seed_registration(url, body=body), format="json")

    row = api.get("/api/server/workers").json()["data"][0]

    assert SECRET not in str(row)
    assert row["req_url_template"] == URL + "?key=***&prompt={USER_PROMPT}"
    assert row["body"] == {"api_key": "***", "input": "{USER_PROMPT}", "token": "{MODEL_NAME}"}


QUERY_URL = "http://127.0.0.1:9/gen?key=" + SECRET


def stored_url_column() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT req_url_template FROM registry_worker")
        return cursor.fetchone()[0]


def test_a_url_query_string_is_encrypted_at_rest_and_the_url_still_identifies_its_worker(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER) + "?key=" + SECRET
    register(api, url)

    stored = stored_url_column()
    assert SECRET not in stored and stored.startswith(upstream.url("/gen") + "?")
    assert Worker.objects.get(req_url_template=url).req_url_template == url
    register(api, url)  # the same worker again: updated in place, not a second one
    assert Worker.objects.count() == 1
    api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")
    assert upstream.hits("/gen")[0].path == "/gen?key=" + SECRET
    offline = api.post("/api/server/offline", {"model_name": "proxyllm", "req_url_template": url}, format="json")
    assert offline.status_code == 200 and not Worker.objects.exists()


def test_rotation_re_encrypts_url_query_strings_and_lookups_find_them(api, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MMM_SECRET_KEYS = [old]
    register(api, QUERY_URL)
    written_with_old = stored_url_column()

    settings.MMM_SECRET_KEYS = [new, old]
    call_command("rotate_secrets")
    assert stored_url_column() != written_with_old

    settings.MMM_SECRET_KEYS = [new]
    assert Worker.objects.get(req_url_template=QUERY_URL).req_url_template == QUERY_URL


def stored_column(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {name} FROM registry_worker")
        return str(cursor.fetchone()[0])


def test_a_url_password_is_encrypted_at_rest_sent_as_basic_auth_and_still_identifies_its_worker(api, upstream):
    import base64

    url = upstream.on("/gen", json=SEED_ANSWER).replace("http://", f"http://svc:{SECRET}@")
    assert api.post("/api/server/register", seed_registration(url), format="json").status_code == 200

    stored = stored_column("req_url_template")
    assert SECRET not in stored and stored.startswith("http://svc:mmmp1.")
    assert Worker.objects.get(req_url_template=url).req_url_template == url
    api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")
    assert (
        upstream.hits("/gen")[0].headers["Authorization"]
        == "Basic " + base64.b64encode(f"svc:{SECRET}".encode()).decode()
    )
    offline = api.post("/api/server/offline", {"model_name": "proxyllm", "req_url_template": url}, format="json")
    assert offline.status_code == 200 and not Worker.objects.exists()


def test_credential_fields_of_a_body_are_encrypted_at_rest_and_the_rest_stays_readable(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    body = {"input": "{USER_PROMPT}", "auth": {"api_key": SECRET, "region": "eu"}, "tokens": [{"token": SECRET}]}
    api.post("/api/server/register", seed_registration(url, body=body), format="json")

    stored = stored_column("body")
    assert SECRET not in stored
    assert '"region": "eu"' in stored and "{USER_PROMPT}" in stored and "mmms1." in stored
    assert Worker.objects.get().body == body
    api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json")
    assert upstream.hits("/gen")[0].json["auth"] == {"api_key": SECRET, "region": "eu"}


def test_rotation_re_encrypts_url_passwords_and_body_secrets(api, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MMM_SECRET_KEYS = [old]
    url = f"http://svc:{SECRET}@127.0.0.1:9/gen"
    body = {"input": "{USER_PROMPT}", "api_key": SECRET}
    api.post("/api/server/register", seed_registration(url, body=body), format="json")
    written_with_old = stored_column("req_url_template"), stored_column("body")

    settings.MMM_SECRET_KEYS = [new, old]
    call_command("rotate_secrets")
    assert stored_column("req_url_template") != written_with_old[0]
    assert stored_column("body") != written_with_old[1]

    settings.MMM_SECRET_KEYS = [new]
    worker = Worker.objects.get(req_url_template=url)
    assert (worker.req_url_template, worker.body) == (url, body)


@pytest.mark.parametrize(
    "url, body",
    [
        ("http://127.0.0.1:9/gen?mmmq1.made-up", {"input": "{USER_PROMPT}"}),
        ("http://u:mmmp1.made-up@127.0.0.1:9/gen", {"input": "{USER_PROMPT}"}),
        ("http://127.0.0.1:9/gen", {"input": "{USER_PROMPT}", "api_key": "mmms1.made-up"}),
    ],
)
def test_values_that_look_encrypted_are_encrypted_too_and_read_back_as_sent(api, url, body):
    # Stored as they came, no key would open them, and every read of the table would fail.
    assert api.post("/api/server/register", seed_registration(url, body=body), format="json").status_code == 200

    worker = Worker.objects.get()
    assert (worker.req_url_template, worker.body) == (url, body)


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_url_passwords_and_body_secrets_stored_in_plain_text():
    from django.db.migrations.executor import MigrationExecutor

    before, after = ("registry", "0009_model_owner"), ("registry", "0010_encrypt_url_passwords_and_body_secrets")
    url = f"http://svc:{SECRET}@127.0.0.1:9/gen"
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    try:
        old_worker = executor.loader.project_state([before]).apps.get_model("registry", "Worker")
        pk = old_worker.objects.create(model_name="m", req_url_template="http://x/", body={}).pk
        with connection.cursor() as cursor:  # as a release before this one wrote them
            cursor.execute(
                "UPDATE registry_worker SET req_url_template = %s, body = %s WHERE id = %s",
                [url, f'{{"input": "{{USER_PROMPT}}", "api_key": "{SECRET}"}}', pk],
            )
        assert SECRET in stored_column("req_url_template") and SECRET in stored_column("body")
        MigrationExecutor(connection).migrate([after])
        assert SECRET not in stored_column("req_url_template") and SECRET not in stored_column("body")

        MigrationExecutor(connection).migrate([before])  # and back: a plain JSON body again
        assert f'"api_key": "{SECRET}"' in stored_column("body")
    finally:
        call_command("migrate", verbosity=0)

    worker = Worker.objects.get()
    assert (worker.req_url_template, worker.body) == (url, {"input": "{USER_PROMPT}", "api_key": SECRET})
