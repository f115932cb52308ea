"""Training a new in-house version from votes: check the pairs, run DPO, write the checkpoint, register a preview.

The order is the contract: everything an operator can get wrong (no pairs, pairs for another model, a malformed
file, bad settings) is checked before training starts and raises `TrainingError`; the checkpoint is written
through the build store (complete or absent, reused when the same parent and pairs are trained again); the new
model entry is registered last, in one transaction. A failure anywhere registers nothing.
"""

from __future__ import annotations

import datetime
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from models_hub.builders.store import checkpoint_build, marker_read
from models_hub.models import ModelEntry

from .dpo import DpoSettings, dpo_train
from .models import TrainingRun
from .pairs import PairsError, PairSet, pair_set, pairs_for_model, pairs_from_votes, pairs_read, pairs_with_system_prompt

Log = Callable[[str], None]

# Codenames for new previews, first unused first; voters see these after a vote, never the version.
CODENAMES = (
    "kestrel", "avocet", "bittern", "curlew", "dunlin", "egret", "fulmar", "godwit", "heron", "ibis", "jacana",
    "kittiwake", "lapwing", "merlin", "nightjar", "osprey", "petrel", "redshank", "shrike", "tern", "warbler",
)  # fmt: skip


class TrainingError(ValueError):
    """A training run that cannot start or did not finish; the message says why, for an operator."""


@dataclass(frozen=True)
class TrainingOptions:
    """What to train on: a pairs file, or the votes (filtered). JSON-serialisable, stored on the TrainingRun."""

    pairs_file: str | None = None
    from_votes: bool = False
    since: str | None = None  # ISO date or date-time
    category: str | None = None
    include_simulated: bool = False
    dpo: dict[str, Any] = field(default_factory=dict)  # DpoSettings fields

    def settings(self) -> DpoSettings:
        try:
            return DpoSettings(**self.dpo)
        except TypeError as exc:
            raise TrainingError(f"Unknown DPO setting: {exc}") from None


def inhouse_current() -> ModelEntry:
    """The in-house version training starts from: the active in-house entry of the highest version, newest first."""
    entry = (
        ModelEntry.objects.filter(is_inhouse=True, is_active=True, provider=ModelEntry.Provider.TRANSFORMERS)
        .order_by("-version", "-created_at")
        .first()
    )
    if entry is None:
        raise TrainingError("There is no active in-house model entry to train (run `manage.py seed_models`).")
    return entry


def _since(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise TrainingError(f"--since {value!r} is not a date (YYYY-MM-DD) or ISO date-time.") from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, datetime.timezone.utc)


def training_pairs(parent: ModelEntry, options: TrainingOptions) -> PairSet:
    """The checked pairs a run of `options` trains `parent` on; raises TrainingError on any bad input."""
    if bool(options.pairs_file) == bool(options.from_votes):
        raise TrainingError("Give either a pairs file or --from-votes, not both and not neither.")
    dpo = options.settings()
    errors = dpo.check()
    if errors:
        raise TrainingError("Bad DPO settings: " + "; ".join(errors) + ".")
    if parent.provider != ModelEntry.Provider.TRANSFORMERS or not parent.checkpoint_path:
        raise TrainingError(f"{parent.display_name} is not a local transformers checkpoint: it cannot be trained here.")
    if not (Path(parent.checkpoint_path) / "config.json").is_file():
        raise TrainingError(f"{parent.display_name}'s checkpoint is missing at {parent.checkpoint_path}.")
    try:
        if options.pairs_file:
            pairs = pairs_read(Path(options.pairs_file))
            mine = pairs_for_model(pairs, parent, source=Path(options.pairs_file).name)
            return pair_set(pairs_with_system_prompt(mine, parent.system_prompt))
        pairs, vote_ids, filters = pairs_from_votes(
            since=_since(options.since), category=options.category, include_simulated=options.include_simulated
        )
        mine = pairs_for_model(pairs, parent, source="the votes")
        kept = {id(pair) for pair in mine}
        mine_ids = [vote_id for vote_id, pair in zip(vote_ids, pairs) if id(pair) in kept]
        return pair_set(pairs_with_system_prompt(mine, parent.system_prompt), mine_ids, filters)
    except PairsError as exc:
        raise TrainingError(str(exc)) from None


def _root(entry: ModelEntry) -> ModelEntry:
    while entry.parent_id is not None:
        entry = entry.parent
    return entry


def _unused(candidates: list[str], field_name: str) -> str:
    for candidate in candidates:
        if not ModelEntry.objects.filter(**{field_name: candidate}).exists():
            return candidate
    raise TrainingError(f"No free {field_name} left among {candidates[:3]}...")


