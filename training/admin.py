from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from inference.admin import ModelEntryAdmin
from models_hub.models import ModelEntry

from .models import TrainingRun
from .services import TrainingError, TrainingOptions, training_pairs, training_run_queue


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "parent", "status", "result", "requested_by", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in TrainingRun._meta.fields]

    def has_add_permission(self, request) -> bool:  # started from the model entries' action
        return False


@admin.action(description="Train a new version from votes", permissions=["train_from_votes"])
def train_from_votes(modeladmin: ModelEntryAdmin, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
    """Queue one DPO run per selected in-house model on the `training` queue; status and log under Training runs."""
    options = TrainingOptions(from_votes=True)
    for entry in queryset:
        if not entry.is_inhouse:
            modeladmin.message_user(request, f"{entry}: only in-house models are trained here.", messages.ERROR)
            continue
        try:
            training_pairs(entry, options)
        except TrainingError as exc:
            modeladmin.message_user(request, f"{entry}: {exc}", messages.ERROR)
            continue
        run = training_run_queue(entry, options, requested_by=request.user.get_username())
        modeladmin.message_user(
            request, f"{entry}: training run {run.pk} queued; follow it under Training runs.", messages.SUCCESS
        )


def has_train_from_votes_permission(modeladmin: ModelEntryAdmin, request: HttpRequest) -> bool:
    return request.user.has_perm("training.train_from_votes")


# The action lives here, not in inference, so that imports keep flowing one way (training -> inference).
ModelEntryAdmin.actions = (*ModelEntryAdmin.actions, train_from_votes)
ModelEntryAdmin.has_train_from_votes_permission = has_train_from_votes_permission
