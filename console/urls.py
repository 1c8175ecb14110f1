from django.contrib import admin
from django.urls import path

from console import dashboard_views, health_views, metrics_views

urlpatterns = [
    path("healthz", health_views.healthz, name="healthz"),
    path("readyz", health_views.readyz, name="readyz"),
    path("metrics", metrics_views.metrics, name="metrics"),
    # Inside the admin: its login, its look, its staff check.
    path("admin/dashboard/", admin.site.admin_view(dashboard_views.dashboard), name="console-dashboard"),
]
