"""The model registry's admin. It lives in inference, not models_hub, because "Test this model" runs a real
generation: imports keep flowing one way (inference -> models_hub)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import csrf_protect_m
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from models_hub.forms import ModelEntryForm
from models_hub.models import BREAKER_FAILURES, ModelEntry, breaker_record

from . import GenerationError, generate

TEST_PROMPT = "Say hello in one short sentence."
TEST_MAX_NEW_TOKENS = 32


def model_entry_test(entry: ModelEntry) -> tuple[bool, str]:
    """Run one short generation with `entry` (saved or not) here and now: (answered, the answer or the error).

    The operator sees more than a voter would: the error's cause is added to the voter-safe message."""
    entry.max_new_tokens = min(entry.max_new_tokens or TEST_MAX_NEW_TOKENS, TEST_MAX_NEW_TOKENS)
    try:
        result = generate(entry, [{"role": "user", "content": TEST_PROMPT}])
    except GenerationError as exc:
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return False, f"{exc}{detail}"[:1000]
    if entry.pk:
        breaker_record(entry.pk, ok=True)
    text = result.text.strip() or "(an empty answer)"
    return True, f"{text[:500]} [{result.output_tokens or '?'} tokens, ended by {result.finish_reason}]"


@admin.register(ModelEntry)
class ModelEntryAdmin(admin.ModelAdmin):
    form = ModelEntryForm
    list_display = (
        "display_name", "slug", "organization", "modality", "provider", "pool", "sampling_weight",
        "is_active", "is_inhouse", "visibility", "codename", "breaker",
    )
    list_filter = ("modality", "provider", "pool", "is_active", "is_inhouse", "visibility", "organization")
    search_fields = ("display_name", "slug", "organization", "codename", "remote_model")
    prepopulated_fields = {"slug": ("display_name",)}
    readonly_fields = ("breaker",)
    actions = ("activate", "deactivate", "publish_preview", "test_models")
    fieldsets = (
        (None, {"fields": ("display_name", "slug", "organization", "license")}),
        ("Where it runs", {"fields": (
            "modality", "provider", "checkpoint_path", "base_url", "remote_model", "voice", "api_key_env", "pool",
            "languages",
        )}),
        ("Generation", {"fields": ("prompt_format", "max_new_tokens", "temperature", "top_p", "system_prompt")}),
        ("In the arena", {"fields": ("is_active", "sampling_weight", "is_inhouse", "visibility", "codename", "breaker")}),
    )

    class Media:
        js = ("models_hub/admin.js",)

    @admin.display(description="Circuit breaker")
    def breaker(self, entry: ModelEntry) -> str:
        if entry.pk is None:
            return "closed"
        failures = entry.failures_in_row
        if entry.breaker_is_open():
            until = timezone.localtime(entry.breaker_open_until).strftime("%H:%M:%S")
            return f"open until {until}: {failures} failed turns in a row, not drawn into battles"
        if failures >= BREAKER_FAILURES:
            return f"half open: {failures} failed turns in a row; the next failure opens it again"
        if failures:
            return f"closed ({failures} failed turn{'s' if failures > 1 else ''} in a row)"
        return "closed"

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

    @admin.action(description="Test: ask each one short question now")
    def test_models(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        if queryset.count() > 10:
            self.message_user(request, "Only the first 10 selected models were tested.", messages.WARNING)
        for entry in queryset[:10]:
            answered, text = model_entry_test(entry)
            level = messages.SUCCESS if answered else messages.ERROR
            self.message_user(request, f"{entry.display_name}: {'answered' if answered else 'failed'}: {text}", level)

    @csrf_protect_m
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None) -> HttpResponse:
        if request.method == "POST" and "_test" in request.POST:
            return self._test_form(request, object_id, form_url)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _test_form(self, request: HttpRequest, object_id: str | None, form_url: str) -> HttpResponse:
        """"Test this model" on the add or change form: run one short generation with the values as typed, save
        nothing, and show the form again with the answer or the error."""
        add = object_id is None
        obj = None if add else self.get_object(request, unquote(object_id))
        if (add and not self.has_add_permission(request)) or (not add and not self.has_change_permission(request, obj)):
            raise PermissionDenied
        if not add and obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        fieldsets = self.get_fieldsets(request, obj)
        ModelForm = self.get_form(request, obj, change=not add, fields=flatten_fieldsets(fieldsets))
        form = ModelForm(request.POST, request.FILES, instance=obj)
        if form.is_valid():
            entry = form.save(commit=False)
            answered, text = model_entry_test(entry)
            if answered:
                self.message_user(request, f"The model answered “{TEST_PROMPT}”: {text}. Nothing was saved yet.", messages.SUCCESS)
            else:
                self.message_user(request, f"The test failed: {text}. Nothing was saved.", messages.ERROR)
        else:
            self.message_user(request, "Correct the errors below, then test again.", messages.ERROR)
        admin_form = helpers.AdminForm(
            form, list(fieldsets), self.get_prepopulated_fields(request, obj), self.get_readonly_fields(request, obj),
            model_admin=self,
        )
        context = {
            **self.admin_site.each_context(request),
            "title": ("Add %s" if add else "Change %s") % self.opts.verbose_name,
            "subtitle": str(obj) if obj else None,
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
        }
        return self.render_change_form(request, context, add=add, change=not add, obj=obj, form_url=form_url)
