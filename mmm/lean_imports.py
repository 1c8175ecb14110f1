"""Django REST framework without the optional packages it imports and the gateway never uses.

``rest_framework.compat`` imports, when they are installed, ``requests`` (for its test client,
``RequestsClient``), ``yaml`` (its own OpenAPI renderer; drf-spectacular, which serves the
gateway's document, imports yaml itself), ``pygments`` (highlighting in the browsable API's
markdown docs, which need ``markdown``, not installed) and ``django.contrib.postgres.fields``
(ModelSerializer's mapping of PostgreSQL's array, range and hstore fields, which no model here
has). All four are installed for other reasons (requests is a declared dependency the tests use,
yaml is the fleet file's format for ``manage.py apply`` and ``export``, pygments comes with the
development tools, psycopg2 is the PostgreSQL driver), so every process paid for them: about
10 MiB of resident memory each, 4.4 MiB of it psycopg2 with its bundled libpq and OpenSSL in a
process whose database is SQLite (measured with /proc/self/status around each import,
docs/benchmark.md).

``import_drf_compat()`` imports ``rest_framework.compat`` with those names marked absent, so it
takes the path it takes when they are not installed, and then unmarks them: anything that
imports one of them later (drf-spectacular, the tests, psycopg2 for the database) gets it as
usual. It must run before anything else imports rest_framework; mmm.settings calls it.
"""

import sys

# What DRF imports only for features the gateway does not use.
UNUSED_BY_DRF = ("requests", "yaml", "pygments")
# ModelSerializer's PostgreSQL field mapping: needed only where PostgreSQL is the database (and
# the driver is loaded anyway), and only for fields no model here has.
POSTGRES_FIELDS = "django.contrib.postgres.fields"


def import_drf_compat(*, postgresql: bool) -> None:
    """Import ``rest_framework.compat`` without the extras above (a no-op once it is imported)."""
    if "rest_framework.compat" in sys.modules:
        return
    names = (*UNUSED_BY_DRF, *(() if postgresql else (POSTGRES_FIELDS,)))
    # None in sys.modules makes an import raise ImportError, which compat catches as "not installed".
    marked = [name for name in names if name not in sys.modules]
    for name in marked:
        sys.modules[name] = None
    try:
        import rest_framework.compat  # noqa: F401
    finally:
        for name in marked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
