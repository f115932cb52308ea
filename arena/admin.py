"""Battles, turns and votes are records of what happened: the admin shows them and changes nothing."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import Battle, Side, Turn, Vote


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class SideInline(admin.TabularInline):
    model = Side
    extra = 0
    can_delete = False
    fields = ("position", "model")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Battle)
class BattleAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "mode", "created_at", "categories")
    list_filter = ("mode", "created_at")
    search_fields = ("public_id",)
    inlines = (SideInline,)


@admin.register(Turn)
class TurnAdmin(ReadOnlyAdmin):
    list_display = ("side", "index", "status", "output_tokens", "time_to_first_token", "tokens_per_second")
    list_filter = ("status", "side__model")
    search_fields = ("side__battle__public_id", "prompt")


@admin.register(Vote)
class VoteAdmin(ReadOnlyAdmin):
    list_display = ("battle", "choice", "identity_leak", "created_at")
    list_filter = ("choice", "identity_leak", "battle__mode")
    search_fields = ("battle__public_id",)
