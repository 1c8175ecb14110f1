import os

import django

from mmm.chunked import ChunkedBodies
from mmm.handler import GatewayWSGIHandler
from mmm.tracing import tracing_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")

# In each gunicorn worker: after gevent's patching, before Django builds its middleware chain.
tracing_start()
django.setup(set_prefix=False)  # what django.core.wsgi.get_wsgi_application does before its handler

application = ChunkedBodies(GatewayWSGIHandler())
