"""Rows the request path queues and a background writer stores in bulk, without the ORM's per-row work.

Every completion queues a request-log row and, when it used tokens, a usage-ledger row; the
writers (console.request_log) store them in batches. Through ``Model(**values)`` and
``bulk_create`` that cost about 215 µs of CPU per row on the benchmark machine (34 µs to build
the instance, the rest to compile the INSERT field by field), two rows per request: about a tenth
of the gateway's CPU (docs/benchmark.md). Here an instance is built from a dict of defaults
computed once per model, and a batch is a few multi-row INSERTs whose SQL is built once per
model, row count and database, with each value adapted only where the backend needs it (dates and
decimals). Both are ordinary model instances to every other reader (tests, the admin).

What bulk_create gave the writers and this keeps: the new rows' ids (RETURNING), so a batch whose
commit may have happened unheard is not written twice on its retry (rows that have an id are
written with it, and a conflict skips them); ``ignore_conflicts`` for the ledger's unique
``usage_id``; the backend's limit on parameters per statement.

On SQLite (the default, where the writer thread shares the worker's GIL) a statement goes to the
driver as SQLite's own ``?`` form through the connection's DB-API cursor, and an aware UTC
datetime is written as the text Django's adaptation makes of it without Django's steps: Django's
cursor rewrites every ``%s`` of a 64-row statement (1,400 of them) with a regular expression and
adapts each datetime through make_naive, about 7 µs a row of the writer's CPU
(``python -m bench.row_writes``). Where Django logs queries (DEBUG, or a test's
CaptureQueriesContext) the statement goes through Django's cursor as before, so it is seen.
"""

import datetime
import operator
import sqlite3
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from django.db import connections, models
from django.db.models.base import ModelState

# Rows per INSERT at most: the statements are cached per row count, and PostgreSQL sets no limit
# of its own, so a batch of any size must not add a statement of that size to the cache.
_MOST_ROWS_PER_STATEMENT = 64
# Fields whose Python values the drivers take as they are (sqlite3 and psycopg2 both).
_PLAIN_FIELDS = (
    models.CharField,
    models.TextField,
    models.IntegerField,  # and its small, big and positive kinds
    models.FloatField,
    models.BooleanField,
    models.ForeignKey,  # its attname holds the other row's id
    models.AutoField,
)


# The driver's own execute: Django's SQLite cursor is a subclass whose execute() rewrites the
# statement's placeholders first.
_SQLITE_EXECUTE = sqlite3.Cursor.execute


@cache
def _defaults(model: type[models.Model]) -> tuple[dict[str, Any], tuple[tuple[str, Callable], ...], frozenset[str]]:
    """(fixed defaults by attname, (attname, default callable) pairs, every settable name)."""
    fixed: dict[str, Any] = {}
    computed = []
    for field in model._meta.concrete_fields:
        if callable(field.default):
            computed.append((field.attname, field.get_default))
        else:
            fixed[field.attname] = field.get_default()
    return fixed, tuple(computed), frozenset(field.attname for field in model._meta.concrete_fields)


def unsaved(model: type[models.Model], /, **values: Any) -> models.Model:
    """``model(**values)`` for a model with plain fields (foreign keys given by their ``_id``),
    in a tenth of the time: no per-field loop, no init signals (these models have none)."""
    fixed, computed, names = _defaults(model)
    if not names.issuperset(values):  # a typo must not be dropped silently, as Model() would not
        unknown = values.keys() - names
        raise TypeError(f"{model.__name__} has no field(s) {', '.join(sorted(unknown))}")
    row = model.__new__(model)
    state = row.__dict__
    state.update(fixed)
    for name, default in computed:
        if name not in values:
            state[name] = default()
    state.update(values)
    row._state = ModelState()
    return row


def _adapter(field: models.Field, connection) -> Callable[[Any], Any] | None:
    """How a value of ``field`` goes to this backend, or None when it goes as it is."""
    if isinstance(field, models.DateTimeField):
        if connection.vendor == "sqlite" and connection.timezone is datetime.UTC:
            return _sqlite_utc_datetime(connection.ops.adapt_datetimefield_value)
        return connection.ops.adapt_datetimefield_value
    if isinstance(field, _PLAIN_FIELDS):
        return None
    return lambda value: field.get_db_prep_save(value, connection)  # decimals, JSON, dates, ...


