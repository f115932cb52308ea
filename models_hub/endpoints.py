"""What a model entry may point the arena's servers at: which environment variable may lend its value as an API
key, which URLs may be called, which directories may be read as checkpoints.

A model entry is written by staff, but its fields are used by the web and worker processes, which hold the
deployment's own secrets (SECRET_KEY, DATABASE_URL, REDIS_URL) in their environment and can reach its internal
network. So the admin form checks these rules, and the providers check them again right before every call
(an entry written straight into the database gets no further than one typed into the form).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

# Never lent as an API key, whatever the settings allow: the deployment's own secrets.
DEPLOYMENT_SECRETS = frozenset({"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ARENA_VOTER_SALT", "CELERY_BROKER_URL"})

KEY_NAME_REFUSED = (
    "This environment variable may not be used as an API key here: give one whose name starts with {prefix}"
    " (or one the deployment lists in ARENA_API_KEY_ENVS)."
)
HOST_REFUSED = "This host is not among the model servers the deployment allows (ARENA_ENDPOINT_HOSTS)."
SCHEME_REFUSED = "The base URL must start with http:// or https:// and name a host."
NO_CHECKPOINT = "There is no transformers checkpoint (a readable directory holding config.json) at this path."
OUTSIDE_ROOTS = "Checkpoint directories must lie under {roots}."


def api_key_env_problem(name: str) -> str | None:
    """Why `name` may not be read as an API key (None: it may). An empty name means no key and is fine."""
    if not name:
        return None
    prefix = settings.ARENA_API_KEY_ENV_PREFIX
    allowed = name in settings.ARENA_API_KEY_ENVS or (bool(prefix) and name.startswith(prefix) and name != prefix)
    if allowed and name not in DEPLOYMENT_SECRETS:
        return None
    return KEY_NAME_REFUSED.format(prefix=prefix or "(no prefix is allowed)")


def base_url_problem(url: str) -> str | None:
    """Why the arena may not call `url` (None: it may): http(s) only, and the allowed hosts when some are set."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return SCHEME_REFUSED
    if parts.scheme not in ("http", "https") or not host:
        return SCHEME_REFUSED
    hosts = {h.lower().rstrip(".") for h in settings.ARENA_ENDPOINT_HOSTS}
    if hosts and host.lower().rstrip(".") not in hosts:
        return HOST_REFUSED
    return None


def checkpoint_roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.ARENA_CHECKPOINT_ROOTS]


def checkpoint_path_problem(path: str) -> str | None:
    """Why `path` is not a checkpoint the arena may load (None: it is one).

    Only paths under ARENA_CHECKPOINT_ROOTS are looked at on the disk, and a missing directory, an unreadable one
    and one without config.json get the same text, so that the form cannot be used to explore the server's files."""
    roots = checkpoint_roots()
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        return OUTSIDE_ROOTS.format(roots=", ".join(str(root) for root in roots))
    try:
        if (resolved / "config.json").is_file():
            return None
    except OSError:
        pass
    return NO_CHECKPOINT
