import os

from django.core.wsgi import get_wsgi_application

from mmm.chunked import ChunkedBodies
from mmm.tracing import tracing_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")

# In each gunicorn worker: after gevent's patching, before Django builds its middleware chain.
tracing_start()

application = ChunkedBodies(get_wsgi_application())
