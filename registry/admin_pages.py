"""The worker admin's pages beyond the form: send a test prompt, probe now, drain, try before saving.

registry.admin.WorkerAdmin builds on WorkerConsoleAdmin; the pages live in a file of their own so
the admin's module stays about the form and the list.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from django.urls import path

from accounts.caller import Caller
from registry.health import ProbeResult, worker_probe, worker_record_probe
from registry.models import Worker
from registry.services import workers_drain
from registry.trial import TrialReport, worker_try

DEFAULT_TEST_PROMPT = "Say hello in five words."


class WorkerConsoleAdmin(admin.ModelAdmin):
    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("try/", view(self.try_unsaved_view), name=f"{name}_try_unsaved"),
            path("<int:worker_id>/try/", view(self.try_view), name=f"{name}_try"),
            *super().get_urls(),
        ]

    def try_view(self, request, worker_id: int):
        """A saved worker: send a test prompt, or probe it now (the result is recorded)."""
        worker = get_object_or_404(Worker, pk=worker_id)
        if not self.has_change_permission(request, worker):
            raise PermissionDenied
        prompt, temperature, problem = _trial_input(request.POST, prefix="")
        report: TrialReport | None = None
        probe: ProbeResult | None = None
        if request.method == "POST" and not problem:
            if "_probe" in request.POST:
                probe = worker_probe(worker=worker)
                worker_record_probe(result=probe)
                worker.refresh_from_db()
            else:
                report = worker_try(worker=worker, prompt=prompt, temperature=temperature)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Try worker {worker.pk}",
            "worker": worker,
            "prompt": prompt if request.method == "POST" else DEFAULT_TEST_PROMPT,
            "temperature": request.POST.get("temperature", ""),
            "problem": problem if request.method == "POST" else "",
            "report": report,
            "probe": probe,
        }
        return render(request, "console/worker_try.html", context)

    def try_unsaved_view(self, request):
        """The add (or change) form's values, unsaved: a test prompt and, with a health_url, a probe.

        Answers an HTML fragment that the form's "try before saving" panel shows in place.
        """
        if request.method != "POST":
            return render(request, "console/trial_fragment.html", {"problem": "send the form with POST"}, status=405)
        instance = None
        if request.GET.get("of"):
            instance = get_object_or_404(Worker, pk=request.GET["of"])
        allowed = self.has_change_permission(request, instance) if instance else self.has_add_permission(request)
        if not allowed:
            raise PermissionDenied
        form = self.get_form(request, instance, change=instance is not None)(request.POST, instance=instance)
        prompt, temperature, problem = _trial_input(request.POST, prefix="_trial_")
        if not form.is_valid() or problem:
            errors = [f"{field}: {' '.join(texts)}" for field, texts in form.errors.items()] + (
                [problem] if problem else []
            )
            return render(request, "console/trial_fragment.html", {"errors": errors}, status=400)
        worker = form.save(commit=False)  # validated, never saved here
        report = worker_try(worker=worker, prompt=prompt, temperature=temperature)
        probe = worker_probe(worker=worker) if worker.health_url else None
        return render(request, "console/trial_fragment.html", {"report": report, "probe": probe})

    @admin.action(description="Probe selected workers now", permissions=["change"])
    def probe_workers_now(self, request, queryset) -> None:
        for worker in queryset:
            result = worker_probe(worker=worker)
            change = worker_record_probe(result=result)
            moved = f", now {change.new_state}" if change else ""
            if result.ok:
                self.message_user(
                    request,
                    f"Worker {worker.pk} ({worker.model_name}): probe passed in {result.latency_ms:.0f} ms{moved}.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"Worker {worker.pk} ({worker.model_name}): probe failed: {result.error}{moved}.",
                    messages.ERROR,
                )

    @admin.action(description="Drain selected workers (weight 0)", permissions=["change"])
    def drain_workers(self, request, queryset) -> None:
        changed = workers_drain(
            worker_ids=list(queryset.values_list("pk", flat=True)), caller=Caller.for_staff(request.user)
        )
        self.message_user(
            request,
            f"Drained {changed} worker(s): they get no new traffic until their weight is raised.",
            messages.SUCCESS,
        )


def _trial_input(data, *, prefix: str) -> tuple[str, float | None, str]:
    """(prompt, temperature, problem) from a trial form; problem is "" when the input is usable."""
    prompt = data.get(f"{prefix}prompt", DEFAULT_TEST_PROMPT)
    raw = (data.get(f"{prefix}temperature") or "").strip()
    if not raw:
        return prompt, None, ""
    try:
        temperature = float(raw)
    except ValueError:
        return prompt, None, f"temperature: {raw!r} is not a number"
    if not 0 <= temperature <= 100:
        return prompt, None, "temperature: must be between 0 and 100"
    return prompt, temperature, ""
