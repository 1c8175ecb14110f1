"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Generated registrations carry made-up URLs; the gateway would resolve and call them. Every URL
field is pointed at the test's fake upstream on loopback instead, so no traffic leaves the host.
Made-up model names would all end in 404; every other case names a model the test registered,
so the request path, the upstream call and the answer's shape are exercised too.
"""

import os
import zlib

import schemathesis

URL_FIELDS = ("req_url_template", "base_url", "health_url")
# The body field that names a model, and a model the test registered for it.
REGISTERED = {"model_name": "proxyllm", "model": "gpt"}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if not isinstance(case.body, dict):
        return
    for name in URL_FIELDS:
        if isinstance(case.body.get(name), str) and case.body[name]:
            case.body[name] = os.environ["MMM_SCHEMATHESIS_UPSTREAM"]
    # Half the cases, chosen by their content so a run is repeatable with its seed.
    if zlib.crc32(repr(sorted(case.body.items(), key=str)).encode()) % 2:
        for name, model in REGISTERED.items():
            if isinstance(case.body.get(name), str):
                case.body[name] = model
