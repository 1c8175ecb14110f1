from django.urls import re_path

from inference import views

urlpatterns = [
    re_path(r"^chat/completions/?$", views.CompletionView.as_view(), name="seed-completion"),
]
