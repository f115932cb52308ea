from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .forms import ModelEntryForm
from .models import ModelEntry


@admin.register(ModelEntry)
class ModelEntryAdmin(admin.ModelAdmin):
    form = ModelEntryForm
    list_display = (
        "display_name", "slug", "organization", "provider", "pool", "sampling_weight",
        "is_active", "is_inhouse", "visibility", "codename",
    )
    list_filter = ("provider", "pool", "is_active", "is_inhouse", "visibility", "organization")
    search_fields = ("display_name", "slug", "organization", "codename", "remote_model")
    prepopulated_fields = {"slug": ("display_name",)}
    actions = ("activate", "deactivate", "publish_preview")
    fieldsets = (
        (None, {"fields": ("display_name", "slug", "organization", "license")}),
        ("Where it runs", {"fields": ("provider", "checkpoint_path", "base_url", "remote_model", "api_key_env", "pool")}),
        ("Generation", {"fields": ("prompt_format", "max_new_tokens", "temperature", "top_p", "system_prompt")}),
        ("In the arena", {"fields": ("is_active", "sampling_weight", "is_inhouse", "visibility", "codename")}),
    )

    @admin.action(description="Activate: draw these models into battles")
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        count = queryset.update(is_active=True)
        self.message_user(request, f"{count} model(s) activated.", messages.SUCCESS)

    @admin.action(description="Deactivate: stop drawing these models")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} model(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Publish preview: show the real name on the public leaderboard")
    def publish_preview(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        count = queryset.filter(visibility=ModelEntry.Visibility.PREVIEW).update(
            visibility=ModelEntry.Visibility.PUBLIC
        )
        self.message_user(request, f"{count} preview model(s) published.", messages.SUCCESS)
