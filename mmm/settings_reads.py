"""Reading Django's settings at attribute speed in a gunicorn worker.

``django.conf.settings`` is a ``LazySettings``, and its base class ``LazyObject`` defines
``__getattribute__`` in Python, so every ``settings.X`` runs that function, which looks the
name up and then asks the value for a ``_mask_wrapped`` attribute it almost never has (an
AttributeError raised and caught inside ``getattr``). That costs 0.8 µs per read on this machine
even for a value LazySettings has already cached in the instance's ``__dict__``; a proxied
completion reads settings a few dozen times (the router's defaults, the routing state's windows,
``timezone.now``'s ``USE_TZ``, the request log's knobs, Django's handler), and the function was the
largest single function in the hot path's profile (2.4% of the samples at c=32,
docs/benchmark.md).

``install`` gives the settings object a subclass of its own class whose ``__getattribute__`` is
``object.__getattribute__``: a value LazySettings has cached is then a plain instance attribute,
and everything else is as before: a name not cached yet still goes to LazySettings'
``__getattr__`` (which reads, checks and caches it), and ``__setattr__``/``__delattr__`` (what
``override_settings`` and the settings fixture use) still empty or drop the cache. What the
subclass gives up is ``_mask_wrapped``: it hides LazyObject's proxy methods (``__len__``,
``__iter__`` and the like) from an explicit attribute read, for ``hasattr`` on the lazy object to
answer as the wrapped one would; nothing reads dunder methods off the settings.

Only gunicorn's worker processes install it (mmm/gunicorn.conf.py's post_worker_init), as they do
mmm.request_signals; the tests of this module install it and take it out again.
"""

from django.conf import LazySettings, settings

# object's own ``__class__`` setter: LazyObject's ``__class__`` is a property that reads the wrapped
# object's, and its ``__setattr__`` would set the attribute on the wrapped Settings instead.
_set_class = object.__dict__["__class__"].__set__


class _DirectReadSettings(LazySettings):
    # A cached setting is an instance attribute: read it without a Python-level hook.
    __getattribute__ = object.__getattribute__


def install() -> bool:
    """Read settings as plain attributes; False (and nothing changed) unless the settings object
    is Django's own LazySettings (something else has already wrapped or replaced it)."""
    if type(settings) is _DirectReadSettings:
        return True
    if type(settings) is not LazySettings:
        return False
    _set_class(settings, _DirectReadSettings)
    return True


def uninstall() -> None:
    """Django's class again (the tests of this module)."""
    if type(settings) is _DirectReadSettings:
        _set_class(settings, LazySettings)
