from django.urls import path

from usage.views import AdminUsageView

urlpatterns = [path("", AdminUsageView.as_view())]
