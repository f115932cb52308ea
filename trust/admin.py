"""Staff's view of trust: flagged voters with their reasons (clear or confirm them), the latest snapshot's
note on how far the flagged votes would move each score, proofs of work and refused prompts (read-only)."""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from models_hub.models import ModelEntry

from .models import ModerationRefusal, SessionProof, VoterRisk
from .risk import risk_review


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _review(state: str, done: str):
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[VoterRisk]) -> None:
        for record in queryset:
            risk_review(record, state=state, by=request.user.get_username())
        modeladmin.message_user(
            request, f"{queryset.count()} voter(s) {done}. The next leaderboard snapshot counts their votes accordingly.",
            messages.SUCCESS,
        )
    return action


@admin.register(VoterRisk)
class VoterRiskAdmin(admin.ModelAdmin):
    list_display = ("kind", "short_key", "state", "score", "votes", "main_reason", "computed_at", "reviewed_by")
    list_filter = ("state", "kind")
    search_fields = ("key",)
    readonly_fields = ("kind", "key", "state", "score", "votes", "reasons_list", "features", "first_flagged_at",
                       "computed_at", "reviewed_by", "reviewed_at")
    fields = readonly_fields
    actions = ["clear", "confirm", "flag_again"]
    change_list_template = "admin/trust/voterrisk/change_list.html"

    clear = admin.action(description="Clear: count these voters' votes", permissions=["review"])(
        _review(VoterRisk.State.CLEARED, "cleared"))
    confirm = admin.action(description="Confirm: leave these voters' votes out", permissions=["review"])(
        _review(VoterRisk.State.CONFIRMED, "confirmed"))
    flag_again = admin.action(description="Undo the review: back to flagged", permissions=["review"])(
        _review(VoterRisk.State.FLAGGED, "put back to flagged"))

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("trust.review_voterrisk")

    @admin.display(description="voter")
    def short_key(self, obj: VoterRisk) -> str:
        return obj.key[:16] + "…"

    @admin.display(description="strongest reason")
    def main_reason(self, obj: VoterRisk) -> str:
        return obj.reasons[0]["text"] if obj.reasons else ""

    @admin.display(description="reasons")
    def reasons_list(self, obj: VoterRisk) -> str:
        return format_html("<ul>{}</ul>", format_html_join(
            "", "<li><b>{}</b> (evidence {}): {}</li>", ((r["detector"], r["evidence"], r["text"]) for r in obj.reasons)
        ))

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = (extra_context or {}) | {"trust_note": _latest_note()}
        return super().changelist_view(request, extra_context=extra_context)


def _latest_note() -> dict | None:
    snapshot = apps.get_model("leaderboard", "LeaderboardSnapshot").objects.order_by("-id").first()
    note = snapshot.payload.get("trust") if snapshot is not None else None
    if not note:
        return None
    names = {e.pk: str(e.display_name) for e in ModelEntry.objects.filter(pk__in=[s["model_id"] for s in note["shift"]])}
    shift = [s | {"name": names.get(s["model_id"], f"#{s['model_id']}"),
                  "outside": not (s["lower"] <= s["with_flagged"] <= s["upper"])} for s in note["shift"]]
    return note | {"shift": shift, "snapshot": snapshot}


@admin.register(SessionProof)
class SessionProofAdmin(_ReadOnly):
    list_display = ("session_key", "bits", "created_at")


@admin.register(ModerationRefusal)
class ModerationRefusalAdmin(_ReadOnly):
    list_display = ("created_at", "source", "categories", "prompt")
    list_filter = ("source",)
    search_fields = ("prompt",)
