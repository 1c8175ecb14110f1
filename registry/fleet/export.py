"""The registry as a fleet file, with every secret replaced by a ``${VAR}`` reference.

Secrets are what the API masks: credential headers, query string values and user info in URLs,
credential-named body fields. Each distinct secret gets one variable name, derived from the
model and the field (``PROXYLLM_AUTHORIZATION``); the file's header lists them.
"""

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

from inference.redaction import is_placeholder, is_secret_field, secret_header_values
from registry.fleet.plan import POLICY_FIELDS, WORKER_FIELDS, _defaults
from registry.models import RoutingPolicy, Worker


class _Secrets:
    """Secret value -> variable name, one name per distinct value."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def reference(self, value: str, *, model_name: str, label: str) -> str:
        if value not in self.names:
            base = re.sub(r"[^A-Z0-9]+", "_", f"{model_name}_{label}".upper()).strip("_") or "SECRET"
            name, n = base, 1
            while name in self.names.values():
                n += 1
                name = f"{base}_{n}"
            self.names[value] = name
        return "${" + self.names[value] + "}"


def fleet_export() -> str:
    secrets = _Secrets()
    models: dict[str, dict] = {}
    defaults = _defaults(Worker, WORKER_FIELDS)
    for worker in Worker.objects.order_by("model_name", "id"):
        entry = {"req_url_template": _url(worker.req_url_template, worker.model_name, secrets)}
        for name in WORKER_FIELDS:
            value = getattr(worker, name)
            if value == defaults[name]:
                continue
            if name == "headers":
                value = _headers(value, worker.model_name, secrets)
            elif name == "body":
                value = _body(value, worker.model_name, secrets)
            elif name in ("health_url", "metrics_url"):
                value = _url(value, worker.model_name, secrets)
            entry[name] = value
        models.setdefault(worker.model_name, {}).setdefault("workers", []).append(entry)
    policy_defaults = _defaults(RoutingPolicy, POLICY_FIELDS)
    for policy in RoutingPolicy.objects.order_by("model_name"):
        fields = {
            name: getattr(policy, name) for name in POLICY_FIELDS if getattr(policy, name) != policy_defaults[name]
        }
        models.setdefault(policy.model_name, {})["policy"] = fields
    header = "# mmm fleet file, from manage.py export. Apply with: manage.py apply -f FILE\n"
    if secrets.names:
        header += "# Secrets are references; set these variables first: " + ", ".join(secrets.names.values()) + "\n"
    document = {"version": 1, "models": {name: models[name] for name in sorted(models)}}
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


def _headers(headers: dict[str, str], model_name: str, secrets: _Secrets) -> dict[str, str]:
    secret = set(secret_header_values(headers))
    return {
        name: secrets.reference(value, model_name=model_name, label=name) if value in secret else _escaped(value)
        for name, value in headers.items()
    }


def _url(url: str, model_name: str, secrets: _Secrets) -> str:
    """The URL as stored, with its password and query values (as they are written in it) as
    references: nothing is re-encoded, so applying the export gives back the same URL."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        netloc = f"{user}:{secrets.reference(password, model_name=model_name, label='url_password')}@{host}"
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name, equals, value = piece.partition("=")
        if value and not is_placeholder(unquote(value)):
            value = secrets.reference(value, model_name=model_name, label=unquote(name))
        else:
            value = _escaped(value)
        pieces.append(f"{_escaped(name)}{equals}{value}")
    return urlunsplit(
        (parts.scheme, _escaped(netloc) if not at else netloc, _escaped(parts.path), "&".join(pieces), parts.fragment)
    )


def _body(body: Any, model_name: str, secrets: _Secrets) -> Any:
    if isinstance(body, dict):
        return {
            key: secrets.reference(str(value), model_name=model_name, label=key)
            if is_secret_field(key, value)
            else _body(value, model_name, secrets)
            for key, value in body.items()
        }
    if isinstance(body, list):
        return [_body(item, model_name, secrets) for item in body]
    return _escaped(body) if isinstance(body, str) else body


def _escaped(value: str) -> str:
    """A stored ``${`` is written ``$${`` so that apply reads it back as it is."""
    return value.replace("${", "$${")
