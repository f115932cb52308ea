"""manage.py check_voices: measure how well each active voice reading English is understood, for the voice board."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from models_hub.models import ModelEntry
from speech.intelligibility import voice_check_record


class Command(BaseCommand):
    help = (
        "Read the English example texts with every active speech model that reads English, transcribe them with the"
        " offline recogniser and store each voice's word error rate (shown on the voice board)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("slugs", nargs="*", help="Only these voices (default: every active speech model).")

    def handle(self, *args: object, slugs: list[str], **options: object) -> None:
        entries = ModelEntry.objects.filter(modality="speech", is_active=True)
        if slugs:
            entries = entries.filter(slug__in=slugs)
        for entry in entries.order_by("slug"):
            check = voice_check_record(entry)
            if check is None:
                self.stdout.write(f"{entry.slug}: reads no English, not checked")
            else:
                self.stdout.write(f"{entry.slug}: word error rate {check.word_error_rate:.3f} over {check.words} words")
