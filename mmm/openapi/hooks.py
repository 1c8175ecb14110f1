"""drf-spectacular hooks: the seed's optional trailing slash, and the paths outside DRF."""

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
