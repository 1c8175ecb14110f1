from django.urls import re_path

from registry import views

# A trailing slash is optional: clients of the seed send none, some HTTP tools add one.
urlpatterns = [
    re_path(r"^register/?$", views.WorkerRegisterView.as_view(), name="worker-register"),
    re_path(r"^workers/?$", views.WorkerListView.as_view(), name="worker-list"),
    re_path(r"^offline/?$", views.WorkerOfflineView.as_view(), name="worker-offline"),
    re_path(r"^heartbeat/?$", views.WorkerHeartbeatView.as_view(), name="worker-heartbeat"),
    re_path(r"^policies/?$", views.PolicyListView.as_view(), name="policy-list"),
    re_path(r"^policy/?$", views.PolicySetView.as_view(), name="policy-set"),
    re_path(r"^policy/delete/?$", views.PolicyDeleteView.as_view(), name="policy-delete"),
    re_path(r"^model/owner/?$", views.ModelOwnerView.as_view(), name="model-owner"),
]
