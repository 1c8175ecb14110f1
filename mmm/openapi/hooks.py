"""drf-spectacular hooks: the seed's optional trailing slash, and the paths outside DRF.

drf-spectacular imports this module when it starts generating a schema (its PREPROCESSING_HOOKS,
read before it inspects any view): the project's extensions are registered here, then, and not
in every gateway process at start (mmm/apps.py).
"""

from mmm.openapi import fields, views  # noqa: F401 - registers the OpenAPI extensions

# Plain Django views (console/health_views.py, console/metrics_views.py): DRF never sees them.
_STATUS = {"$ref": "#/components/schemas/Status"}
_PLAIN_PATHS = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "The process is up (says nothing about what it depends on)",
            "tags": ["health"],
            "security": [],
            "responses": {"200": {"description": "up", "content": {"application/json": {"schema": _STATUS}}}},
        }
    },
    "/readyz": {
        "get": {
            "operationId": "readyz",
            "summary": "The database and the cache answer",
            "tags": ["health"],
            "security": [],
            "responses": {
                "200": {"description": "ready", "content": {"application/json": {"schema": _STATUS}}},
                "503": {
                    "description": "`failed` names what does not answer",
                    "content": {"application/json": {"schema": _STATUS}},
                },
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics, in its text format",
            "tags": ["health"],
            "security": [],
            "responses": {
                "200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
            },
        }
    },
}


def seed_paths(endpoints):
    """``^register/?$`` is /api/server/register with or without a slash: document it without."""
    return [
        (path.removesuffix("/") if path_regex.endswith("/?$") else path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]


def plain_paths(result, generator, request, public):
    result["paths"].update(_PLAIN_PATHS)
    for operations in result["paths"].values():
        for operation in operations.values():
            operation["responses"] = dict(sorted(operation["responses"].items()))
    result["components"]["schemas"]["Status"] = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "failed": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "what does not answer: database, cache",
            },
        },
        "required": ["status"],
    }
    return result


# Django gives model integer fields the range of the database's column type: 32 bits on one,
# 64 on another. That is not the API's contract, and the document must not depend on the database.
_DATABASE_BOUNDS = {2**31 - 1, 2**63 - 1, -(2**31), -(2**63)}


def without_database_bounds(result, generator, request, public):
    todo = [result]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if node.get("type") == "integer":
                for name in ("maximum", "minimum"):
                    if node.get(name) in _DATABASE_BOUNDS:
                        del node[name]
                        node.pop("format", None)
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return result
