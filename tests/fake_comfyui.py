"""A fake of ComfyUI's HTTP API, written from its server (server.py of comfyanonymous/ComfyUI)
and its API examples:

- ``POST /prompt`` {"prompt": {node id: {"class_type", "inputs"}}, "client_id", optional
  "prompt_id"} -> {"prompt_id", "number", "node_errors": {}}; a bad prompt -> 400
  {"error": {"type", "message", "details", "extra_info"}, "node_errors"};
- ``GET /history/{prompt_id}`` -> {} until the prompt has run, then {prompt_id: {"prompt",
  "outputs": {node id: {"images": [{"filename", "subfolder", "type"}]}}, "status":
  {"status_str": "success"|"error", "completed", "messages"}, "meta"}}; ``GET /history`` all;
- ``GET /view?filename=&subfolder=&type=output`` -> the file's bytes;
- ``GET /queue`` -> {"queue_running": [...], "queue_pending": [...]}, each item
  [number, prompt_id, prompt, extra_data, outputs_to_execute];
- ``POST /queue`` {"delete": [prompt_id, ...]} (or {"clear": true}) drops pending prompts;
  ``POST /interrupt`` (optionally {"prompt_id"}) stops the running one;
- ``GET /system_stats`` -> {"system": {...}, "devices": [...]} (what a prober asks).

ComfyUI reports progress only over its websocket, so this fake has none on HTTP either. A
video workflow's save node (SaveVideo) lists its file under "images" with "animated": [true],
as ComfyUI's own node does.
"""

from tests.fake_jobs import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, FakeJob, FakeJobServer, query, unix
from tests.fake_upstream import Reply, Seen

OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage", "SaveVideo", "SaveAnimatedWEBP", "SaveAnimatedPNG"})


def error(kind: str, message: str, details: str = "", node_errors: dict | None = None) -> Reply:
    return Reply(
        status=400,
        json={
            "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
            "node_errors": node_errors or {},
        },
    )


