"""The `training` queue: a worker started with `-Q training` (on a GPU host, or a spare CPU one) runs DPO jobs."""

from __future__ import annotations

from celery import shared_task

from .services import training_run_execute

TRAINING_QUEUE = "training"


# No retry and no late ack: a training run is long and writes a new version; a lost worker leaves the run
# "running" with its log for an operator to look at, rather than training twice.
# The queue is chosen by the caller (inference.dispatch, pool TRAINING_QUEUE).
@shared_task(name="training.train_new_version", acks_late=False, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def train_new_version_task(run_id: int) -> None:
    training_run_execute(run_id)
