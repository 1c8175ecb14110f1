"""Settings of the mmm gateway: everything an operator may change is an environment variable.

Defaults need nothing installed (SQLite and the local-memory cache). ``DATABASE_URL`` and
``REDIS_URL`` switch on PostgreSQL and Redis. The gateway's own settings start with ``MMM_``;
README.md lists each of them.
"""

import secrets
from pathlib import Path

import dj_database_url

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

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "registry",
    "inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # An unreachable database must fail a routing reload in seconds, not after TCP gives up.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "MMM_DB_CONNECT_TIMEOUT", 5, minimum=1
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

# --- Cache ----------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("MMM_CACHE_PREFIX", "mmm"),
            # A cache that does not answer must not hang a request.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mmm"}}

# --- Static files (the admin's CSS and JS, served by WhiteNoise) ----------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
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

# --- Django REST framework ------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "mmm.api_errors.api_exception_handler",
}

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
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

# Health probes (manage.py probe_workers).
MMM_PROBE_TIMEOUT = env_float("MMM_PROBE_TIMEOUT", 10.0, minimum=0.1, maximum=600.0)
MMM_PROBE_PROMPT = env_str("MMM_PROBE_PROMPT", "ping")
MMM_PROBE_CONCURRENCY = env_int("MMM_PROBE_CONCURRENCY", 16, minimum=1, maximum=256)
MMM_PROBE_FAILURES_TO_UNHEALTHY = env_int("MMM_PROBE_FAILURES_TO_UNHEALTHY", 1, minimum=1)
MMM_PROBE_SUCCESSES_TO_HEALTHY = env_int("MMM_PROBE_SUCCESSES_TO_HEALTHY", 2, minimum=1)