class ComfyUIServer(FakeJobServer):
    def __init__(self, **book) -> None:
        super().__init__(**book)
        self.route("POST", "/prompt", self.prompt)
        self.route("GET", "/history", self.history_all)
        self.route("GET", "/history/{prompt_id}", self.history)
        self.route("GET", "/view", self.view)
        self.route("GET", "/queue", self.queue)
        self.route("POST", "/queue", self.queue_change)
        self.route("POST", "/interrupt", self.interrupt)
        self.route("GET", "/system_stats", self.system_stats)

    def system_stats(self, seen: Seen) -> Reply:
        return Reply(
            json={
                "system": {
                    "os": "posix",
                    "ram_total": 68719476736,
                    "ram_free": 34359738368,
                    "comfyui_version": "0.3.66",
                    "python_version": "3.12.3",
                    "pytorch_version": "2.8.0+cu128",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen"],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA L40S : cudaMallocAsync",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": 47697362944,
                        "vram_free": 46976860160,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    def prompt(self, seen: Seen) -> Reply:
        try:
            body = seen.json
        except ValueError:
            return Reply(status=400, text="400: Invalid JSON")  # aiohttp's own answer
        if self.book.reject_status is not None:
            return Reply(status=self.book.reject_status, text="Server busy")
        workflow = body.get("prompt") if isinstance(body, dict) else None
        if workflow is None:
            return error("no_prompt", "No prompt provided", "No prompt provided")
        if not isinstance(workflow, dict):
            return error("invalid_prompt", "Invalid prompt: the prompt must be an object of nodes")
        outputs = []
        for node_id, node in workflow.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                )
            if node["class_type"] in OUTPUT_NODES:
                outputs.append(str(node_id))
        if not outputs:
            return error("prompt_no_outputs", "Prompt has no outputs")
        job = self.book.submit(body, job_id=body.get("prompt_id"))
        job.extra["outputs"] = outputs
        job.extra["filename"] = f"ComfyUI_{job.number + 1:05d}_.{self.book.result_extension}"
        return Reply(json={"prompt_id": job.id, "number": job.number, "node_errors": {}})

    def history(self, seen: Seen, prompt_id: str) -> Reply:
        if self.book.poll_status is not None:
            return Reply(status=self.book.poll_status, text="Server error")
        job = self.book.look(prompt_id)
        if job is None or job.state in (QUEUED, RUNNING) or job.extra.get("deleted"):
            return Reply(json={})
        return Reply(json={job.id: self._entry(job)})

    def history_all(self, seen: Seen) -> Reply:
        done = [job for job in self.book.all() if job.state not in (QUEUED, RUNNING) and not job.extra.get("deleted")]
        return Reply(json={job.id: self._entry(job) for job in done})

    def view(self, seen: Seen) -> Reply:
        asked = query(seen)
        if "filename" not in asked:
            return Reply(status=400, text="400: Bad Request")
        for job in self.book.all():
            if (
                job.state == SUCCEEDED
                and job.extra.get("filename") == asked["filename"]
                and asked.get("subfolder", "") == ""
                and asked.get("type", "output") == "output"
            ):
                job.polls += 1
                return self.file_reply(seen, job.result, self.book.result_type)
        return Reply(status=404, text="404: Not Found")

    def queue(self, seen: Seen) -> Reply:
        jobs = sorted(self.book.all(), key=lambda job: job.number)
        return Reply(
            json={
                "queue_running": [self._item(job) for job in jobs if job.state == RUNNING],
                "queue_pending": [
                    self._item(job) for job in jobs if job.state == QUEUED and not job.extra.get("deleted")
                ],
            }
        )

    def queue_change(self, seen: Seen) -> Reply:
        body = seen.json if seen.body else {}
        pending = [job for job in self.book.all() if job.state == QUEUED]
        if body.get("clear"):
            doomed = pending
        else:
            doomed = [job for job in pending if job.id in set(body.get("delete", []))]
        for job in doomed:
            self.book.cancel(job.id)
            job.extra["deleted"] = True  # ComfyUI just drops it: it never reaches the history
        return Reply(text="")

    def interrupt(self, seen: Seen) -> Reply:
        body = seen.json if seen.body else {}
        for job in self.book.running():
            if body.get("prompt_id") in (None, job.id):
                self.book.cancel(job.id)
        return Reply(text="")

    def _item(self, job: FakeJob) -> list:
        workflow = job.body["prompt"]
        extra = {"client_id": job.body.get("client_id")} if job.body.get("client_id") else {}
        return [job.number, job.id, workflow, extra, job.extra["outputs"]]

    def _entry(self, job: FakeJob) -> dict:
        started = unix(job.started_at, self.book)
        messages = [["execution_start", {"prompt_id": job.id, "timestamp": started}]]
        messages.append(["execution_cached", {"nodes": [], "prompt_id": job.id, "timestamp": started}])
        outputs: dict = {}
        ended = unix(job.finished_at or job.canceled_at, self.book)
        if job.state == SUCCEEDED:
            file = {"filename": job.extra["filename"], "subfolder": "", "type": "output"}
            for node_id in job.extra["outputs"]:
                outputs[node_id] = {"images": [file]}
                if self.book.media == "video":
                    outputs[node_id]["animated"] = [True]
            messages.append(["execution_success", {"prompt_id": job.id, "timestamp": ended}])
        elif job.state == FAILED:
            messages.append(
                [
                    "execution_error",
                    {
                        "prompt_id": job.id,
                        "node_id": job.extra["outputs"][0],
                        "node_type": job.body["prompt"][job.extra["outputs"][0]]["class_type"],
                        "executed": [],
                        "exception_message": job.failure,
                        "exception_type": "torch.OutOfMemoryError",
                        "traceback": [],
                        "current_inputs": {},
                        "current_outputs": {},
                        "timestamp": ended,
                    },
                ]
            )
        elif job.state == CANCELED:
            messages.append(
                ["execution_interrupted", {"prompt_id": job.id, "node_id": "", "node_type": "", "executed": []}]
            )
        return {
            "prompt": self._item(job),
            "outputs": outputs,
            "status": {
                "status_str": "success" if job.state == SUCCEEDED else "error",
                "completed": job.state == SUCCEEDED,
                "messages": messages,
            },
            "meta": {
                node_id: {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
                for node_id in outputs
            },
        }


def text_to_image_workflow(prompt: str, *, seed: int = 1) -> dict:
    """A minimal text-to-image workflow in ComfyUI's API format, as "Save (API)" exports it."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {"seed": seed, "steps": 20, "cfg": 7, "model": ["4", 0], "positive": ["6", 0]},
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
