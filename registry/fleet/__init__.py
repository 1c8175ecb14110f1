"""The registry as a file: ``manage.py apply -f fleet.yaml`` and ``manage.py export``.

``document`` reads and checks a file (JSON Schema, line numbers, ``${VAR}`` secrets),
``plan`` compares it with the registry and writes the difference in one transaction,
``export`` writes the registry back out with secrets as references. docs/config-file.md.
"""
