"""Django's PostgreSQL backend with a connect timeout that holds under gevent.

Under psycogreen libpq connects in non-blocking mode, where its ``connect_timeout`` is not
applied: a server that accepts the TCP connection and never answers (a partition, a frozen
host) held a request for as long as the freeze lasted. The wait is bounded here instead
(mmm.database.deadline), by MMM_DB_CONNECT_TIMEOUT.
"""

from django.conf import settings
from django.db.backends.postgresql import base

from mmm.database import deadline


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        with deadline(settings.MMM_DB_CONNECT_TIMEOUT, what="connect"):
            return super().get_new_connection(conn_params)
