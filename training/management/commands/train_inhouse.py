"""manage.py train_inhouse: DPO on the current in-house version from preference pairs, registered as a preview."""

from __future__ import annotations

from dataclasses import fields

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_hub.models import ModelEntry
from training.dpo import DpoSettings
from training.services import TrainingError, TrainingOptions, inhouse_current, train_new_version, training_pairs


class Command(BaseCommand):
    help = (
        "Train a new version of the in-house model with TRL's DPO trainer on preference pairs (a file written by "
        "`export_battles OUT --user NAME --format preferences --with-models`, or --from-votes straight from the database) "
        "and register it as a preview under a new codename. Bad input fails before any training."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--pairs", help="A JSON-lines file of preference pairs that name their models.")
        source.add_argument("--from-votes", action="store_true", help="Read the pairs from the arena's votes.")
        parser.add_argument("--since", help="With --from-votes: only votes from this date (YYYY-MM-DD) on.")
        parser.add_argument("--category", help="With --from-votes: only battles of this category (e.g. coding).")
        parser.add_argument(
            "--include-simulated", action="store_true", help="With --from-votes: include simulated voters' votes."
        )
        parser.add_argument("--model", help="Slug of the version to train (default: the current in-house version).")
        defaults = DpoSettings()
        parser.add_argument("--steps", type=int, default=defaults.steps)
        parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
        parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
        parser.add_argument("--beta", type=float, default=defaults.beta, help="DPO's beta (KL strength).")
        parser.add_argument("--max-length", type=int, default=defaults.max_length, help="Tokens per pair, at most.")
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=defaults.device)

    def handle(self, *args: object, **options: object) -> None:
        if not options["from_votes"] and (options["since"] or options["category"] or options["include_simulated"]):
            raise CommandError("--since, --category and --include-simulated filter votes: use them with --from-votes.")
        dpo = {f.name: options[f.name] for f in fields(DpoSettings) if f.name in options}
        training = TrainingOptions(
            pairs_file=options["pairs"],
            from_votes=bool(options["from_votes"]),
            since=options["since"],
            category=options["category"],
            include_simulated=bool(options["include_simulated"]),
            dpo=dpo,
        )
        try:
            if options["model"]:
                parent = ModelEntry.objects.filter(slug=options["model"]).first()
                if parent is None:
                    raise TrainingError(f"No model entry with the slug {options['model']!r}.")
            else:
                parent = inhouse_current()
            training_pairs(parent, training)  # every input check, before anything slow happens
            entry = train_new_version(parent, training, log=self.stdout.write)
        except TrainingError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{entry.display_name} ({entry.version_label}) registered as a preview, codename {entry.codename!r}, "
                f"checkpoint {entry.checkpoint_path}. Publish it in the admin when it has earned it."
            )
        )
