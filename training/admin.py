from __future__ import annotations

from django.contrib import admin

from .models import TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "parent", "status", "result", "requested_by", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in TrainingRun._meta.fields]

    def has_add_permission(self, request) -> bool:  # started from the model entries' action
        return False
