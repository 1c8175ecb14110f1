"""Which Python functions a read makes: for the tests that pin an attribute read at C speed."""

import sys
from collections.abc import Callable


def python_calls_during(read: Callable[[], object]) -> list[str]:
    """The qualified names of the Python functions called while ``read()`` runs (``read`` itself
    left out)."""
    called: list[str] = []

    def profile(frame, event, arg):
        if event == "call":
            called.append(frame.f_code.co_qualname)

    sys.setprofile(profile)
    try:
        read()
    finally:
        sys.setprofile(None)
    return called[1:]  # the first call is read()'s own
