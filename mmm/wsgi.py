import os

from django.core.wsgi import get_wsgi_application

from mmm.chunked import ChunkedBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")

application = ChunkedBodies(get_wsgi_application())
