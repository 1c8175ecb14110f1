import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_the_models_and_their_migrations_agree():
    # Fails when a model changed without `manage.py makemigrations`: a fresh install would
    # then run with a schema the code does not expect.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
