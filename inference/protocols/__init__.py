"""Worker kinds as protocols: how each kind of model server is called, one module per kind.

``protocol_for(worker)`` picks the protocol by the worker's kind, as healthchecks'
``Channel.transport`` picks a transport: the router and the services never ask which kind a
worker is. ``base`` has the interface every kind implements and the wire they share.
"""

from typing import TYPE_CHECKING

from inference.protocols.anthropic import AnthropicProtocol
from inference.protocols.base import WorkerProtocol
from inference.protocols.job import JobProtocol
from inference.protocols.ollama import OllamaProtocol
from inference.protocols.openai import OpenAIProtocol
from inference.protocols.template import TemplateProtocol
from inference.protocols.tgi import TGIProtocol

if TYPE_CHECKING:
    from registry.models import Worker

PROTOCOLS: dict[str, WorkerProtocol] = {
    protocol.kind: protocol
    for protocol in (
        TemplateProtocol(),
        OpenAIProtocol(),
        AnthropicProtocol(),
        OllamaProtocol(),
        TGIProtocol(),
        JobProtocol(),
    )
}


def protocol_for(worker: "Worker") -> WorkerProtocol:
    return PROTOCOLS[worker.kind]
