from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from usage.dashboard_views import usage_dashboard
from usage.views import OwnUsageView

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
    path("api/schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="openapi-swagger"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="openapi-schema"), name="openapi-redoc"),
]

# API clients get JSON, never Django's HTML error pages.
handler400 = "mmm.api_errors.json_bad_request"
handler403 = "mmm.api_errors.json_permission_denied"
handler404 = "mmm.api_errors.json_not_found"
handler500 = "mmm.api_errors.json_server_error"
