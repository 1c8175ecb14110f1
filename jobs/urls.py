from django.urls import path

from jobs.models import JobKind
from jobs.views import JobContentView, JobsView, JobView

urlpatterns = [
    path("videos", JobsView.as_view(kind=JobKind.VIDEO)),
    path("videos/<str:job_id>", JobView.as_view(kind=JobKind.VIDEO)),
    path("videos/<str:job_id>/content", JobContentView.as_view(kind=JobKind.VIDEO)),
    # Asynchronous image jobs, in the same shape (synchronous images stay at /v1/images/generations).
    path("images/jobs", JobsView.as_view(kind=JobKind.IMAGE)),
    path("images/jobs/<str:job_id>", JobView.as_view(kind=JobKind.IMAGE)),
    path("images/jobs/<str:job_id>/content", JobContentView.as_view(kind=JobKind.IMAGE)),
]
