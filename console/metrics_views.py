"""GET /metrics in Prometheus's text format."""

from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from console.metrics import metrics_text


@csrf_exempt  # another method gets require_GET's 405, not the CSRF check's HTML 403
@never_cache
@require_GET
def metrics(request):
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
