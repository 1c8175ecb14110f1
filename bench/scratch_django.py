"""Django set up in this process on a fresh SQLite file, for the benchmarks that time one part."""

import os
import tempfile


def set_up(*, prefix: str) -> str:
    """Point the settings at a new database in a temporary directory, migrate it, and return
    that directory. Call before importing anything that needs the settings."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "mmm.settings",
            "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
            "MMM_VAR_DIR": tmp,
            "MMM_REQUIRE_AUTH": "false",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return tmp
