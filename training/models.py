"""A training run: one DPO run of an in-house version on preference pairs, with its status and log."""

from __future__ import annotations

from django.db import models

from models_hub.models import ModelEntry


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    parent = models.ForeignKey(ModelEntry, on_delete=models.PROTECT, related_name="training_runs")
    result = models.ForeignKey(
        ModelEntry, null=True, blank=True, on_delete=models.SET_NULL, related_name="trained_by",
        help_text="The new version this run registered.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # What to train on and how: the `TrainingOptions` of training.services, as JSON.
    options = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("train_from_votes", "Can queue a training run from the votes")]

    def __str__(self) -> str:
        return f"Training run {self.pk} of {self.parent} ({self.status})"
