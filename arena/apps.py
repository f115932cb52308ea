from __future__ import annotations

from django.apps import AppConfig


class ArenaConfig(AppConfig):
    name = "arena"
    verbose_name = "Arena"

    def ready(self) -> None:
        # The receivers every vote saved through the ORM needs, whatever the process imports: the simulated mark
        # (arena.simulated) and the vote's fact row (arena.facts).
        from . import facts, simulated  # noqa: F401
