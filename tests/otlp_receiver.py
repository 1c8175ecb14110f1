"""An OTLP/HTTP trace receiver on loopback: the fake upstream server answering POST /v1/traces,
with the protobuf bodies decoded by opentelemetry-proto (what a collector does)."""

import gzip
import time
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.fake_upstream import FakeUpstream, Reply


@dataclass
class ReceivedSpan:
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 2 server, 3 client
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict
    events: list  # (name, attributes)
    service: str


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class OtlpReceiver:
    def __init__(self):
        self.server = FakeUpstream()
        self.server.on("/v1/traces", Reply(status=200, text=""))

    @property
    def endpoint(self) -> str:
        return self.server.url("")

    def start(self) -> "OtlpReceiver":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def spans(self) -> list[ReceivedSpan]:
        found = []
        for seen in self.server.hits("/v1/traces"):
            body = gzip.decompress(seen.body) if seen.headers.get("Content-Encoding") == "gzip" else seen.body
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            ReceivedSpan(
                                name=span.name,
                                kind=span.kind,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                events=[(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events],
                                service=resource.get("service.name", ""),
                            )
                        )
        return found

    def wait_for(self, condition, *, what: str, seconds: float = 30.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            spans = self.spans()
            if condition(spans):
                return spans
            time.sleep(0.1)
        raise AssertionError(f"within {seconds} s the receiver did not get {what}; it got {self.spans()}")
