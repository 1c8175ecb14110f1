"""Settings of the mmm gateway: everything an operator may change is an environment variable.

Defaults need nothing installed (SQLite and the local-memory cache). ``DATABASE_URL`` and
``REDIS_URL`` switch on PostgreSQL and Redis. The gateway's own settings start with ``MMM_``;
README.md lists each of them.
"""

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mmm import lean_imports
from mmm.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MMM_VAR_DIR", str(BASE_DIR / "var")))


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once into var/secret_key.

    The file keeps admin sessions valid across restarts of a single host; several hosts
    behind one load balancer must share one SECRET_KEY set in the environment.
    """
    key = env_str("SECRET_KEY")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# JSON for API paths; Django's page for the admin.
CSRF_FAILURE_VIEW = "mmm.api_errors.csrf_failure"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as static files: /api/docs/ needs no CDN
    "mmm",
    "accounts",
    "registry",
    "inference",
    "console",
    "response_store",
    "usage",
    "jobs",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise (static files need no request id), before everything that may answer.
    "console.middleware.RequestContextMiddleware",
    # Django's session, auth and messages middleware, skipped for API calls without a session.
    "mmm.browser_middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "mmm.browser_middleware.BrowserAuthenticationMiddleware",
    "mmm.browser_middleware.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mmm.urls"
WSGI_APPLICATION = "mmm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# CONN_MAX_AGE stays 0: under gevent every greenlet has its own connection, so persistent
# connections would pile up one per concurrent request. The request path does not touch the
# database (the routing table is cached in the process), so opening a connection is rare.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    )
}
# An unreachable database must fail in seconds, not after TCP gives up: a connect is bounded by
# MMM_DB_CONNECT_TIMEOUT (libpq's connect_timeout, and under gevent mmm.postgresql's own bound),
# a statement by the server's statement_timeout, and a database call made on a request by
# MMM_DB_REQUEST_TIMEOUT, after which the breaker (mmm.database) keeps requests off it.
MMM_DB_CONNECT_TIMEOUT = env_int("MMM_DB_CONNECT_TIMEOUT", 3, minimum=1, maximum=60)
MMM_DB_STATEMENT_TIMEOUT = env_float("MMM_DB_STATEMENT_TIMEOUT", 30.0, minimum=0.0, maximum=86400.0)
MMM_DB_REQUEST_TIMEOUT = env_float("MMM_DB_REQUEST_TIMEOUT", 3.0, minimum=0.05, maximum=60.0)
MMM_DB_BREAKER_MAX_SECONDS = env_float("MMM_DB_BREAKER_MAX_SECONDS", 1.0, minimum=0.5, maximum=600.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "mmm.postgresql"
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["connect_timeout"] = MMM_DB_CONNECT_TIMEOUT
    if MMM_DB_STATEMENT_TIMEOUT:  # 0 leaves the server's default (none)
        options["options"] = (
            f"{options.get('options', '')} -c statement_timeout={int(MMM_DB_STATEMENT_TIMEOUT * 1000)}".strip()
        )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets several gunicorn processes read while one writes; IMMEDIATE transactions take
    # the write lock up front instead of failing with "database is locked" on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# DRF, before any app imports it, without the optional packages it would load and the gateway
# never uses (about 10 MiB of every process; mmm.lean_imports says which and why).
lean_imports.import_drf_compat(postgresql=DATABASES["default"]["ENGINE"] == "mmm.postgresql")

# --- Cache ----------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
# Longest wait on one Redis call (the cache, the rate limits, the routing state), with no retry:
# a Redis that does not answer must not hold a request (mmm.breaker then skips it for a while).
MMM_REDIS_TIMEOUT = env_float("MMM_REDIS_TIMEOUT", 0.5, minimum=0.01, maximum=10.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("MMM_CACHE_PREFIX", "mmm"),
            # A cache that does not answer must not hang a request (redis-py's pool, as Django
            # builds it, makes connections that do not retry).
            "OPTIONS": {"socket_connect_timeout": MMM_REDIS_TIMEOUT, "socket_timeout": MMM_REDIS_TIMEOUT},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mmm"}}

# --- Static files (the admin's CSS and JS, served by WhiteNoise) ----------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Finished jobs' images and videos (jobs.results): under var/ by default; S3-compatible
    # storage through django-storages in production (docs/jobs.md).
    "job_results": {
        "BACKEND": env_str("MMM_JOB_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": (
            {"location": str(VAR_DIR / "job_results")}
            if not env_str("MMM_JOB_STORAGE_BACKEND")
            else {
                name: value
                for name, value in {
                    "bucket_name": env_str("MMM_JOB_S3_BUCKET"),
                    "endpoint_url": env_str("MMM_JOB_S3_ENDPOINT_URL"),
                    "location": env_str("MMM_JOB_S3_PREFIX", "job_results"),
                }.items()
                if value
            }
        ),
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security behind a TLS-terminating proxy ------------------------------------------------
if env_bool("MMM_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Plain-HTTP requests that reach the gateway through the proxy are sent to https://.
    SECURE_SSL_REDIRECT = env_bool("MMM_SSL_REDIRECT", True)
    # Browsers remember to use https only; a year, as check --deploy asks.
    SECURE_HSTS_SECONDS = env_int("MMM_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("MMM_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("MMM_HSTS_PRELOAD", True)

# --- Django REST framework ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["mmm.parsers.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "mmm.negotiation.JsonFirstContentNegotiation",
    # Every endpoint needs a key (or a staff session) unless MMM_REQUIRE_AUTH is off; views
    # outside inference name the scope they need (accounts/permissions.py).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.InferenceAccess"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.ratelimit.PerKeyRateLimit"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "mmm.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- OpenAPI (mmm/openapi/, served at /api/schema/, docs/openapi.md) ------------------------
SPECTACULAR_SETTINGS = {
    "TITLE": "mmm gateway",
    "DESCRIPTION": "A gateway in front of model-inference servers: the seed's registry and completion API, "
    "and an OpenAI-compatible API under /v1.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],  # the schema holds no secret
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["mmm.openapi.hooks.seed_paths"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "mmm.openapi.hooks.plain_paths",
        "mmm.openapi.hooks.without_database_bounds",
    ],
    "ENUM_NAME_OVERRIDES": {},
    "TAGS": [
        {"name": "registry", "description": "workers and routing policies (docs/api.md)"},
        {"name": "seed", "description": "the seed's completion endpoint"},
        {"name": "openai", "description": "the OpenAI-compatible API"},
        {"name": "health", "description": "probes and metrics, without a key"},
    ],
}

# --- Logging --------------------------------------------------------------------------------
# MMM_LOG_JSON=true prints one JSON object per line (console.log_format), for log pipelines.
MMM_LOG_JSON = env_bool("MMM_LOG_JSON", False)
# How often a gunicorn worker's log thread writes the lines queued (console.log_handler).
MMM_LOG_FLUSH_SECONDS = env_float("MMM_LOG_FLUSH_SECONDS", 0.05, minimum=0.001, maximum=10.0)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "console.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {
            # In a gunicorn worker its lines are written by a thread beside the event loop.
            "class": "console.log_handler.BackgroundStreamHandler",
            "formatter": "json" if MMM_LOG_JSON else "plain",
            "flush_seconds": MMM_LOG_FLUSH_SECONDS,
        }
    },
    "root": {"handlers": ["console"], "level": env_str("MMM_LOG_LEVEL", "INFO").upper()},
    "loggers": {"urllib3": {"level": "WARNING"}},
}

# --- The gateway's own settings -------------------------------------------------------------
# How often each process reloads its routing table from the database. A change made through
# any process or host is in effect everywhere within this time plus one request.
MMM_ROUTING_REFRESH_SECONDS = env_float("MMM_ROUTING_REFRESH_SECONDS", 1.0, minimum=0.0, maximum=60.0)
# Upstream timeout of a worker registered without one, in seconds (total time for one try).
MMM_DEFAULT_TIMEOUT = env_float("MMM_DEFAULT_TIMEOUT", 60.0, minimum=0.1, maximum=3600.0)
# Longest a streamed answer (stream: true) may take from request to [DONE], in seconds. Each
# wait for the stream's next bytes is bounded by the worker's timeout as well.
MMM_STREAM_MAX_SECONDS = env_float("MMM_STREAM_MAX_SECONDS", 600.0, minimum=1.0, maximum=86400.0)
# Longest a TCP connect to an upstream may take before that worker counts as down.
MMM_CONNECT_TIMEOUT = env_float("MMM_CONNECT_TIMEOUT", 3.0, minimum=0.1, maximum=60.0)
# Largest upstream response body read into memory; a larger one is cut off with a 502.
MMM_MAX_RESPONSE_BYTES = env_int("MMM_MAX_RESPONSE_BYTES", 32 * 1024 * 1024, minimum=1024)
# Largest request body a client may send (a long prompt is a few hundred kB); larger is a 413.
MMM_MAX_REQUEST_BYTES = env_int("MMM_MAX_REQUEST_BYTES", 10 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MMM_MAX_REQUEST_BYTES
# Pooled keep-alive connections kept per upstream host and process.
MMM_UPSTREAM_POOL_SIZE = env_int("MMM_UPSTREAM_POOL_SIZE", 256, minimum=1)
# Upstream calls through geventhttpclient where gevent's monkey patching runs the process
# (gunicorn's gevent workers): a third of urllib3's CPU per call (bench/clients.py). Off, or
# outside gevent, they go through urllib3's pools (inference/upstream.py).
MMM_UPSTREAM_GEVENTHTTPCLIENT = env_bool("MMM_UPSTREAM_GEVENTHTTPCLIENT", True)

# Health probes (manage.py probe_workers).
MMM_PROBE_TIMEOUT = env_float("MMM_PROBE_TIMEOUT", 10.0, minimum=0.1, maximum=600.0)
MMM_PROBE_PROMPT = env_str("MMM_PROBE_PROMPT", "ping")
MMM_PROBE_CONCURRENCY = env_int("MMM_PROBE_CONCURRENCY", 16, minimum=1, maximum=256)
MMM_PROBE_FAILURES_TO_UNHEALTHY = env_int("MMM_PROBE_FAILURES_TO_UNHEALTHY", 1, minimum=1)
MMM_PROBE_SUCCESSES_TO_HEALTHY = env_int("MMM_PROBE_SUCCESSES_TO_HEALTHY", 2, minimum=1)

# Routing and resilience (docs/routing.md). Shared between processes through Redis when
# REDIS_URL is set; otherwise kept in this process.
MMM_ROUTING_STATE_PREFIX = env_str("MMM_ROUTING_STATE_PREFIX", "mmm:rs")
# Passive health: consecutive live-traffic failures that eject a worker, for BASE x (times
# ejected) seconds, at most MAX seconds; at most MAX_PERCENT of a model's workers at once.
MMM_EJECT_AFTER_FAILURES = env_int("MMM_EJECT_AFTER_FAILURES", 3, minimum=1)
MMM_EJECT_BASE_SECONDS = env_float("MMM_EJECT_BASE_SECONDS", 30.0, minimum=0.1, maximum=86400.0)
MMM_EJECT_MAX_SECONDS = env_float("MMM_EJECT_MAX_SECONDS", 300.0, minimum=0.1, maximum=86400.0)
MMM_EJECT_MAX_PERCENT = env_int("MMM_EJECT_MAX_PERCENT", 50, minimum=0, maximum=100)
# Cooldown after an upstream 429 that carries no usable Retry-After; the longest one honoured.
MMM_COOLDOWN_DEFAULT_SECONDS = env_float("MMM_COOLDOWN_DEFAULT_SECONDS", 5.0, minimum=0.0, maximum=3600.0)
MMM_COOLDOWN_MAX_SECONDS = env_float("MMM_COOLDOWN_MAX_SECONDS", 300.0, minimum=0.0, maximum=86400.0)
# Retry budget per model, as Envoy's: a retry may start while the model's retries in the
# current window are under RATIO of its requests, or while fewer than MIN of its retries are
# running (so a quiet model still gets its retries).
MMM_RETRY_BUDGET_RATIO = env_float("MMM_RETRY_BUDGET_RATIO", 0.2, minimum=0.0, maximum=10.0)
MMM_RETRY_BUDGET_MIN = env_int("MMM_RETRY_BUDGET_MIN", 3, minimum=0)
MMM_RETRY_BUDGET_WINDOW_SECONDS = env_int("MMM_RETRY_BUDGET_WINDOW_SECONDS", 10, minimum=1, maximum=3600)
# Defaults of the per-model routing policy (a model without a policy uses these).
MMM_DEFAULT_MAX_ATTEMPTS = env_int("MMM_DEFAULT_MAX_ATTEMPTS", 3, minimum=1, maximum=20)
MMM_DEFAULT_DEADLINE = env_float("MMM_DEFAULT_DEADLINE", 120.0, minimum=0.1, maximum=3600.0)
# Peak-EWMA decay time of the latency average that the least_loaded strategy balances on.
MMM_LATENCY_DECAY_SECONDS = env_float("MMM_LATENCY_DECAY_SECONDS", 10.0, minimum=0.1, maximum=3600.0)
# least_loaded: two latency averages within this ratio of each other count as equal (noise in
# the average of identical workers must not decide), and the tie goes by in-flight, then rotation.
MMM_LATENCY_TIE_RATIO = env_float("MMM_LATENCY_TIE_RATIO", 1.5, minimum=1.0, maximum=100.0)
# Engine signals (manage.py scrape_engines): how often each engine's /metrics is read, how long
# one read may take, and after how long a signal is too old to route on (least_loaded then).
# Kubernetes' inference extension reads every 50 ms and ignores what is older than 2 s.
MMM_ENGINE_SCRAPE_INTERVAL = env_float("MMM_ENGINE_SCRAPE_INTERVAL", 0.25, minimum=0.01, maximum=60.0)
MMM_ENGINE_SCRAPE_TIMEOUT = env_float("MMM_ENGINE_SCRAPE_TIMEOUT", 1.0, minimum=0.05, maximum=30.0)
MMM_ENGINE_SIGNALS_STALE_SECONDS = env_float("MMM_ENGINE_SIGNALS_STALE_SECONDS", 2.0, minimum=0.1, maximum=3600.0)
# prefix_aware: the rendered prompt is hashed in blocks of this many characters (about 64
# tokens), at most MAX_BLOCKS of them; each worker's table of recently sent blocks keeps at most
# TABLE_BLOCKS (an engine that reports its KV cache size sizes its own); the longest match wins
# unless that worker has more than LOAD_GATE requests more than the least loaded one.
MMM_PREFIX_BLOCK_CHARS = env_int("MMM_PREFIX_BLOCK_CHARS", 256, minimum=16, maximum=65536)
MMM_PREFIX_MAX_BLOCKS = env_int("MMM_PREFIX_MAX_BLOCKS", 256, minimum=1, maximum=4096)
MMM_PREFIX_TABLE_BLOCKS = env_int("MMM_PREFIX_TABLE_BLOCKS", 16384, minimum=16, maximum=10_000_000)
MMM_PREFIX_LOAD_GATE = env_float("MMM_PREFIX_LOAD_GATE", 8.0, minimum=0.0, maximum=100_000.0)
# probe_workers deletes heartbeat workers that have been expired for longer than this.
MMM_HEARTBEAT_REMOVE_AFTER = env_float("MMM_HEARTBEAT_REMOVE_AFTER", 3600.0, minimum=0.0)
# How long a Redis call of the routing state may take before the request goes on without it.
# Without REDIS_URL, the unix socket of the routing and limit state the processes of one
# gunicorn share (inference.host_state); mmm/gunicorn.conf.py sets it for its workers.
MMM_HOST_STATE_SOCKET = env_str("MMM_HOST_STATE_SOCKET")
MMM_ROUTING_STATE_TIMEOUT = env_float("MMM_ROUTING_STATE_TIMEOUT", MMM_REDIS_TIMEOUT, minimum=0.01, maximum=10.0)
# With that server, the hot part of the routing state (in-flight counts, latency, ejections, the
# retry budget) lives in memory the master shares with its workers (inference.routing_state_shared):
# no round trip per call. False asks the server for everything, as before.
MMM_SHARED_MEMORY_STATE = env_bool("MMM_SHARED_MEMORY_STATE", True)
# --- Access control and secrets (accounts/, mmm/encryption.py, inference/egress.py) ----------
# Off only for local use: `make serve` turns it off unless set, and refuses a non-loopback bind.
MMM_REQUIRE_AUTH = env_bool("MMM_REQUIRE_AUTH", True)
# How long a process trusts what it looked up about a key: a revocation is in effect within this.
MMM_API_KEY_CACHE_SECONDS = env_float("MMM_API_KEY_CACHE_SECONDS", 2.0, minimum=0.0, maximum=300.0)
# While the database cannot be reached, a key looked up before keeps working for this long
# (its last good entry); an unknown key is a 503 key_store_unavailable meanwhile.
MMM_API_KEY_STALE_SECONDS = env_float("MMM_API_KEY_STALE_SECONDS", 3600.0, minimum=0.0, maximum=7 * 86400.0)
# Fernet keys for upstream secrets stored in the database: the first encrypts, all decrypt.
# Unset, a key derived from SECRET_KEY is used (check --deploy warns).
MMM_SECRET_KEYS = env_list("MMM_SECRET_KEYS", [])
# Egress policy for upstream URLs: CIDR ranges and host names ("*.example.com" for subdomains).
# DENY always wins; a non-empty ALLOW admits only what it lists. Link-local and cloud metadata
# addresses are refused unless ALLOW names their range explicitly.
MMM_UPSTREAM_ALLOW = env_list("MMM_UPSTREAM_ALLOW", [])
MMM_UPSTREAM_DENY = env_list("MMM_UPSTREAM_DENY", [])
# Webhooks to client keys (webhooks/, docs/webhooks.md), sent by manage.py deliver_webhooks.
# One attempt may take TIMEOUT seconds; a failed one is tried again after BACKOFF x 2^(n-1)
# seconds (at most BACKOFF_MAX), MAX_ATTEMPTS times in all before the delivery is given up.
MMM_WEBHOOK_TIMEOUT = env_float("MMM_WEBHOOK_TIMEOUT", 10.0, minimum=0.1, maximum=120.0)
MMM_WEBHOOK_MAX_ATTEMPTS = env_int("MMM_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1, maximum=100)
MMM_WEBHOOK_BACKOFF_SECONDS = env_float("MMM_WEBHOOK_BACKOFF_SECONDS", 30.0, minimum=0.0, maximum=86400.0)
MMM_WEBHOOK_BACKOFF_MAX_SECONDS = env_float(
    "MMM_WEBHOOK_BACKOFF_MAX_SECONDS", 6 * 3600.0, minimum=0.0, maximum=7 * 86400.0
)
# gunicorn (mmm/gunicorn.conf.py) starts a `deliver_webhooks --loop` beside itself; production
# runs it as its own service and sets this to false.
MMM_WEBHOOK_SENDER = env_bool("MMM_WEBHOOK_SENDER", True)
# Request log (console.request_log): rows are queued in the process and written in batches.
MMM_REQUEST_LOG_FLUSH_SECONDS = env_float("MMM_REQUEST_LOG_FLUSH_SECONDS", 1.0, minimum=0.05, maximum=3600.0)
MMM_REQUEST_LOG_BATCH = env_int("MMM_REQUEST_LOG_BATCH", 500, minimum=1, maximum=100_000)
# Rows kept in memory while the database is slow or down; past this new rows are dropped.
MMM_REQUEST_LOG_MAX_QUEUE = env_int("MMM_REQUEST_LOG_MAX_QUEUE", 100_000, minimum=1)
# False writes only when flush() is called (the test suite does that).
MMM_REQUEST_LOG_BACKGROUND = env_bool("MMM_REQUEST_LOG_BACKGROUND", True)
# Store prompts and answers in the request log. Off: they may hold personal or secret data.
MMM_REQUEST_LOG_CONTENT = env_bool("MMM_REQUEST_LOG_CONTENT", False)
# --- Usage, cost and budgets (usage/, docs/usage.md) -----------------------------------------
# Off: no budget is checked or counted (usage rows are still written); for the benchmark.
MMM_BUDGETS = env_bool("MMM_BUDGETS", True)
# Prefix of the budget counters in Redis (each key's and team's share one hash tag).
MMM_USAGE_PREFIX = env_str("MMM_USAGE_PREFIX", "mmm:usage")
# How often each process reloads prices, budgets and teams.
MMM_USAGE_REFRESH_SECONDS = env_float("MMM_USAGE_REFRESH_SECONDS", 5.0, minimum=0.0, maximum=3600.0)
# A reservation whose process died is released after this long: longer than any request lives.
MMM_USAGE_LEASE_SECONDS = env_float("MMM_USAGE_LEASE_SECONDS", MMM_STREAM_MAX_SECONDS + 60, minimum=1.0)
# Settled requests are remembered this long (a duplicate settle is a no-op; reconciliation
# reads what was charged since its cutoff): keep it well above the reconcile lag.
MMM_USAGE_SETTLED_MEMORY_SECONDS = env_float("MMM_USAGE_SETTLED_MEMORY_SECONDS", 900.0, minimum=10.0)
# Reconciliation trusts the ledger for what was settled longer ago than this (the batched
# ledger writes have reached it by then), and Redis for what came after.
MMM_USAGE_RECONCILE_LAG_SECONDS = env_float("MMM_USAGE_RECONCILE_LAG_SECONDS", 60.0, minimum=0.0)
# How often the background loop reconciles every budget with the ledger (0: never; run
# manage.py reconcile_usage instead).
MMM_USAGE_RECONCILE_SECONDS = env_float("MMM_USAGE_RECONCILE_SECONDS", 300.0, minimum=0.0)
# The output a reservation holds for a request that sets no max_tokens.
MMM_USAGE_DEFAULT_OUTPUT_TOKENS = env_int("MMM_USAGE_DEFAULT_OUTPUT_TOKENS", 1024, minimum=0)
# Settle a request's usage in a flusher beside the worker, batched into one Redis round trip,
# instead of in the request (usage.settlement). False settles in the request (the test suite).
MMM_USAGE_SETTLE_BEHIND = env_bool("MMM_USAGE_SETTLE_BEHIND", True)
# Stored /v1/responses answers (store: true, the default) are kept this long for
# previous_response_id and GET /v1/responses/{id}; manage.py prune_responses deletes older ones.
MMM_RESPONSES_RETENTION_DAYS = env_int("MMM_RESPONSES_RETENTION_DAYS", 30, minimum=1, maximum=3650)
# --- Asynchronous image and video jobs (jobs/, docs/jobs.md) --------------------------------
# A running job is polled at least this often, and at most this rarely: the interval grows with
# the job's age (a tenth of it), so a 3 s image is seen done quickly and a 10 min video is not
# asked about every half second.
MMM_JOB_POLL_MIN_SECONDS = env_float("MMM_JOB_POLL_MIN_SECONDS", 0.25, minimum=0.05, maximum=600.0)
MMM_JOB_POLL_MAX_SECONDS = env_float("MMM_JOB_POLL_MAX_SECONDS", 10.0, minimum=0.05, maximum=3600.0)
# A client's GET of a running job polls its worker at once, at most this often per job.
MMM_JOB_EARLY_POLL_SECONDS = env_float("MMM_JOB_EARLY_POLL_SECONDS", 1.0, minimum=0.0, maximum=3600.0)
# A runner's claim on a job lasts its call's timeout plus this; a runner that died lets it run
# out, and any other runner takes the job over.
MMM_JOB_LEASE_SECONDS = env_float("MMM_JOB_LEASE_SECONDS", 30.0, minimum=1.0, maximum=3600.0)
# A job whose worker has not answered for this long (or was removed) is failed, saying so.
MMM_JOB_WORKER_LOST_SECONDS = env_float("MMM_JOB_WORKER_LOST_SECONDS", 300.0, minimum=1.0, maximum=7 * 86400.0)
# A video job asked for no length is charged for this many seconds (OpenAI's /v1/videos default).
MMM_JOB_DEFAULT_VIDEO_SECONDS = env_float("MMM_JOB_DEFAULT_VIDEO_SECONDS", 4.0, minimum=0.1, maximum=3600.0)
# A job that no worker took within this long is failed.
MMM_JOB_MAX_QUEUE_SECONDS = env_float("MMM_JOB_MAX_QUEUE_SECONDS", 6 * 3600.0, minimum=1.0, maximum=30 * 86400.0)
# Finished jobs and their results are kept this long, then prune_jobs (and run_jobs) delete them.
MMM_JOB_RETENTION_SECONDS = env_float("MMM_JOB_RETENTION_SECONDS", 86400.0, minimum=1.0, maximum=365 * 86400.0)
# "store" copies results into the job_results storage; "link" passes an upstream's output URL
# on (a redirect from .../content) where the output is a URL, and stores the rest.
MMM_JOB_RESULTS = env_str("MMM_JOB_RESULTS", "store")
if MMM_JOB_RESULTS not in ("store", "link"):
    raise ImproperlyConfigured(f"MMM_JOB_RESULTS={MMM_JOB_RESULTS!r}: use store or link")
# Seconds a result's download from its worker may take (a video of a few hundred MB).
MMM_JOB_FETCH_TIMEOUT = env_float("MMM_JOB_FETCH_TIMEOUT", 600.0, minimum=1.0, maximum=86400.0)
MMM_JOB_MAX_RESULT_BYTES = env_int("MMM_JOB_MAX_RESULT_BYTES", 2 * 1024**3, minimum=1024)
# An input_reference image a client uploads may be at most this large.
MMM_JOB_MAX_INPUT_BYTES = env_int("MMM_JOB_MAX_INPUT_BYTES", 20 * 1024 * 1024, minimum=1024)
# Calls to workers that one run_jobs process makes at once.
MMM_JOB_RUNNER_THREADS = env_int("MMM_JOB_RUNNER_THREADS", 16, minimum=1, maximum=256)
# gunicorn (mmm/gunicorn.conf.py) starts a `run_jobs --loop` beside itself; production runs it
# as its own service and sets this to false.
MMM_JOB_RUNNER = env_bool("MMM_JOB_RUNNER", True)
# Where this host's runner listens for "a job was queued" (jobs/wake.py); the gunicorn config
# sets it for the runner it starts. Empty: the runner only polls.
MMM_JOB_WAKE_SOCKET = env_str("MMM_JOB_WAKE_SOCKET")
# The longest an idle runner waits between passes (it backs off to this while it finds nothing).
MMM_JOB_IDLE_MAX_SECONDS = env_float("MMM_JOB_IDLE_MAX_SECONDS", 1.0, minimum=0.05, maximum=60.0)