def _sqlite_utc_datetime(djangos: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Django's SQLite datetime adaptation where the connection's zone is UTC, for an aware UTC
    value (timezone.now()'s) in one step: the naive value as text, what make_naive and str()
    give (UTC's ISO text less its "+00:00", a third of the time of str() on a copy made naive).
    Any other value takes Django's steps."""

    def adapt(value: Any) -> Any:
        if type(value) is datetime.datetime and value.tzinfo is datetime.UTC:
            return value.isoformat(" ")[:-6]
        return djangos(value)

    return adapt


@cache
def _columns(model: type[models.Model], alias: str, with_pk: bool) -> tuple[list, list[str], list, str]:
    """(fields, attnames, adapters, quoted column list) of the columns a row is inserted with."""
    connection = connections[alias]
    fields = [field for field in model._meta.concrete_fields if with_pk or not field.primary_key]
    quoted = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    return fields, [field.attname for field in fields], [_adapter(field, connection) for field in fields], quoted


@cache
def _row_values(model: type[models.Model], alias: str, with_pk: bool) -> Callable[[models.Model], list]:
    """A row's column values as the backend takes them: read in one C call, then only the
    columns that need it adapted (dates and decimals; NULL as it is)."""
    _, attnames, adapters, _ = _columns(model, alias, with_pk)
    read = operator.itemgetter(*attnames) if len(attnames) > 1 else lambda state: (state[attnames[0]],)
    adapted = [(index, adapt) for index, adapt in enumerate(adapters) if adapt is not None]

    def values(row: models.Model) -> list:
        found = list(read(row.__dict__))
        for index, adapt in adapted:
            value = found[index]
            if value is not None:
                found[index] = adapt(value)
        return found

    return values


@cache
def _statement(
    model: type[models.Model], alias: str, *, rows: int, with_pk: bool, ignore_conflicts: bool, placeholder: str = "%s"
) -> str:
    connection = connections[alias]
    _, attnames, _, quoted = _columns(model, alias, with_pk)
    one = "(" + ", ".join([placeholder] * len(attnames)) + ")"
    sql = f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({quoted}) VALUES " + ", ".join([one] * rows)
    if ignore_conflicts:
        return sql + " ON CONFLICT DO NOTHING"
    pk = connection.ops.quote_name(model._meta.pk.column)
    return sql + f" RETURNING {pk}"


def insert(
    model: type[models.Model],
    rows: Sequence[models.Model],
    *,
    ignore_conflicts: bool,
    using: str,
    between_statements: Callable[[], None] | None = None,
) -> None:
    """INSERT ``rows`` in as few statements as the backend's parameter limit allows, calling
    ``between_statements`` (if given) before each statement but the first.

    Rows without an id get theirs (unless ``ignore_conflicts``, where a row may not be written at
    all). Rows that have an id (a retried batch) are written with it and skipped if it is taken.
    """
    connection = connections[using]
    fresh = [row for row in rows if row.pk is None]
    retried = [row for row in rows if row.pk is not None]
    with connection.cursor() as cursor:
        # SQLite's own placeholders on its DB-API cursor, unless Django is logging queries (the
        # module's docstring); Django's cursor otherwise. Errors are Django's either way.
        direct = connection.vendor == "sqlite" and not connection.queries_logged
        run = cursor.cursor if direct else cursor
        statements = 0
        for group, with_pk, skip in ((fresh, False, ignore_conflicts), (retried, True, True)):
            if not group:
                continue
            fields = _columns(model, using, with_pk)[0]
            values = _row_values(model, using, with_pk)
            size = max(1, min(_MOST_ROWS_PER_STATEMENT, connection.ops.bulk_batch_size(fields, group)))
            for start in range(0, len(group), size):
                if statements and between_statements is not None:
                    between_statements()
                statements += 1
                chunk = group[start : start + size]
                params = [value for row in chunk for value in values(row)]
                sql = _statement(
                    model,
                    using,
                    rows=len(chunk),
                    with_pk=with_pk,
                    ignore_conflicts=skip,
                    placeholder="?" if direct else "%s",
                )
                if direct:
                    with connection.wrap_database_errors:
                        _SQLITE_EXECUTE(run, sql, params)
                else:
                    run.execute(sql, params)
                if not skip:
                    for row, (pk,) in zip(chunk, run.fetchall(), strict=True):
                        row.pk = pk
                        row._state.adding = False
