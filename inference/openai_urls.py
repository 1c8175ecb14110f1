from django.urls import path

from inference.ingress.views import MessagesView, ModelView, ResponsesView, ResponseView
from inference.openai_views import ChatCompletionsView, ModelsView, OpenAIPassthroughView

urlpatterns = [
    path("models", ModelsView.as_view()),
    path("models/<path:model_id>", ModelView.as_view()),
    path("chat/completions", ChatCompletionsView.as_view()),
    path("completions", OpenAIPassthroughView.as_view(endpoint="/completions")),
    path("embeddings", OpenAIPassthroughView.as_view(endpoint="/embeddings")),
    path("images/generations", OpenAIPassthroughView.as_view(endpoint="/images/generations")),
    # Other APIs, translated to and from chat completions (inference/ingress/).
    path("messages", MessagesView.as_view()),
    path("responses", ResponsesView.as_view()),
    path("responses/<str:response_id>", ResponseView.as_view()),
]
