"""Leaderboard pages and exports. Every one reads the latest snapshot; none fits anything."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ratings import best_of_versions, provisional, sequential_head_to_head

from .exports import (
    battle_records,
    battles_csv,
    battles_jsonl,
    preference_pairs,
    rankings_csv,
    rankings_filename,
)
from .selectors import fresh_votes_count, lineage_roots
from .snapshots import (
    VOTES_NEEDED_CAP,
    Board,
    board_categories,
    board_head_to_head,
    board_plots,
    board_retired,
    board_trust,
    leaderboard_board,
    leaderboard_latest,
)


EXPORT_PERMISSION = "leaderboard.export_battles"


def export_permitted(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous visitors are sent to log in; a logged-in user without the export permission gets a 403, staff
    or not (a superuser has every permission)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url="/admin/login/")
        if not request.user.has_perm(EXPORT_PERMISSION):
            return HttpResponseForbidden("Exports need the permission to export battles.")
        return view(request, *args, **kwargs)

    return wrapped


def _params(request: HttpRequest) -> tuple[str, bool]:
    category = request.GET.get("category") or "overall"
    style = request.GET.get("style") in ("1", "true", "on")
    return category[:64], style


def _which_board(request: HttpRequest) -> str:
    """``?board=simulated``: the simulated voters' board, for staff only (anyone else finds no such page);
    ``?board=demo``: the sample battles' demo board (leaderboard.demo), public."""
    board = request.GET.get("board") or "public"
    if board in ("public", "demo"):
        return board
    if board == "simulated" and request.user.is_staff:
        return board
    raise Http404("No such leaderboard.")


def _board(request: HttpRequest) -> tuple[Board | None, dict]:
    category, style = _params(request)
    which = _which_board(request)
    snapshot = leaderboard_latest(which)
    staff = request.user.is_staff
    board = None
    if snapshot is not None:
        board = leaderboard_board(snapshot, category=category, style=style, staff=staff)
        if board is None:  # an unknown category (or one a newer snapshot dropped) falls back to overall
            category = "overall"
            board = leaderboard_board(snapshot, category=category, style=style, staff=staff)
    context = {
        "snapshot": snapshot, "board": board, "category": category, "style": style,
        "categories": board_categories(snapshot) if snapshot else [],
        "styled_available": bool(snapshot and snapshot.payload["categories"].get(category, {}).get("style_covariance")),
        "trust": board_trust(board) if board is not None else None,
        "retired": board_retired(board) if board is not None else [],
        "nav": "leaderboard", "which_board": which, "board_query": f"&board={which}" if which != "public" else "",
        # An empty public board points a newcomer at the demo board, where one was loaded.
        "demo_available": which == "public" and not (board and board.rows) and leaderboard_latest("demo") is not None,
    }
    return board, context


@require_GET
@never_cache
def leaderboard_page(request: HttpRequest) -> HttpResponse:
    board, context = _board(request)
    context["plots"] = board_plots(board) if board is not None else None
    return render(request, "leaderboard/leaderboard.html", context)


@require_GET
@never_cache
def leaderboard_data(request: HttpRequest) -> JsonResponse:
    """What the page's script swaps in on a category change or a live update: the table and the plot data."""
    board, context = _board(request)
    return JsonResponse({
        "snapshot": None if context["snapshot"] is None else {
            "id": context["snapshot"].pk, "votes_used": context["snapshot"].votes_used,
            "created_at": context["snapshot"].created_at.isoformat(),
        },
        "category": context["category"],
        "style": context["style"],
        "table_html": render_to_string("leaderboard/leaderboard_table.html", context, request=request),
        "plots": board_plots(board) if board is not None else None,
    })


def _with_decisions(board: Board, comparisons: list[dict], *, simulated: bool) -> list[dict]:
    """Each comparison of ``board_head_to_head`` with the always-valid answer beside the usual one: the confidence
    sequence's interval, its verdict and the votes it still needs (ratings.sequential), and whether the in-house
    model is still provisional (too few votes since its last sibling entered)."""
    ranking = board.ranking
    inhouse = [i for i, e in enumerate(board.entries) if e.is_inhouse]
    for i, comparison in zip(inhouse, comparisons):
        entry = board.entries[i]
        fresh = fresh_votes_count(entry, simulated=simulated)
        comparison["fresh_votes"] = fresh
        comparison["provisional"] = bool(provisional(fresh, fresh_votes=settings.ARENA_PROVISIONAL_VOTES))
        rivals = [row["index"] for row in board.rows if row["index"] != i]
        for j, rival in zip(rivals, comparison["rivals"]):
            s = sequential_head_to_head(
                ranking, ranking.names[i], ranking.names[j],
                alpha=settings.ARENA_DECISION_ALPHA, tuned_votes=settings.ARENA_DECISION_TUNED_VOTES,
            )
            needed = s.votes_needed
            rival.update({
                "verdict": s.verdict, "sequence_lower": s.lower, "sequence_upper": s.upper,
                "sequence_votes_needed": None if needed is None or needed > VOTES_NEEDED_CAP else needed,
                "sequence_votes_beyond_cap": needed is not None and needed > VOTES_NEEDED_CAP,
            })
    return comparisons


