from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_it_keeps_the_query_options_of_the_database_url():
    result = run_django(
        "from django.conf import settings as s; o = s.DATABASES['default']['OPTIONS']; print(o['sslmode'], o['sslrootcert'], o['connect_timeout'], s.DATABASES['default']['NAME'])",
        DATABASE_URL="postgres://u:p@db.internal:5432/arena?sslmode=verify-full&sslrootcert=/etc/arena/ca.pem",
        SECRET_KEY="x" * 60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["verify-full", "/etc/arena/ca.pem", "5", "arena"]


def test_it_names_a_database_url_with_a_repeated_option():
    result = run_django("pass", DATABASE_URL="postgres://u@db:5432/arena?sslmode=require&sslmode=disable", SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "DATABASE_URL is malformed" in result.stderr and "sslmode" in result.stderr


def test_it_reads_the_favoured_rivals():
    result = run_django(
        "from django.conf import settings as s; print(sorted(s.ARENA_INHOUSE_RIVALS.items()))",
        ARENA_INHOUSE_RIVALS=" qwen3-8b:3, llama-3-8b:0.5 ,mistral:0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('llama-3-8b', 0.5), ('mistral', 0.0), ('qwen3-8b', 3.0)]"


@pytest.mark.parametrize("value", ["qwen3-8b", "qwen3-8b:", ":3", "qwen3-8b:three", "qwen3-8b:-1", "qwen3-8b:inf",
                                   "qwen3-8b:3,qwen3-8b:2"])
def test_it_names_malformed_favoured_rivals(value):
    # Tried: a slug without a factor, a factor without a slug, words, negative and infinite factors, a repeat.
    result = run_django("pass", ARENA_INHOUSE_RIVALS=value)
    assert result.returncode != 0
    assert "ImproperlyConfigured: ARENA_INHOUSE_RIVALS" in result.stderr, result.stderr[-500:]
    assert "ValueError" not in result.stderr


@pytest.mark.parametrize("value", ["5.0", "-0.1", "1.01", "nan", "half"])
def test_it_refuses_an_in_house_share_outside_zero_to_one(value):
    result = run_django("pass", ARENA_INHOUSE_SHARE=value)
    assert result.returncode != 0
    assert "ImproperlyConfigured: ARENA_INHOUSE_SHARE must be" in result.stderr, result.stderr[-500:]


@pytest.mark.parametrize("value", ["0", "1", "0.25"])
def test_it_accepts_an_in_house_share_within_zero_to_one(value):
    result = run_django("from django.conf import settings as s; print(s.ARENA_INHOUSE_SHARE)", ARENA_INHOUSE_SHARE=value)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == float(value)
