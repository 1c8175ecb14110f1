"""A model name belongs to the worker key that first registered it: another worker key cannot
add a worker to it (and so get a share of its clients' prompts) unless an admin shares it."""

import pytest
from django.core.management import call_command

from accounts.models import ApiKey
from registry.models import ModelOwner, Worker
from tests.conftest import bearer, seed_registration

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("require_auth")]

REGISTER = "/api/server/register"
OWNER = "/api/server/model/owner"


@pytest.fixture
def keys(make_key):
    """Two teams' worker keys and an admin key, with their prefixes."""
    made = {name: make_key(scope, name=name) for name, scope in (("a", "worker"), ("b", "worker"), ("ops", "admin"))}
    return {name: (key, ApiKey.objects.get(name=name).prefix) for name, key in made.items()}


def register(api, key, url, **fields):
    return api.post(REGISTER, seed_registration(url, **fields), format="json", **bearer(key))


def set_owner(api, keys, **body):
    return api.post(OWNER, {"model_name": "proxyllm", **body}, format="json", **bearer(keys["ops"][0]))


def test_another_worker_key_cannot_add_a_worker_to_a_model_it_does_not_own(api, keys):
    assert register(api, keys["a"][0], "http://127.0.0.1:9/a1").status_code == 200

    response = register(api, keys["b"][0], "http://127.0.0.1:9/b1")

    assert response.status_code == 403
    assert response.json()["success"] is False
    assert response.json()["code"] == "model_not_owned"
    assert response.json()["model_name"] == "proxyllm"
    assert "model 'proxyllm' belongs to another key" in response.json()["msg"]
    assert list(Worker.objects.values_list("req_url_template", flat=True)) == ["http://127.0.0.1:9/a1"]


def test_the_owner_adds_more_workers_and_other_keys_have_names_of_their_own(api, keys):
    register(api, keys["a"][0], "http://127.0.0.1:9/a1")

    assert register(api, keys["a"][0], "http://127.0.0.1:9/a2").status_code == 200
    assert register(api, keys["b"][0], "http://127.0.0.1:9/b1", model_name="b-model").status_code == 200
    assert ModelOwner.objects.get(model_name="proxyllm").owner_key.name == "a"
    assert ModelOwner.objects.get(model_name="b-model").owner_key.name == "b"


def test_a_preset_registration_cannot_join_another_keys_model(api, keys, upstream):
    register(api, keys["a"][0], "http://127.0.0.1:9/a1", model_name="gpt")
    preset = {"model_name": "gpt", "preset": "openai", "base_url": upstream.url("/v1"), "api_key": "sk-b"}

    response = api.post(REGISTER, preset, format="json", **bearer(keys["b"][0]))

    assert response.status_code == 403
    assert response.json()["code"] == "model_not_owned"
    assert Worker.objects.count() == 1


def test_an_admin_key_adds_workers_to_any_model(api, keys):
    register(api, keys["a"][0], "http://127.0.0.1:9/a1")

    assert register(api, keys["ops"][0], "http://127.0.0.1:9/ops").status_code == 200
    assert ModelOwner.objects.get().owner_key.name == "a"  # the admin's worker changed no ownership


def test_after_the_admin_shares_the_model_the_other_key_may_add_workers(api, keys):
    register(api, keys["a"][0], "http://127.0.0.1:9/a1")

    shared = set_owner(api, keys, share_with=[keys["b"][1]])

    assert shared.status_code == 200, shared.json()
    assert shared.json()["data"] == {"model_name": "proxyllm", "owner": keys["a"][1], "shared_with": [keys["b"][1]]}
    assert register(api, keys["b"][0], "http://127.0.0.1:9/b1").status_code == 200

    set_owner(api, keys, unshare=[keys["b"][1]])
    assert register(api, keys["b"][0], "http://127.0.0.1:9/b2").status_code == 403
    assert register(api, keys["b"][0], "http://127.0.0.1:9/b1").status_code == 200  # its own worker it still changes


