from django.urls import path

from inference.openai_views import ChatCompletionsView, ModelsView, OpenAIPassthroughView

urlpatterns = [
    path("models", ModelsView.as_view()),
    path("chat/completions", ChatCompletionsView.as_view()),
    path("completions", OpenAIPassthroughView.as_view(endpoint="/completions")),
    path("embeddings", OpenAIPassthroughView.as_view(endpoint="/embeddings")),
    path("images/generations", OpenAIPassthroughView.as_view(endpoint="/images/generations")),
]
