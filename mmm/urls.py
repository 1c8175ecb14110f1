from django.contrib import admin
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from usage.dashboard_views import usage_dashboard
from usage.views import OwnUsageView


def _schema_view(name: str, **initkwargs):
    """drf-spectacular's view ``name``, imported on its first request: drf-spectacular, yaml and
    pygments stay out of a gateway process that never serves the document (2.6 MiB each)."""
    view = None

    @csrf_exempt  # as DRF's as_view() makes it
    def lazy(request, *args, **kwargs):
        nonlocal view
        if view is None:
            from drf_spectacular import views

            view = getattr(views, name).as_view(**initkwargs)
        return view(request, *args, **kwargs)

    lazy.view_name = name  # which view it stands for, without importing it (tests/test_auth.py)
    return lazy


# The completion endpoints first: Django tries the patterns in order, and every one tried before
# the match costs the request (44-51 µs to resolve a completion's path with these last, 19-25 µs
# first). None of the patterns after them matches their paths.
urlpatterns = [
    path("api/v1/", include("inference.urls")),
    path("v1/usage", OwnUsageView.as_view()),  # a key's own usage and budgets
    path("v1/", include("inference.openai_urls")),  # the OpenAI-compatible API
    path("v1/", include("jobs.urls")),  # its asynchronous image and video jobs
    path("", include("console.urls")),  # /healthz, /readyz, /metrics, /admin/dashboard/
    path("admin/dashboard/usage/", admin.site.admin_view(usage_dashboard), name="usage-dashboard"),
    path("admin/", admin.site.urls),
    path("api/server/", include("registry.urls")),
    path("api/usage", include("usage.urls")),  # usage and cost, for operators (admin scope)
    path("api/", include("webhooks.urls")),  # /api/webhooks: keys' webhook endpoints (admin scope)
    # The OpenAPI document (mmm/openapi/) and two readers of it, from local static files.
    path("api/schema/", _schema_view("SpectacularAPIView"), name="openapi-schema"),
    path("api/docs/", _schema_view("SpectacularSwaggerView", url_name="openapi-schema"), name="openapi-swagger"),
    path("api/redoc/", _schema_view("SpectacularRedocView", url_name="openapi-schema"), name="openapi-redoc"),
]

# API clients get JSON, never Django's HTML error pages.
handler400 = "mmm.api_errors.json_bad_request"
handler403 = "mmm.api_errors.json_permission_denied"
handler404 = "mmm.api_errors.json_not_found"
handler500 = "mmm.api_errors.json_server_error"
