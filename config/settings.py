"""Settings, all from environment variables.

Two modes, chosen by ``DJANGO_ENV``:

* ``embedded`` (the default): a SQLite file under ``DATA_DIR``, a secret key generated once
  and kept beside it, local hosts only. Nothing to install or start.
* ``production``: ``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``DATABASE_URL`` must be given; start-up
  fails with ``ImproperlyConfigured`` naming what is missing.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

ENV = os.environ.get("DJANGO_ENV", "embedded").strip().lower()
if ENV not in {"embedded", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be 'embedded' or 'production', not {ENV!r}.")
PRODUCTION = ENV == "production"


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), not {raw!r}.")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, not {value}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(
            f"{name} must be set when DJANGO_ENV=production (see README, 'Configuration')."
        )
    return value


DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "var")).resolve()

DEBUG = env_bool("DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be false when DJANGO_ENV=production.")


def _embedded_secret_key() -> str:
    """A key generated on first start and kept in DATA_DIR, so tokens survive restarts."""
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key


# Production's own guards: a key an attacker could guess signs sessions and password resets,
# and a wildcard host lets any Host header through (password-reset links, cache poisoning).
SECRET_KEY_MIN_LENGTH = 50

if PRODUCTION:
    SECRET_KEY = require("SECRET_KEY")
    if len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH:
        raise ImproperlyConfigured(
            f"SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} characters when "
            "DJANGO_ENV=production (for example: python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))')."
        )
    ALLOWED_HOSTS = [h.strip() for h in require("ALLOWED_HOSTS").split(",") if h.strip()]
    if "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must name the service's hosts when DJANGO_ENV=production, not '*'."
        )
    DATABASE_URL = require("DATABASE_URL")
else:
    SECRET_KEY = os.environ.get("SECRET_KEY") or _embedded_secret_key()
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
    DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()

INSTALLED_APPS = [
    "accounts.admin_site.ServiceAdminConfig",  # django.contrib.admin, its login throttled
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "django_htmx",
    "common",
    "accounts",
    "integrations",
    "console",
    "ops",
    "drf_spectacular_sidecar",  # Swagger UI's files, for the API docs
]

MIDDLEWARE = [
    # The request's id, metrics and access log line: outermost, so that every answer has them.
    "ops.middleware.RequestContextMiddleware",
    "common.middleware.NoStoreMiddleware",
    "common.middleware.ContentSecurityPolicyMiddleware",
    "common.middleware.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Answers successful reads and reports of one failure in one statement on PostgreSQL (see
    # fastpath.py); after the middleware that sets security headers, before everything else.
    "integrations.reads.fastpath.FastPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

# The console's session login (the API authenticates by token).
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:overview"
LOGOUT_REDIRECT_URL = "console:login"

ROOT_URLCONF = "config.urls"
# The API's paths end with a slash; a path without one answers a JSON 404, never a redirect.
APPEND_SLASH = False
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=env_int("DB_CONN_MAX_AGE", 600),
            # No check query before each request: a connection found broken answers 503 once
            # and is replaced at the end of that request (Django closes connections that
            # failed), which saves a round trip on every request.
            conn_health_checks=env_bool("DB_CONN_HEALTH_CHECKS", False),
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, its connections waiting at most DB_ANSWER_TIMEOUT for an answer
        # where the service sets a deadline (common/postgresql/base.py).
        DATABASES["default"]["ENGINE"] = "common.postgresql"
        DATABASES["default"].setdefault("OPTIONS", {})
        # Fail fast while the database is unreachable: the API answers 503 instead of hanging.
        DATABASES["default"]["OPTIONS"].setdefault(
            "connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3, minimum=1)
        )
        # Statements sent with server-side parameters (the read fast path's) are prepared on
        # their first use and planned once per connection; Django's own queries bind
        # client-side and are not affected.
        DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 0)
        # No JIT compilation: the service's statements are short, and compiling a statement
        # whose estimated cost passes jit_above_cost took 100 ms, far more than running it.
        DATABASES["default"]["OPTIONS"].setdefault("options", "-c jit=off")

# The longest a request (the web server's process: config/wsgi.py), or a worker's claim or
# outcome, waits for one answer of PostgreSQL before its connection counts as lost (a 503
# `database_unavailable`; the worker ends, and its service restarts it): a database that stops
# answering without closing its connections holds nothing longer.
# Below gunicorn's worker timeout (60 s, common/server.py), above the slowest statement a
# request runs (a bulk action on a large filter); migrations and housekeeping have no deadline.
DB_ANSWER_TIMEOUT = env_int("DB_ANSWER_TIMEOUT", 20, minimum=1)

if not DATABASE_URL:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(DATA_DIR / "db.sqlite3")),
            "OPTIONS": {
                # WAL lets readers proceed during a write; IMMEDIATE takes the write lock at
                # BEGIN so concurrent writers queue (up to `timeout`) instead of deadlocking.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "static"))
# Admin assets are served by WhiteNoise straight from the installed apps: no collectstatic step.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# The largest request body accepted; a larger one answers 413 before it is read.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 5 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# Lists: `limit` larger than this is clamped to it.
PAGE_SIZE_DEFAULT = 10
PAGE_SIZE_MAX = env_int("PAGE_SIZE_MAX", 1000, minimum=1)

# Tokens issued by the login endpoint expire after this many seconds (0: never).
LOGIN_TOKEN_TTL_SECONDS = env_int("LOGIN_TOKEN_TTL_SECONDS", 30 * 24 * 3600)

# Shared by every process (login throttling): a table in the database, made by a migration.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "service_cache",
    }
}

# Login attempts per client address (429 with Retry-After beyond).
LOGIN_RATE = os.environ.get("LOGIN_RATE", "10/minute")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["common.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["common.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "common.negotiation.JSONOnlyNegotiation",
    "EXCEPTION_HANDLER": "common.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_VERSIONING_CLASS": None,
    # `format` is the export's parameter (csv, ndjson), not a renderer's.
    "URL_FORMAT_OVERRIDE": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_THROTTLE_RATES": {"login": LOGIN_RATE},
    # Behind a proxy, the client's address is the first of X-Forwarded-For (see README).
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}

# Behind a TLS-terminating proxy, set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO so that
# `next`/`previous` links and redirects use https.
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (os.environ["SECURE_PROXY_SSL_HEADER"], "https")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Load balancers and Prometheus ask over plain HTTP, from inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

# Logs: readable text lines (the default), or `LOG_FORMAT=json`: one JSON object a line (time,
# level, logger, message, request id, user, channel, route, status, duration; the worker's
# lines carry the attempt's idempotency key), for a log store.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "ops.logs.TextFormatter"},
        "json": {"()": "ops.logs.JsonFormatter"},
    },
    "filters": {
        "one_line_warning": {"()": "common.logs.OneLineWarning"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # 4xx answers are the clients' business; keep the log for faults.
        "django.request": {"level": "ERROR"},
        # A request with a Host the service does not serve (scanners send them all day): one
        # warning line, not an error with a traceback.
        "django.security.DisallowedHost": {"filters": ["one_line_warning"]},
        # httpx logs every request's URL at INFO, query (and so a webhook's token) included.
        "httpx": {"level": "WARNING"},
    },
}

# `GET /metrics` (Prometheus): with a token set, only for `Authorization: Bearer <token>`;
# without one, served in the embedded mode and refused in production.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()

# Bulk intake: the most items one request may carry.
BULK_MAX_ITEMS = env_int("BULK_MAX_ITEMS", 1000, minimum=1)

# Bulk operator actions (see README, "Bulk actions"): up to this many matched records are acted
# on within the request; more go to the workers (202 and an operation to follow), in
# transactions of BULK_ACTION_BATCH records, so that no row stays locked for long. A dry run's
# confirmation token is good for BULK_ACTION_PREVIEW_MINUTES.
BULK_ACTION_SYNC_MAX = env_int("BULK_ACTION_SYNC_MAX", 10_000, minimum=1)
BULK_ACTION_BATCH = env_int("BULK_ACTION_BATCH", 1000, minimum=1)
BULK_ACTION_PREVIEW_MINUTES = env_int("BULK_ACTION_PREVIEW_MINUTES", 15, minimum=1)

# The retry engine (see README, "The retry life cycle").
RETRY_TIMEOUT_SECONDS = env_int("RETRY_TIMEOUT_SECONDS", 10, minimum=1)
RETRY_LEASE_SECONDS = env_int("RETRY_LEASE_SECONDS", 120, minimum=1)
WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 8, minimum=1)
WORKER_BATCH = env_int("WORKER_BATCH", 32, minimum=1)
# Delivery protection (integrations/dispatch/protection.py): the circuit breaker of each channel
# app opens after BREAKER_FAILURES of its failures in a row, or when BREAKER_FAILURE_PERCENT of
# the attempts of a BREAKER_WINDOW_SECONDS window failed and there were BREAKER_MIN_VOLUME; it
# probes after a cool-down from BREAKER_COOL_DOWN_MIN doubling up to BREAKER_COOL_DOWN_MAX
# seconds, and closes after BREAKER_CLOSE_AFTER answers. Open for CHANNEL_DISABLE_AFTER_DAYS, the
# channel is disabled. After a recovery a channel with a rate limit (set, or learned) drains at
# that rate; one without starts at DRAIN_START_RATE attempts a second, doubling every
# DRAIN_DOUBLING_SECONDS up to DRAIN_END_RATE. A 429 teaches a rate: THROTTLE_LEARN_PERCENT of
# what the app was getting (at each later 429, of what it answered, or of the learned rate),
# growing by a tenth every THROTTLE_GROWTH_SECONDS without one (probing up to the app's limit),
# forgotten after THROTTLE_MEMORY_SECONDS without one.
BREAKER_FAILURES = env_int("BREAKER_FAILURES", 5, minimum=1)
BREAKER_RATIO = env_int("BREAKER_FAILURE_PERCENT", 50, minimum=1) / 100
BREAKER_MIN_VOLUME = env_int("BREAKER_MIN_VOLUME", 20, minimum=1)
BREAKER_WINDOW_SECONDS = env_int("BREAKER_WINDOW_SECONDS", 60, minimum=1)
BREAKER_COOL_DOWN_MIN = env_int("BREAKER_COOL_DOWN_MIN", 30, minimum=1)
BREAKER_COOL_DOWN_MAX = env_int("BREAKER_COOL_DOWN_MAX", 3600, minimum=1)
BREAKER_CLOSE_AFTER = env_int("BREAKER_CLOSE_AFTER", 2, minimum=1)
CHANNEL_DISABLE_AFTER_DAYS = env_int("CHANNEL_DISABLE_AFTER_DAYS", 3, minimum=1)
DRAIN_START_RATE = env_int("DRAIN_START_RATE", 1, minimum=1)
DRAIN_DOUBLING_SECONDS = env_int("DRAIN_DOUBLING_SECONDS", 10, minimum=1)
DRAIN_END_RATE = env_int("DRAIN_END_RATE", 1000, minimum=1)
THROTTLE_LEARN_PERCENT = env_int("THROTTLE_LEARN_PERCENT", 95, minimum=1)
THROTTLE_GROWTH_SECONDS = env_int("THROTTLE_GROWTH_SECONDS", 30, minimum=1)
THROTTLE_MEMORY_SECONDS = env_int("THROTTLE_MEMORY_SECONDS", 3600, minimum=1)
# Inactive records unchanged for this many days are purged.
RETENTION_DAYS = env_int("RETENTION_DAYS", 30, minimum=1)
# A report's Idempotency-Key is kept this many hours: a repeat within them answers the first
# answer again and writes nothing.
IDEMPOTENCY_KEY_HOURS = env_int("IDEMPOTENCY_KEY_HOURS", 24, minimum=1)
# Where "retries ran out" events are POSTed (JSON); empty: they are only logged.
EXHAUSTION_WEBHOOK_URL = os.environ.get("EXHAUSTION_WEBHOOK_URL", "").strip()
# The secret of the events' signatures (X-Timestamp and X-Signature, as the retry requests
# are signed); empty: events are not signed.
EVENTS_SIGNING_SECRET = os.environ.get("EVENTS_SIGNING_SECRET", "").strip()
# After a channel's signing secret is replaced, the previous one goes on signing its requests
# (beside the new one) for this many hours, so that its channel app can switch without
# refusing attempts.
SIGNING_SECRET_OVERLAP_HOURS = env_int("SIGNING_SECRET_OVERLAP_HOURS", 24)
# Networks the service may send requests to although they are not public (loopback, private,
# link-local, ...: see integrations/dispatch/endpoints.py), comma-separated CIDRs. The embedded
# mode allows loopback, where its sample receiver listens; production allows none by default.
ALLOWED_ENDPOINT_NETWORKS = env_list(
    "ALLOWED_ENDPOINT_NETWORKS", [] if PRODUCTION else ["127.0.0.0/8", "::1/128"]
)
for _network in ALLOWED_ENDPOINT_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"ALLOWED_ENDPOINT_NETWORKS: {_network!r} is not a network (e.g. 10.0.0.0/8)."
        ) from None
