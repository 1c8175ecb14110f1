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


@pytest.mark.django_db(transaction=True)
def test_workers_made_by_the_native_presets_become_workers_of_those_kinds():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from registry.models import Worker

    before, after = ("registry", "0007_worker_kinds_usage_extract"), ("registry", "0008_preset_workers_native_kinds")
    anthropic_body = {
        "model": "{MODEL_NAME}",
        "system": "{SYSTEM_PROMPT}",
        "messages": "{NON_SYSTEM_MESSAGES}",
        "max_tokens": "{MAX_TOKENS|1024}",
        "temperature": "{MODEL_TEMPERATURE}",
    }
    ollama_body = {
        "model": "{MODEL_NAME}",
        "messages": "{MESSAGES}",
        "stream": False,
        "options": {"temperature": "{MODEL_TEMPERATURE}", "num_predict": "{MAX_TOKENS}"},
    }
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    try:
        old_worker = executor.loader.project_state([before]).apps.get_model("registry", "Worker")
        old_worker.objects.create(
            model_name="claude",
            preset="anthropic",
            req_url_template="https://api.anthropic.com/v1/messages",
            body=anthropic_body,
            response_extract="content[0].text",
            headers={"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-k"},
        )
        old_worker.objects.create(
            model_name="llama",
            preset="ollama",
            req_url_template="http://h:11434/api/chat",
            body=ollama_body,
            response_extract="message.content",
        )
        edited = {**ollama_body, "keep_alive": "5m"}
        old_worker.objects.create(
            model_name="edited",
            preset="ollama",
            req_url_template="http://h:11434/api/chat",
            body=edited,
            response_extract="message.content",
        )
        executor = MigrationExecutor(connection)
        executor.migrate([after])
    finally:
        call_command("migrate", verbosity=0)

    claude, llama, kept = (Worker.objects.get(model_name=name) for name in ("claude", "llama", "edited"))
    assert (claude.kind, claude.req_url_template, claude.body, claude.response_extract) == (
        "anthropic",
        "https://api.anthropic.com",
        None,
        "",
    )
    assert claude.headers == {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-k"}
    assert (llama.kind, llama.req_url_template) == ("ollama", "http://h:11434")
    # Edited since its preset made it: the operator's template stays as it is.
    assert (kept.kind, kept.body, kept.req_url_template) == ("template", edited, "http://h:11434/api/chat")
