from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_django(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "SECURE_COOKIES")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings"}, capture_output=True, text=True, timeout=120,
    )


def test_it_names_a_malformed_database_url():
    result = run_django("pass", DATABASE_URL="mysql//nope", SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "DATABASE_URL is malformed" in result.stderr


def test_it_names_a_database_url_without_a_database_name():
    result = run_django("pass", DATABASE_URL="postgres://arena@127.0.0.1:5432/", SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "DATABASE_URL is malformed" in result.stderr


def test_it_names_a_malformed_redis_url():
    result = run_django("pass", REDIS_URL="http://localhost:6379")
    assert result.returncode != 0
    assert "REDIS_URL is malformed" in result.stderr


def test_it_names_a_malformed_boolean():
    result = run_django("pass", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = run_django("pass", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_it_runs_embedded_with_no_environment(tmp_path):
    result = run_django(
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], s.DEBUG, s.ARENA_INPROCESS_WORKERS)",
        ARENA_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "channels.layers.InMemoryChannelLayer", "True", "True"]


def test_it_uses_postgres_and_redis_when_configured():
    result = run_django(
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['PORT'], s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_BROKER_URL, s.DEBUG, s.ARENA_INPROCESS_WORKERS)",
        DATABASE_URL="postgres://u:p%40ss@db.internal:5433/arena", REDIS_URL="redis://cache:6380/1", SECRET_KEY="x" * 60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql", "5433", "channels_redis.core.RedisChannelLayer", "redis://cache:6380/1", "False", "False",
    ]


def test_its_deploy_check_is_clean_apart_from_what_tls_in_front_provides():
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECURE_COOKIES", "WHITENOISE_USE_FINDERS")}
    env.update(SECRET_KEY="k" * 30 + "Zq9!x" * 10, DEBUG="0", ALLOWED_HOSTS="arena.example.org")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    warnings = sorted(set(re.findall(r"\(security\.W\d+\)", result.stderr)))
    # HSTS and the HTTPS redirect belong to the TLS proxy in front; both stay switchable by environment.
    assert warnings == ["(security.W004)", "(security.W008)"], result.stderr
