"""Ingress APIs other than OpenAI chat completions: each translates its client's request into an
OpenAI chat-completions body, has it answered by the request path like any chat, and translates
the answer (a chat.completion, or a stream of chat.completion.chunk events) back.

``chat.py`` is the one door into the request path; the API modules are pure translation.
"""