def version_register(
    parent: ModelEntry, *, checkpoint: Path, recipe: dict[str, Any], pairs: PairSet
) -> ModelEntry:
    """A new model entry for the checkpoint trained from `parent`: a preview under a fresh codename, with lineage.

    It inherits the parent's generation settings and pool; an operator publishes it in the admin.
    """
    root = _root(parent)
    version = parent.version + 1
    base_slug = f"{root.slug}-v{version}"[:60]
    slug = _unused([base_slug] + [f"{base_slug}-{n}" for n in range(2, 100)], "slug")
    base_name = f"{root.display_name} v{version}"
    display_name = _unused([base_name] + [f"{base_name}.{n}" for n in range(2, 100)], "display_name")
    codename = _unused(list(CODENAMES) + [f"{name}-{version}" for name in CODENAMES], "codename")
    return ModelEntry.objects.create(
        slug=slug,
        display_name=display_name,
        organization=parent.organization,
        license=parent.license,
        provider=parent.provider,
        checkpoint_path=str(Path(checkpoint).resolve()),
        prompt_format=parent.prompt_format,
        max_new_tokens=parent.max_new_tokens,
        temperature=parent.temperature,
        top_p=parent.top_p,
        system_prompt=parent.system_prompt,
        pool=parent.pool,
        sampling_weight=parent.sampling_weight,
        is_active=True,
        is_inhouse=True,
        visibility=ModelEntry.Visibility.PREVIEW,
        codename=codename,
        version=version,
        parent=parent,
        recipe=recipe,
        training_data_sha256=pairs.sha256,
        training_votes=pairs.votes,
    )


def train_new_version(parent: ModelEntry, options: TrainingOptions, *, log: Log = print) -> ModelEntry:
    """Check, train, write and register (see the module notes). Raises TrainingError; registers nothing then."""
    pairs = training_pairs(parent, options)
    dpo = options.settings()
    log(f"Training {parent.display_name} ({parent.version_label}) on {len(pairs.pairs)} preference pairs")
    parent_marker = marker_read(Path(parent.checkpoint_path)) or {}
    source = {
        "kind": "dpo",
        "parent": parent.slug,
        "parent_source": parent_marker.get("source"),
        "pairs_sha256": pairs.sha256,
        "settings": asdict(dpo),
    }
    target = Path(settings.ARENA_MODELS_DIR) / f"{_root(parent).slug}-dpo-{pairs.sha256[:12]}"
    try:
        result = checkpoint_build(
            target,
            source,
            lambda out: dpo_train(
                checkpoint=Path(parent.checkpoint_path), pairs=pairs.pairs, out=out, settings=dpo, log=log
            ),
            log=log,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise TrainingError(f"Training failed: {exc}") from exc
    registered = ModelEntry.objects.filter(checkpoint_path=str(result.path.resolve())).first()
    if registered is not None:
        log(f"This parent was already trained on these pairs: {registered.display_name} ({registered.codename})")
        return registered
    recipe = {
        **dpo.as_recipe(),
        **{k: result.marker[k] for k in ("dpo_loss_before", "dpo_loss_after", "device") if k in result.marker},
    }
    with transaction.atomic():
        entry = version_register(parent, checkpoint=result.path, recipe=recipe, pairs=pairs)
    log(f"Registered {entry.display_name} as a preview under the codename {entry.codename!r}")
    return entry


def training_run_create(parent: ModelEntry, options: TrainingOptions, *, requested_by: str = "") -> TrainingRun:
    return TrainingRun.objects.create(parent=parent, options=asdict(options), requested_by=requested_by)


def training_run_execute(run_id: int, *, log: Log | None = None) -> TrainingRun | None:
    """Claim a queued run and carry it out, writing its log line by line; None when another worker has it."""
    claimed = TrainingRun.objects.filter(id=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now()
    )
    if claimed != 1:
        return None
    run = TrainingRun.objects.select_related("parent").get(id=run_id)

    def run_log(message: str) -> None:
        if log is not None:
            log(message)
        stamp = timezone.now().strftime("%H:%M:%S")
        TrainingRun.objects.filter(id=run_id).update(log=Concat(F("log"), Value(f"{stamp} {message}\n")))

    try:
        entry = train_new_version(run.parent, TrainingOptions(**run.options), log=run_log)
    except Exception as exc:  # noqa: BLE001 - any failure ends the run failed, with its reason in the admin
        message = str(exc) if isinstance(exc, TrainingError) else f"{type(exc).__name__}: {exc}"
        TrainingRun.objects.filter(id=run_id).update(
            status=TrainingRun.Status.FAILED, error=message, finished_at=timezone.now()
        )
        run_log(f"Failed: {message}")
        if not isinstance(exc, TrainingError):
            run_log(traceback.format_exc())
    else:
        TrainingRun.objects.filter(id=run_id).update(
            status=TrainingRun.Status.DONE, result=entry, finished_at=timezone.now()
        )
    run.refresh_from_db()
    return run


def training_run_queue(parent: ModelEntry, options: TrainingOptions, *, requested_by: str = "") -> TrainingRun:
    """Create a run and hand it to the `training` queue once the row is committed."""
    from inference.dispatch import dispatch

    from .tasks import TRAINING_QUEUE, train_new_version_task

    run = training_run_create(parent, options, requested_by=requested_by)
    transaction.on_commit(lambda: dispatch(train_new_version_task, args=(run.id,), pool=TRAINING_QUEUE))
    return run
