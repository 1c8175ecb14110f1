"""The gateway's OpenAPI document, built by drf-spectacular and served at /api/schema/.

The views stay as they are: this package describes them from outside (``views``: one
``OpenApiViewExtension`` per view; ``fields``: the project's own serializer fields and
authentication; ``hooks``: the paths outside DRF and the seed's optional trailing slash).
``shapes`` holds the bodies only the document needs. ``docs/openapi.yaml`` is the committed
copy; ``make openapi`` regenerates it and tests/test_openapi.py fails when the two differ.
"""
