"""The usage ledger, written as the request log is: queued in the process, bulk-inserted by a
flusher beside it (console.request_log), so a slow database never slows a request and a
retried batch lands once (each row's usage_id is unique)."""

import atexit

from console.request_log import RequestLogWriter
from usage.models import UsageRecord


class LedgerWriter(RequestLogWriter):
    model = UsageRecord
    name = "usage ledger"
    always_ignore_conflicts = True


ledger_writer = LedgerWriter()
atexit.register(ledger_writer.close)
