"""The model registry's admin. It lives in inference, not models_hub, because "Test this model" runs a real
generation: imports keep flowing one way (inference -> models_hub)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import csrf_protect_m
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from models_hub.forms import ModelEntryForm
from models_hub.models import BREAKER_FAILURES, ModelEntry

from .services import TEST_PROMPT, model_entry_test


# The verdicts the leaderboard writes into ModelEntry.parent_verdict (ratings.sequential's words; inference reads
# the registry, never the ratings library).
BETTER, WORSE = "better", "worse"


class PromotionOverrideForm(forms.Form):
    reason = forms.CharField(
        max_length=500, strip=True, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this preview is promoted without a verdict that it beats its parent (recorded).",
    )


def promotion_proven(entry: ModelEntry) -> bool:
    """The latest public snapshot's always-valid verdict says the preview beats its parent."""
    return entry.parent_id is not None and entry.parent_verdict.get("verdict") == BETTER


def promotion_verdict_text(entry: ModelEntry) -> str:
    if entry.parent_id is None:
        return "it has no parent to beat"
    verdict = entry.parent_verdict.get("verdict")
    parent = entry.parent.display_name
    if verdict is None:
        return f"no leaderboard snapshot has judged it against its parent {parent} yet"
    if verdict == BETTER:
        return f"the latest leaderboard shows it beats its parent {parent}"
    if verdict == WORSE:
        return f"the latest leaderboard shows it is worse than its parent {parent}"
    return f"the latest leaderboard does not yet show it beats its parent {parent} (verdict: not yet)"


