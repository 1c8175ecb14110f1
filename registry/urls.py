from django.urls import re_path

from registry import views

# A trailing slash is optional: clients of the seed send none, some HTTP tools add one.
urlpatterns = [
    re_path(r"^register/?$", views.WorkerRegisterView.as_view(), name="worker-register"),
    re_path(r"^workers/?$", views.WorkerListView.as_view(), name="worker-list"),
    re_path(r"^offline/?$", views.WorkerOfflineView.as_view(), name="worker-offline"),
]
