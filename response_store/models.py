"""Responses kept for ``previous_response_id`` and ``GET /v1/responses/{id}`` (``store: true``)."""

from django.db import models
from django.utils import timezone


class StoredResponse(models.Model):
    response_id = models.CharField(max_length=64, primary_key=True)
    # Whose it is: "key:<prefix>" of the API key that made it, "user:<id>" for a staff
    # session, "" for a caller without a key (keys off). Only the same owner may read it.
    owner = models.CharField(max_length=100, blank=True)
    model_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)  # prune_responses deletes by age
    response = models.JSONField()  # the Response object, as GET /v1/responses/{id} returns it
    # The conversation up to and including this response's output, as chat messages (without
    # instructions): what a request naming it as previous_response_id continues.
    conversation = models.JSONField()

    def __str__(self) -> str:
        return f"{self.response_id} ({self.model_name})"