def test_after_a_transfer_the_new_owner_may_add_workers_and_the_old_one_may_not(api, keys):
    register(api, keys["a"][0], "http://127.0.0.1:9/a1")

    assert set_owner(api, keys, owner=keys["b"][1]).json()["data"]["owner"] == keys["b"][1]

    assert register(api, keys["b"][0], "http://127.0.0.1:9/b1").status_code == 200
    assert register(api, keys["a"][0], "http://127.0.0.1:9/a2").status_code == 403
    assert (
        register(api, keys["a"][0], "http://127.0.0.1:9/a1", weight=3).status_code == 200
    )  # existing workers keep working


def test_a_model_given_to_nobody_takes_workers_from_admins_only(api, keys):
    register(api, keys["a"][0], "http://127.0.0.1:9/a1")
    set_owner(api, keys, owner=None)

    assert register(api, keys["a"][0], "http://127.0.0.1:9/a2").status_code == 403
    assert register(api, keys["ops"][0], "http://127.0.0.1:9/ops").status_code == 200


def test_a_model_an_admin_registered_first_is_not_free_for_a_worker_key(api, keys):
    register(api, keys["ops"][0], "http://127.0.0.1:9/ops")

    assert register(api, keys["a"][0], "http://127.0.0.1:9/a1").status_code == 403


def test_a_model_whose_workers_predate_ownership_belongs_to_the_key_of_its_oldest_worker(api, keys):
    a_key = ApiKey.objects.get(name="a")
    Worker.objects.create(
        model_name="proxyllm", req_url_template="http://127.0.0.1:9/old", body={"i": "{USER_PROMPT}"}, owner_key=a_key
    )

    assert register(api, keys["b"][0], "http://127.0.0.1:9/b1").status_code == 403
    assert register(api, keys["a"][0], "http://127.0.0.1:9/a1").status_code == 200


def test_only_admin_keys_may_transfer_or_share(api, keys):
    response = api.post(OWNER, {"model_name": "proxyllm", "owner": keys["b"][1]}, format="json", **bearer(keys["b"][0]))

    assert response.status_code == 403
    assert response.json()["code"] == "scope_missing"


def test_sharing_with_an_unknown_key_prefix_is_a_400_naming_it(api, keys):
    response = set_owner(api, keys, share_with=["mmm_nosuch"])

    assert response.status_code == 400
    assert "no API key has the prefix 'mmm_nosuch'" in response.json()["errors"]["share_with"][0]


def test_the_admin_transfers_and_shares_in_its_model_owner_page(admin_client, api, keys):
    register(api, keys["a"][0], "http://127.0.0.1:9/a1")
    record = ModelOwner.objects.get()
    b_key = ApiKey.objects.get(name="b")

    page = admin_client.get(f"/admin/registry/modelowner/{record.pk}/change/")
    assert page.status_code == 200
    saved = admin_client.post(
        f"/admin/registry/modelowner/{record.pk}/change/",
        {"model_name": "proxyllm", "owner_key": "", "shared_with": [b_key.pk]},
    )
    assert saved.status_code == 302

    assert register(api, keys["b"][0], "http://127.0.0.1:9/b1").status_code == 200
    assert register(api, keys["a"][0], "http://127.0.0.1:9/a2").status_code == 403


def test_the_migration_gives_each_model_the_owner_of_its_oldest_worker(transactional_db, make_key):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    call_command("migrate", "registry", "0006", verbosity=0)
    try:
        executor = MigrationExecutor(connection)
        old_apps = executor.loader.project_state([("registry", "0006_encrypt_url_query_strings")]).apps
        OldWorker = old_apps.get_model("registry", "Worker")
        make_key("worker", name="first")
        make_key("worker", name="second")
        first, second = (ApiKey.objects.get(name=name).pk for name in ("first", "second"))
        for url, owner in (("http://127.0.0.1:9/1", first), ("http://127.0.0.1:9/2", second)):
            OldWorker.objects.create(
                model_name="shared-name", req_url_template=url, body={"i": "{USER_PROMPT}"}, owner_key_id=owner
            )
        OldWorker.objects.create(
            model_name="admin-made", req_url_template="http://127.0.0.1:9/3", body={"i": "{USER_PROMPT}"}
        )
    finally:
        call_command("migrate", "registry", verbosity=0)

    owners = dict(ModelOwner.objects.values_list("model_name", "owner_key__name"))
    assert owners == {"shared-name": "first", "admin-made": None}
