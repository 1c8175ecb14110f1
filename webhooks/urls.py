from django.urls import path

from webhooks import views

urlpatterns = [
    path("webhooks", views.WebhookEndpointListView.as_view(), name="webhook-list"),
    path("webhooks/<int:endpoint_id>", views.WebhookEndpointView.as_view(), name="webhook-detail"),
]
