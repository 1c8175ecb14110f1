"""Every worker row, read again and again at the cost of the rows that changed.

Each gateway process reloads the whole routing table every MMM_ROUTING_REFRESH_SECONDS, in its
worker's event loop (mmm.background), so no request of that process moves while it runs. Building
a model instance is most of a reload's cost (every field's conversion, the encrypted ones
decrypted, the JSON ones parsed): about 0.1 ms a row, tens of milliseconds once a second for a
fleet of hundreds. The stored values themselves are cheap to read and compare, so each read
fetches them raw, in one query, and builds instances (from those same values, converted as the
ORM would) only for the rows whose values differ from the last read's; the others are the same
instances as before.

Stored values, not ``updated_at``: heartbeats and the prober write with ``queryset.update()``,
which leaves ``updated_at`` alone, and so does a foreign key set to NULL by a deletion.
"""

from django.db import connections

from registry.models import Worker


class WorkerRows:
    """Not thread-safe: its one caller (the routing table) reads under its reload lock."""

    def __init__(self) -> None:
        self._db = Worker.objects.all().db
        compiler = self._compiler()
        # Compiled once: building the SQL costs more than running it on a small table.
        self._sql, self._params = compiler.as_sql()
        if compiler.klass_info.get("related_klass_infos"):  # their columns would be in each row
            raise TypeError("WorkerRows reads the worker table alone: its manager must not select related rows")
        self._pk_index = _attnames(compiler).index(Worker._meta.pk.attname)
        self._known: dict[object, tuple[tuple, Worker]] = {}  # pk -> (stored values, instance)

    def read(self) -> list[Worker]:
        """Every worker, in the model's ordering (model name, then id)."""
        with connections[self._db].cursor() as cursor:
            cursor.execute(self._sql, self._params)
            rows = cursor.fetchall()
        known, kept = self._known, {}
        build = None
        workers: list[Worker] = []
        for row in rows:
            row = tuple(row)
            pk = row[self._pk_index]  # as stored: the key of both reads
            previous = known.get(pk)
            if previous is not None and previous[0] == row:
                worker = previous[1]
            else:
                # Built from the very values compared, so they and the instance never disagree.
                build = build or self._builder()
                worker = build(row)
            kept[pk] = (row, worker)
            workers.append(worker)
        self._known = kept  # only once every row is built: a failed read keeps the last one's
        return workers

    def _compiler(self):
        return Worker.objects.all().query.get_compiler(using=self._db)

    def _builder(self):
        """Stored values to an instance, as the ORM's own iteration converts them (each field's
        from_db_value: the encrypted ones decrypted, the JSON ones parsed)."""
        compiler = self._compiler()
        compiler.setup_query()
        converters = compiler.get_converters(_columns(compiler))
        attnames = _attnames(compiler)

        def build(row: tuple) -> Worker:
            if converters:
                row = next(iter(compiler.apply_converters([row], converters)))
            return Worker.from_db(self._db, attnames, row)

        return build


def _columns(compiler) -> list:
    return [selected[0] for selected in compiler.select[: compiler.col_count]]


def _attnames(compiler) -> list[str]:
    return [column.target.attname for column in _columns(compiler)]
