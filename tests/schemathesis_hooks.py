"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Generated registrations carry made-up URLs; the gateway would resolve and call them. Every URL
field is pointed at the test's fake upstream on loopback instead, so no traffic leaves the host.
"""

import os

import schemathesis

URL_FIELDS = ("req_url_template", "base_url", "health_url")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if isinstance(case.body, dict):
        for name in URL_FIELDS:
            if isinstance(case.body.get(name), str) and case.body[name]:
                case.body[name] = os.environ["MMM_SCHEMATHESIS_UPSTREAM"]
