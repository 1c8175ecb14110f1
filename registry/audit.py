"""Recording who changed the registry (WorkerEvent rows), from the API and the admin alike."""

from accounts.caller import Caller
from inference.redaction import redact_url
from registry.models import Worker, WorkerEvent


def worker_event_record(
    *, worker: Worker, action: str, caller: Caller | None, changed_fields: list[str] = (), actor: str | None = None
) -> WorkerEvent:
    return WorkerEvent.objects.create(
        action=action,
        worker_id=worker.pk,
        model_name=worker.model_name,
        url=redact_url(worker.req_url_template),
        changed_fields=sorted(changed_fields),
        actor=actor or (str(caller) if caller else "anonymous (MMM_REQUIRE_AUTH off)"),
        api_key_id=caller.api_key_id if caller else None,
        user_id=caller.user_id if caller else None,
    )
