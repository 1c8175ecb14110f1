"""A DRF serializer for request input whose fields are built once per process, not per request.

DRF deep-copies a serializer's declared fields for every instance, and binds the copies to it:
for the /v1 chat input (a nested serializer per message) that was 7% of a request's CPU under
load. Validating input only reads the fields, so one bound set serves every request: it is
made for the first instance of each class and kept on the class.

Only for input validated from ``data`` alone: no ``instance``, no ``partial``, no ``context``
(the fields' ``root`` stays the first instance). Validation never waits on I/O, so greenlets
cannot interleave inside it; in threads (gthread) it reads shared fields and writes nothing to
them.
"""

from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict

_ATTRIBUTE = "_fields_bound_once"


class BoundOnceSerializer(serializers.Serializer):
    @property
    def fields(self) -> BindingDict:
        shared = type(self).__dict__.get(_ATTRIBUTE)
        if shared is None:
            shared = BindingDict(self)
            for name, field in self.get_fields().items():
                shared[name] = field
            setattr(type(self), _ATTRIBUTE, shared)  # two first requests may both build one: same fields
        return shared