def _best_of_teams(board: Board) -> list[dict]:
    """For each lineage with two or more in-house versions on the board: "the best of K versions vs X" for every
    other model (their non-in-house ancestors included), judged with simultaneous sequences at alpha / K (ratings.best_of_versions)."""
    if board.ranking is None:
        return []
    roots = lineage_roots(board.entries)
    teams: dict[int, list[int]] = {}
    for i, e in enumerate(board.entries):
        if e.is_inhouse:
            teams.setdefault(roots[e.pk], []).append(i)
    out = []
    for root, members in teams.items():
        if len(members) < 2:
            continue
        label = {r["index"]: r["name"] for r in board.rows}  # what this viewer may see each model called
        names = [board.ranking.names[i] for i in members]
        lines = []
        for row in board.rows:
            if row["index"] in members:
                continue
            b = best_of_versions(
                board.ranking, names, board.ranking.names[row["index"]],
                alpha=settings.ARENA_DECISION_ALPHA, tuned_votes=settings.ARENA_DECISION_TUNED_VOTES,
            )
            lines.append({"rival": row["name"], "verdict": b.verdict, "best": label[board.ranking.index(b.best)]})
        out.append({"versions": [label[i] for i in members], "k": len(members), "lines": lines})
    return out


@require_GET
@never_cache
def head_to_head_page(request: HttpRequest) -> HttpResponse:
    board, context = _board(request)
    comparisons = board_head_to_head(board) if board is not None else []
    if comparisons:
        comparisons = _with_decisions(board, comparisons, simulated=context["which_board"] == "simulated")
    context["comparisons"] = comparisons
    context["teams"] = _best_of_teams(board) if board is not None else []
    context["votes_needed_cap"] = f"{VOTES_NEEDED_CAP:,}"
    context["decision_level"] = f"{1 - settings.ARENA_DECISION_ALPHA:.0%}"
    context["provisional_votes"] = f"{settings.ARENA_PROVISIONAL_VOTES:,}"
    return render(request, "leaderboard/head_to_head.html", context)


@require_GET
@never_cache
def rankings_csv_view(request: HttpRequest) -> HttpResponse:
    category, style = _params(request)
    snapshot = leaderboard_latest(_which_board(request))
    text = None if snapshot is None else rankings_csv(snapshot, category=category, style=style, staff=request.user.is_staff)
    if text is None:
        return HttpResponse("No leaderboard for that category yet.", status=404, content_type="text/plain")
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{rankings_filename(snapshot, category, style)}"'
    return response


def _flagged(request: HttpRequest) -> bool:
    """``?flagged=1`` keeps battles whose prompts the moderation blocklist flags (left out by default)."""
    return request.GET.get("flagged") in ("1", "true", "on")


def _download(chunks, filename: str, content_type: str) -> HttpResponse:
    # Built in full: under ASGI Django buffers a synchronous streaming body anyway. The command streams.
    response = HttpResponse("".join(chunks), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
@never_cache
@export_permitted
def export_battles_jsonl(request: HttpRequest) -> HttpResponse:
    return _download(battles_jsonl(battle_records(include_flagged=_flagged(request))), "battles.jsonl", "application/x-ndjson; charset=utf-8")


@require_GET
@never_cache
@export_permitted
def export_battles_csv(request: HttpRequest) -> HttpResponse:
    return _download(battles_csv(battle_records(include_flagged=_flagged(request))), "battles.csv", "text/csv; charset=utf-8")


@require_GET
@never_cache
@export_permitted
def export_preferences(request: HttpRequest) -> HttpResponse:
    style = "plain" if request.GET.get("format") == "plain" else "messages"
    return _download(
        preference_pairs(battle_records(include_flagged=_flagged(request)), style=style), f"preferences-{style}.jsonl", "application/x-ndjson; charset=utf-8"
    )
