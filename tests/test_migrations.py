import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_the_models_and_their_migrations_agree():
    # Fails when a model changed without `manage.py makemigrations`: a fresh install would
    # then run with a schema the code does not expect.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_urls_stored_before_encryption_are_encrypted_by_the_migration():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from registry.models import Worker

    before, after = ("registry", "0005_worker_kind_presets"), ("registry", "0006_encrypt_url_query_strings")
    url = "http://127.0.0.1:9/gen?key=plain-key-before-0006"
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    try:
        old_worker = executor.loader.project_state([before]).apps.get_model("registry", "Worker")
        old_worker.objects.create(model_name="m", req_url_template=url, body={"input": "{USER_PROMPT}"})
        executor = MigrationExecutor(connection)
        executor.migrate([after])
    finally:
        call_command("migrate", verbosity=0)

    with connection.cursor() as cursor:
        cursor.execute("SELECT req_url_template FROM registry_worker")
        [(stored,)] = cursor.fetchall()
    assert "plain-key-before-0006" not in stored
    assert Worker.objects.get(req_url_template=url).req_url_template == url