@admin.register(ModelEntry)
class ModelEntryAdmin(admin.ModelAdmin):
    form = ModelEntryForm
    list_display = (
        "display_name", "slug", "organization", "modality", "provider", "pool", "sampling_weight",
        "is_active", "is_inhouse", "visibility", "codename", "breaker", "retired_at",
    )
    list_filter = ("modality", "provider", "pool", "is_active", "is_inhouse", "visibility", "organization")
    search_fields = ("display_name", "slug", "organization", "codename", "remote_model")
    prepopulated_fields = {"slug": ("display_name",)}
    readonly_fields = ("breaker", "parent_verdict_text", "retired_at", "promotion_override")
    actions = ("activate", "deactivate", "promote_preview", "retire", "bring_back", "test_models")
    fieldsets = (
        (None, {"fields": ("display_name", "slug", "organization", "license")}),
        ("Where it runs", {"fields": (
            "modality", "provider", "checkpoint_path", "base_url", "remote_model", "voice", "api_key_env", "pool",
            "languages",
        )}),
        ("Generation", {"fields": ("prompt_format", "max_new_tokens", "temperature", "top_p", "system_prompt")}),
        ("In the arena", {"fields": (
            "is_active", "sampling_weight", "is_inhouse", "visibility", "codename", "breaker", "retired_at",
            "parent_verdict_text", "promotion_override",
        )}),
        ("Sampling", {"fields": (
            "battle_targets", "battle_target_share", "boost_factor", "boost_until_votes", "never_meets",
            "anonymous_excluded",
        )}),
    )
    filter_horizontal = ("battle_targets", "never_meets")

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

    @admin.display(description="Verdict against its parent")
    def parent_verdict_text(self, entry: ModelEntry) -> str:
        return promotion_verdict_text(entry)

    def has_publish_preview_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.publish_preview")

    def has_retire_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retire_modelentry")

    def has_test_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.test_modelentry")

    @admin.action(description="Activate: draw these models into battles", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        count = queryset.filter(retired_at__isnull=True).update(is_active=True)
        self.message_user(request, f"{count} model(s) activated.", messages.SUCCESS)
        if retired := queryset.filter(retired_at__isnull=False).count():
            self.message_user(request, f"{retired} retired model(s) left out: bring them back first.", messages.WARNING)

    @admin.action(description="Deactivate: stop drawing these models", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} model(s) deactivated.", messages.SUCCESS)

    @admin.action(
        description="Promote preview: its real name on the public leaderboard, once it beats its parent",
        permissions=["publish_preview"],
    )
    def promote_preview(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> HttpResponse | None:
        """Publish the previews whose verdict against their parent (latest public snapshot, always-valid) is
        "better". The rest are refused; a holder of override_promotion is asked for a reason on an intermediate
        page, and a promotion with a reason is recorded on the entry and in the admin log."""
        previews = list(queryset.filter(visibility=ModelEntry.Visibility.PREVIEW).select_related("parent"))
        proven = [e for e in previews if promotion_proven(e)]
        unproven = [e for e in previews if not promotion_proven(e)]
        for entry in proven:
            self._promote(request, entry, "Promoted: " + promotion_verdict_text(entry))
        if proven:
            self.message_user(request, f"{len(proven)} preview model(s) promoted.", messages.SUCCESS)
        if not unproven:
            if not previews:
                self.message_user(request, "No preview model was selected.", messages.WARNING)
            return None
        may_override = request.user.has_perm(f"{self.opts.app_label}.override_promotion")
        if "override" in request.POST and may_override:
            form = PromotionOverrideForm(request.POST)
            if form.is_valid():
                reason = form.cleaned_data["reason"]
                for entry in unproven:
                    entry.promotion_override = f"{request.user.get_username()} on {timezone.now():%Y-%m-%d}: {reason}"
                    self._promote(
                        request, entry,
                        f"Promoted without a verdict that it beats its parent ({promotion_verdict_text(entry)}). "
                        f"Reason: {reason}",
                        fields=["visibility", "promotion_override"],
                    )
                self.message_user(
                    request, f"{len(unproven)} preview model(s) promoted by override; the reason is recorded.",
                    messages.WARNING,
                )
                return None
        else:
            form = PromotionOverrideForm()
        for entry in unproven:
            self.message_user(
                request, f"{entry.display_name} ({entry.codename}) was not promoted: {promotion_verdict_text(entry)}.",
                messages.ERROR,
            )
        if not may_override:
            return None
        return TemplateResponse(request, "admin/models_hub/promote_override.html", {
            **self.admin_site.each_context(request),
            "title": "Promote without a verdict?",
            "opts": self.opts,
            "unproven": [(e, promotion_verdict_text(e)) for e in unproven],
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "selected": [str(e.pk) for e in unproven],
        })

    def _promote(self, request: HttpRequest, entry: ModelEntry, message: str, fields: list[str] | None = None) -> None:
        entry.visibility = ModelEntry.Visibility.PUBLIC
        entry.save(update_fields=[*(fields or ["visibility"]), "updated_at"])
        self.log_change(request, entry, message)

    @admin.action(description="Retire: out of battles, listed as retired on the leaderboard", permissions=["retire"])
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        entries = list(queryset.filter(retired_at__isnull=True))
        now = timezone.now()
        for entry in entries:
            entry.retired_at, entry.is_active = now, False
            entry.save(update_fields=["retired_at", "is_active", "updated_at"])
            self.log_change(request, entry, f"Retired on {now:%Y-%m-%d}.")
        self.message_user(request, f"{len(entries)} model(s) retired.", messages.SUCCESS)

    @admin.action(description="Bring back: un-retire and draw into battles again", permissions=["retire"])
    def bring_back(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        entries = list(queryset.filter(retired_at__isnull=False))
        for entry in entries:
            entry.retired_at, entry.is_active = None, True
            entry.save(update_fields=["retired_at", "is_active", "updated_at"])
            self.log_change(request, entry, "Brought back from retirement.")
        self.message_user(request, f"{len(entries)} model(s) brought back.", messages.SUCCESS)

    @admin.action(description="Test: ask each one short question now", permissions=["test"])
    def test_models(self, request: HttpRequest, queryset: QuerySet[ModelEntry]) -> None:
        if queryset.count() > 10:
            self.message_user(request, "Only the first 10 selected models were tested.", messages.WARNING)
        for entry in queryset[:10]:
            outcome = model_entry_test(entry, user=request.user)
            level = messages.SUCCESS if outcome.answered else messages.ERROR
            verdict = "answered" if outcome.answered else "failed"
            self.message_user(request, f"{entry.display_name}: {verdict}: {outcome.text}", level)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None) -> HttpResponse:
        # The "Test this model" button only for those whom _test_form lets through.
        may_edit = self.has_add_permission(request) if add else self.has_change_permission(request, obj)
        if may_edit and self.has_test_permission(request):
            context["media"] = context["media"] + forms.Media(js=["models_hub/admin-test.js"])
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

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
        if not self.has_test_permission(request):
            raise PermissionDenied
        if not add and obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        fieldsets = self.get_fieldsets(request, obj)
        ModelForm = self.get_form(request, obj, change=not add, fields=flatten_fieldsets(fieldsets))
        form = ModelForm(request.POST, request.FILES, instance=obj)
        if form.is_valid():
            entry = form.save(commit=False)
            outcome = model_entry_test(entry, user=request.user)
            if outcome.answered:
                self.message_user(
                    request, f"The model answered “{TEST_PROMPT}”: {outcome.text}. Nothing was saved yet.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, f"The test failed: {outcome.text} Nothing was saved.", messages.ERROR)
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
