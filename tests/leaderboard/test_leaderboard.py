"""Leaderboard snapshots on the real PostgreSQL: what they count, that they match the ratings library, that two
jobs at once leave one consistent snapshot, what the public and staff see, and the live update over Redis."""

from __future__ import annotations

import datetime
import random
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from leaderboard import snapshots as leaderboard
from arena.categories import battle_categories
from leaderboard.snapshots import leaderboard_board, leaderboard_snapshot_create
from arena.models import Battle, Side, Turn, Vote
from leaderboard.models import LeaderboardSnapshot
from ratings import rate, style_counts
from models_hub.models import ModelEntry

OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5, "bothbad": 0.5}
PROMPTS = [
    "What is the capital of France?",
    "Write a python function that reverses a list.",
    "Erkläre mir bitte, wie ein Regenbogen entsteht und was das mit Licht zu tun hat.",
    "Tell me a long story about a lighthouse keeper. " * 14,
    "How do I fix this bug?\n```js\nconst x = () => { return y; };\n```",
]
ANSWERS = [
    "Paris.",
    "Sure.\n\n- one\n- two\n- three",
    "## Answer\n\n**Short:** it depends.\n\n1. first\n2. second",
    "A fairly plain answer with a handful of words in it and nothing else at all.",
    "# Title\n\n**bold** and __bold__ with\n\n* a\n* b\n\n```python\n# not a header\n```",
]


@dataclass
class Spec:
    left: ModelEntry
    right: ModelEntry
    choice: str
    prompts: list[str]
    answers_left: list[str]
    answers_right: list[str]
    mode: str = "anonymous"
    leak: bool = False
    failed: bool = False
    session_key: str = "voter"
    categories: list[str] = field(default_factory=list)


def model(slug: str, **fields) -> ModelEntry:
    defaults = dict(display_name=fields.pop("display_name", slug.replace("-", " ").title()),
                    organization=fields.pop("organization", f"Org {slug}"), license="Apache-2.0")
    return ModelEntry.objects.create(slug=slug, **(defaults | fields))


def record(spec: Spec) -> Battle:
    """Store a battle the way the arena records it: a battle, two sides, their turns and the vote."""
    battle = Battle.objects.create(mode=spec.mode, session_key=spec.session_key,
                                   categories=battle_categories(spec.prompts))
    spec.categories = battle.categories
    for position, entry, answers in (("left", spec.left, spec.answers_left), ("right", spec.right, spec.answers_right)):
        side = Side.objects.create(battle=battle, position=position, model=entry)
        for i, (prompt, answer) in enumerate(zip(spec.prompts, answers)):
            status = "failed" if spec.failed and position == "right" and i == len(answers) - 1 else "done"
            Turn.objects.create(side=side, index=i, prompt=prompt, response=answer if status == "done" else "",
                                status=status)
    if not spec.failed:
        Vote.objects.create(battle=battle, choice=spec.choice, session_key=spec.session_key, identity_leak=spec.leak)
    else:
        # A battle with a failed side cannot be voted through the service; one such vote still must not count.
        Vote.objects.create(battle=battle, choice=spec.choice, session_key=spec.session_key)
    return battle


def simulate(models: list[ModelEntry], n: int, *, seed: int = 7, strengths: list[float] | None = None) -> list[Spec]:
    """n battles between random pairs, won according to latent strengths, with varied prompts and answers."""
    rng = random.Random(seed)
    strengths = strengths or [0.4 * i for i in range(len(models))]
    specs = []
    for k in range(n):
        i, j = rng.sample(range(len(models)), 2)
        p = 1 / (1 + 10 ** ((strengths[j] - strengths[i]) / 1.5))
        u = rng.random()
        choice = "tie" if u < 0.12 else "bothbad" if u < 0.16 else ("left" if rng.random() < p else "right")
        turns = 2 if k % 7 == 0 else 1
        prompts = [rng.choice(PROMPTS) for _ in range(turns)]
        specs.append(Spec(models[i], models[j], choice, prompts,
                          [rng.choice(ANSWERS) for _ in range(turns)], [rng.choice(ANSWERS) for _ in range(turns)],
                          session_key=f"voter-{rng.randrange(40)}"))
    return specs


def library_ranking(specs: list[Spec], models: list[ModelEntry], *, style: bool = True):
    """The ratings library run directly on the specs, with no database in between."""
    index = {m.pk: i for i, m in enumerate(models)}
    a = np.array([index[s.left.pk] for s in specs])
    b = np.array([index[s.right.pk] for s in specs])
    y = np.array([OUTCOME[s.choice] for s in specs])
    st = np.array([[np.sum([style_counts(t) for t in s.answers_left], axis=0),
                    np.sum([style_counts(t) for t in s.answers_right], axis=0)] for s in specs])
    return rate(a, b, y, [str(m.pk) for m in models], style=st if style else None)


@pytest.fixture
def five(db) -> list[ModelEntry]:
    return [model(f"model-{c}") for c in "abcde"]


def scores_by_id(snapshot: LeaderboardSnapshot, category: str = "overall", key: str = "score") -> dict[int, float]:
    return {r["model_id"]: r[key] for r in snapshot.payload["categories"][category]["models"]}


def test_it_matches_the_ratings_library_on_recorded_votes(five):
    specs = simulate(five, 400)
    for spec in specs:
        record(spec)
    snapshot = leaderboard_snapshot_create()
    expected = library_ranking(specs, five)
    assert snapshot.votes_used == 400
    rows = {r["model_id"]: r for r in snapshot.payload["categories"]["overall"]["models"]}
    for i, m in enumerate(five):
        row = rows[m.pk]
        assert row["score"] == pytest.approx(expected.scores[i], abs=1e-6)
        assert row["lower"] == pytest.approx(expected.lower[i], abs=1e-6)
        assert row["upper"] == pytest.approx(expected.upper[i], abs=1e-6)
        assert row["rank"] == expected.rank[i]
        assert row["votes"] == expected.votes[i]
        assert row["style_score"] == pytest.approx(expected.style_scores[i], abs=1e-6)
        assert row["style_upper"] == pytest.approx(expected.style_upper[i], abs=1e-6)
    # Per category: the library on exactly the battles tagged with it.
    coding = [s for s in specs if "coding" in s.categories]
    assert 0 < len(coding) < len(specs)
    expected_coding = library_ranking(coding, five)
    got = scores_by_id(snapshot, "coding")
    assert got == pytest.approx({m.pk: expected_coding.scores[i] for i, m in enumerate(five)}, abs=1e-6)
    assert {"overall", "coding", "long_prompt", "multi_turn", "lang:en", "lang:de"} <= set(snapshot.payload["categories"])
    cat = snapshot.payload["categories"]["overall"]
    order = [r["model_id"] for r in cat["models"]]
    pair = {(s.left.pk, s.right.pk) for s in specs} | {(s.right.pk, s.left.pk) for s in specs}
    n01 = sum(1 for s in specs if {s.left.pk, s.right.pk} == {order[0], order[1]})
    assert cat["pair_battles"][0][1] == n01 and (order[0], order[1]) in pair
    assert snapshot.payload["votes_over_time"][0][1] == 400


def test_it_leaves_out_named_identity_leak_and_failed_side_votes(five):
    specs = simulate(five, 200)
    for spec in specs:
        record(spec)
    worst, best = five[0], five[-1]
    # Lopsided votes that would move the worst model to the top if they counted.
    for k in range(30):
        record(Spec(worst, best, "left", ["hi"], ["a"], ["b"], mode="named"))
        record(Spec(worst, best, "left", ["hi"], ["My name is Model A"], ["b"], leak=True))
        record(Spec(worst, best, "left", ["hi"], ["a"], ["b"], failed=True))
    direct = Battle.objects.create(mode="direct", session_key="x")
    Side.objects.create(battle=direct, position="left", model=worst)
    snapshot = leaderboard_snapshot_create()
    assert snapshot.votes_used == 200
    expected = library_ranking(specs, five)
    assert scores_by_id(snapshot) == pytest.approx({m.pk: expected.scores[i] for i, m in enumerate(five)}, abs=1e-6)


def test_it_stores_nothing_when_the_votes_have_not_changed(five):
    for spec in simulate(five, 60):
        record(spec)
    first = leaderboard_snapshot_create()
    assert first is not None
    assert leaderboard_snapshot_create() is None
    record(Spec(five[0], five[1], "tie", ["hi"], ["a"], ["b"]))
    second = leaderboard_snapshot_create()
    assert second is not None and second.pk > first.pk and second.votes_used == 61
    assert second.vote_hash != first.vote_hash
    assert LeaderboardSnapshot.objects.count() == 2


def _other_job_waits_on_the_lock(timeout: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
def test_two_snapshot_jobs_at_once_leave_one_consistent_latest_snapshot(monkeypatch):
    models = [model(f"m{i}") for i in range(4)]
    for spec in simulate(models, 120):
        record(spec)
    real_payload = leaderboard.leaderboard_payload
    first = threading.Lock()
    overlapped: list[bool] = []

    def payload_while_the_other_job_starts(*args, **kwargs):
        # The first job to fit holds on until the second is inside leaderboard_snapshot_create too.
        if first.acquire(blocking=False):
            overlapped.append(_other_job_waits_on_the_lock())
        return real_payload(*args, **kwargs)

    monkeypatch.setattr(leaderboard, "leaderboard_payload", payload_while_the_other_job_starts)
    results: list = []
    errors: list = []
    start = threading.Barrier(2)

    def job():
        try:
            start.wait(timeout=30)
            results.append(leaderboard_snapshot_create())
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert overlapped == [True], "the second job reached the lock while the first was fitting"
    assert len(results) == 2
    assert sum(r is not None for r in results) == 1, "the second job finds the same votes and stores nothing"
    latest = LeaderboardSnapshot.objects.order_by("-id").first()
    assert LeaderboardSnapshot.objects.count() == 1
    assert latest.votes_used == 120 and len(latest.payload["categories"]["overall"]["models"]) == 4


def test_it_leaves_a_model_with_few_votes_out_of_a_category_and_marks_preliminary_models(five, settings):
    settings.ARENA_LEADERBOARD_MIN_CATEGORY_VOTES = 5
    settings.ARENA_LEADERBOARD_PRELIMINARY_VOTES = 50
    for spec in simulate(five[:4], 160, seed=3):
        spec.prompts = ["What is the capital of France?"]
        spec.answers_left, spec.answers_right = spec.answers_left[:1], spec.answers_right[:1]
        record(spec)
    newcomer = five[4]
    for k in range(3):
        record(Spec(newcomer, five[k], "left", ["Write a python function"], ["x"], ["y"]))
    snapshot = leaderboard_snapshot_create()
    coding = snapshot.payload["categories"]["coding"]
    assert newcomer.pk not in [r["model_id"] for r in coding["models"]]
    assert {"model_id": newcomer.pk, "votes": 3, "reason": "few_votes"} in coding["left_out"]
    overall = {r["model_id"]: r for r in snapshot.payload["categories"]["overall"]["models"]}
    assert overall[newcomer.pk]["preliminary"] is True
    assert overall[five[0].pk]["preliminary"] is False


def test_it_fits_the_largest_connected_group_and_says_who_was_left_out(db, client):
    big = [model(f"big-{i}") for i in range(4)]
    island = [model("island-a", display_name="Island A"), model("island-b", display_name="Island B")]
    for spec in simulate(big, 80):
        record(spec)
    for k in range(6):
        record(Spec(island[0], island[1], "left" if k % 2 else "right", ["hi"], ["a"], ["b"]))
    snapshot = leaderboard_snapshot_create()
    overall = snapshot.payload["categories"]["overall"]
    assert sorted(r["model_id"] for r in overall["models"]) == sorted(m.pk for m in big)
    assert {o["model_id"] for o in overall["left_out"] if o["reason"] == "disconnected"} == {m.pk for m in island}
    html = client.get("/leaderboard/").content.decode()
    assert "Island A (not linked to the others by any battle)" in html


@pytest.fixture
def with_preview(db):
    models = [model("open-one", display_name="Open One"), model("open-two", display_name="Open Two"),
              model("ours", display_name="Our MoE", organization="Us", is_inhouse=True)]
    secret = model("secret-model", display_name="Secret Model X", organization="Hidden Lab",
                   visibility="preview", codename="nightjar")
    for spec in simulate(models + [secret], 240, strengths=[0.0, 0.3, 0.6, 0.9]):
        record(spec)
    leaderboard_snapshot_create()
    return models, secret


PUBLIC_URLS = ["/leaderboard/", "/leaderboard/data/", "/leaderboard/head-to-head/", "/leaderboard/rankings.csv",
               "/leaderboard/?style=1", "/leaderboard/data/?category=coding&style=1", "/leaderboard/rankings.csv?style=1"]


def test_the_public_leaderboard_never_shows_a_preview_model(client, with_preview):
    models, secret = with_preview
    for url in PUBLIC_URLS:
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        for name in (secret.display_name, secret.codename, secret.slug, secret.organization):
            assert name.lower() not in text.lower(), f"{name} on public {url}"
        assert "Open One" in text, url
    board = leaderboard_board(LeaderboardSnapshot.objects.get(), staff=False)
    assert sorted(r["rank"] for r in board.rows)[0] == 1, "ranks are recomputed over the models shown"


def test_staff_see_a_preview_model_by_codename_and_name(client, with_preview):
    models, secret = with_preview
    client.force_login(User.objects.create_user("staff", password="pw-staff-123", is_staff=True))
    html = client.get("/leaderboard/").content.decode()
    assert "nightjar (Secret Model X)" in html
    assert 'class="badge preview"' in html
    assert "Secret Model X" in client.get("/leaderboard/rankings.csv").content.decode()


def test_a_model_published_after_the_snapshot_shows_at_once(client, with_preview):
    models, secret = with_preview
    ModelEntry.objects.filter(pk=secret.pk).update(visibility="public")
    assert "Secret Model X" in client.get("/leaderboard/").content.decode()


def test_the_page_highlights_the_in_house_model_and_never_refits(client, with_preview, monkeypatch):
    def no_fitting(*args, **kwargs):
        raise AssertionError("a page view fitted the ratings")

    monkeypatch.setattr(leaderboard, "rate", no_fitting)
    before = LeaderboardSnapshot.objects.count()
    response = client.get("/leaderboard/?category=coding&style=1")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="inhouse"' in html and "Our MoE" in html
    for header in ("Rank (UB)", "Model", "Score", "95% CI", "Votes", "Organization", "License"):
        assert f">{header}</th>" in html
    assert "vendor/plotly/plotly.min.js" in html and "cdn" not in html.lower()
    assert 'value="coding" selected' in html and "style-controlled" in html
    assert LeaderboardSnapshot.objects.count() == before


def test_plotly_is_served_from_our_own_static_files(client, db):
    response = client.get("/static/vendor/plotly/plotly.min.js")
    assert response.status_code == 200
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()


def test_the_head_to_head_page_compares_the_in_house_model_with_each_public_rival(client, with_preview):
    models, secret = with_preview
    html = client.get("/leaderboard/head-to-head/").content.decode()
    assert "Our MoE" in html and "Open One" in html and "Open Two" in html
    assert "Secret Model X" not in html and "nightjar" not in html
    board = leaderboard_board(LeaderboardSnapshot.objects.get(), staff=False)
    comparisons = leaderboard.board_head_to_head(board)
    assert [c["name"] for c in comparisons] == ["Our MoE"]
    rivals = {r["name"]: r for r in comparisons[0]["rivals"]}
    assert set(rivals) == {"Open One", "Open Two"}
    one = rivals["Open One"]
    assert 0.5 < one["probability_better"] <= 1 and one["lower"] < one["difference"] < one["upper"]
    assert one["battles"] > 0 and one["more_votes_needed"] is not None


def test_the_compute_leaderboard_command_stores_a_snapshot(five, capsys):
    for spec in simulate(five, 50):
        record(spec)
    call_command("compute_leaderboard", "--quiet")
    assert LeaderboardSnapshot.objects.get().votes_used == 50
    call_command("compute_leaderboard", "--quiet")
    assert "nothing stored" in capsys.readouterr().out
    assert LeaderboardSnapshot.objects.count() == 1


def test_the_timer_starts_only_where_it_is_enabled(settings, monkeypatch):
    settings.ARENA_SNAPSHOT_TIMER = False
    assert leaderboard.leaderboard_timer_start() is False
    assert "leaderboard-snapshots" not in {thread.name for thread in threading.enumerate()}


@pytest.mark.django_db(transaction=True)
async def test_a_new_snapshot_reaches_an_open_page_over_the_websocket(settings):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    assert "Redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"], "the real Redis channel layer"
    page = WebsocketCommunicator(application, "/ws/leaderboard/",
                                 headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")])
    connected, _ = await page.connect()
    assert connected

    @database_sync_to_async
    def vote_and_snapshot() -> LeaderboardSnapshot:
        models = [model(f"ws-{i}") for i in range(3)]
        for spec in simulate(models, 30):
            record(spec)
        return leaderboard_snapshot_create()

    snapshot = await vote_and_snapshot()
    frame = await page.receive_json_from(timeout=10)
    assert frame == {"type": "snapshot", "id": snapshot.pk, "created_at": snapshot.created_at.isoformat(),
                     "votes_used": 30}
    await page.disconnect()


def test_a_model_that_never_won_is_named_on_the_page_and_leaves_the_others_centred(db, client):
    models = [model(f"fair-{i}") for i in range(4)]
    loser = model("always-loses", display_name="Always Loses")
    for spec in simulate(models, 120, seed=5):
        record(spec)
    for k in range(12):
        # It loses every battle it is in, from either side.
        rival = models[k % 4]
        record(Spec(loser, rival, "right", ["hi"], ["a"], ["b"]) if k % 2 else
               Spec(rival, loser, "left", ["hi"], ["a"], ["b"]))
    snapshot = leaderboard_snapshot_create()
    overall = snapshot.payload["categories"]["overall"]
    assert overall["one_sided"] == [{"model_id": loser.pk, "never": "won"}]
    scores = scores_by_id(snapshot)
    # Without the centring fix the others averaged far above 1000 to make up for the placeholder.
    assert np.mean([scores[m.pk] for m in models]) == pytest.approx(1000.0, abs=1e-6)
    assert scores[loser.pk] < min(scores[m.pk] for m in models) - 500
    html = client.get("/leaderboard/").content.decode()
    assert "Always Loses has never won a battle" in html and "placeholder" in html
    table = client.get("/leaderboard/data/").json()["table_html"]
    assert "Always Loses has never won a battle" in table


# ---------------------------------------------------------------------------------------------------------------
# The board after an import of battles without answer text (LMArena's public shape, LLMFAO's file)


def import_csv(tmp_path, rows: list[tuple[str, str, str]], name: str = "imported.csv"):
    from leaderboard.imports import battles_import

    path = tmp_path / name
    path.write_text("model_a,model_b,winner\n" + "".join(f"{a},{b},{w}\n" for a, b, w in rows))
    return battles_import(path)


def imported_rows(a: str, b: str, n: int, *, seed: int = 1, p_a: float = 0.5) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        u = rng.random()
        winner = "tie" if u < 0.1 else "model_a" if rng.random() < p_a else "model_b"
        rows.append((a, b, winner) if rng.random() < 0.5 else (b, a, {"model_a": "model_b", "model_b": "model_a"}.get(winner, winner)))
    return rows


def test_after_an_import_the_category_menu_counts_the_votes_the_header_counts(db, client, tmp_path):
    # The playtest's board: 16 votes cast here, 60 imported between two models that never met the others. The
    # fit keeps the largest connected group (the three models of the 16); the menu used to count those 16.
    live = [model("live-a", display_name="Live A"), model("live-b", display_name="Live B"),
            model("live-c", display_name="Live C")]
    for spec in simulate(live, 16, seed=2):
        record(spec)
    import_csv(tmp_path, imported_rows("Imported X", "Imported Y", 60))
    snapshot = leaderboard_snapshot_create()
    assert snapshot.votes_used == 76
    overall = snapshot.payload["categories"]["overall"]
    assert (overall["votes"], overall["battles"]) == (76, 16)
    html = client.get("/leaderboard/").content.decode()
    assert "Overall (76)" in html and "Overall (16)" not in html
    assert "· 76 votes ·" in " ".join(html.split())
    assert "Imported X (not linked to the others by any battle)" in html
    for key, label, votes in leaderboard.board_categories(snapshot):
        # Every category's count is the votes tagged with it, as the header of that category says.
        page = " ".join(client.get(f"/leaderboard/?category={key}").content.decode().split())
        assert f"{label} ({votes})" in page
        if leaderboard_board(snapshot, category=key).rows:
            assert f"· {votes} vote{'s' if votes != 1 else ''}" in page, key


def test_style_control_is_fitted_on_the_battles_that_have_answer_text(db, client, tmp_path):
    models = [model(f"text-{c}", display_name=f"Text {c.upper()}") for c in "abcd"]
    specs = simulate(models, 240, seed=4, strengths=[0.0, 0.5, 1.0, 1.5])
    for spec in specs:
        record(spec)
    # Imported on top: the same models by display name, and one model that only ever met them in imports.
    rows = imported_rows("Text A", "Text D", 80, seed=8, p_a=0.3) + imported_rows("Text B", "Text C", 60, seed=9)
    rows += imported_rows("Only Imported", "Text A", 40, seed=10, p_a=0.6)
    import_csv(tmp_path, rows)
    snapshot = leaderboard_snapshot_create()
    overall = snapshot.payload["categories"]["overall"]
    assert overall["votes"] == overall["battles"] == 240 + 180
    assert overall["style_battles"] == 240, "the style fit uses only the battles with both answers"
    # Its scores are the ratings library's style-controlled fit of exactly those battles.
    expected = library_ranking(specs, models)
    styled = {r["model_id"]: r for r in overall["models"]}
    for i, m in enumerate(models):
        assert styled[m.pk]["style_score"] == pytest.approx(expected.style_scores[i], abs=1e-6)
        assert styled[m.pk]["style_lower"] == pytest.approx(expected.style_lower[i], abs=1e-6)
    only = ModelEntry.objects.get(display_name="Only Imported")
    assert styled[only.pk]["style_score"] is None and styled[only.pk]["score"] is not None
    # The plain board ranks every model on every battle; the styled board leaves out the one without text.
    plain = leaderboard_board(snapshot, style=False)
    board = leaderboard_board(snapshot, style=True)
    assert board.style and len(plain.rows) == 5 and len(board.rows) == 4
    assert {r["name"]: r["votes"] for r in board.rows} == {
        m.display_name: int(expected.votes[i]) for i, m in enumerate(models)}
    html = " ".join(client.get("/leaderboard/?style=1").content.decode().split())
    assert "style-controlled (fitted on the 240 battles with both answers' text)" in html
    assert "Only Imported (too few battles with answer text to control style on)" in html
    # The CSV with style columns lists the models style control could score; the plain one every model.
    styled_csv = client.get("/leaderboard/rankings.csv?style=1").content.decode().splitlines()
    assert len(styled_csv) == 1 + 4 and "Only Imported" not in "".join(styled_csv)
    assert "Only Imported" in client.get("/leaderboard/rankings.csv").content.decode()


def test_an_import_without_any_answer_text_leaves_the_board_without_style_control(db, client, tmp_path):
    import_csv(tmp_path, imported_rows("P", "Q", 30, seed=3) + imported_rows("Q", "R", 30, seed=4))
    snapshot = leaderboard_snapshot_create()
    overall = snapshot.payload["categories"]["overall"]
    assert overall["style_covariance"] is None and overall["style_battles"] == 0
    board = leaderboard_board(snapshot, style=True)
    assert not board.style and len(board.rows) == 3
    assert "style-controlled" not in client.get("/leaderboard/?style=1").content.decode()


def test_votes_still_needed_is_capped_where_two_models_are_all_but_equal(db, client, tmp_path):
    ours = model("ours-even", display_name="Ours Even", is_inhouse=True)
    model("rival-even", display_name="Rival Even")
    model("rival-far", display_name="Rival Far")
    # 51 to 50 with a few ties: about 3 points apart with an interval of about +-70, which the estimate turned
    # into tens of thousands of votes; and a rival far behind, settled already.
    rows = [("Ours Even", "Rival Even", "model_a")] * 51 + [("Ours Even", "Rival Even", "model_b")] * 50
    rows += [("Ours Even", "Rival Far", "model_a")] * 60 + [("Ours Even", "Rival Far", "model_b")] * 5
    import_csv(tmp_path, rows)
    snapshot = leaderboard_snapshot_create()
    board = leaderboard_board(snapshot)
    from ratings import head_to_head

    exact = head_to_head(board.ranking, "Ours Even", "Rival Even").more_votes_needed
    assert exact > leaderboard.VOTES_NEEDED_CAP, "the pair is close enough that the raw estimate runs past the cap"
    [comparison] = leaderboard.board_head_to_head(board)
    assert comparison["name"] == ours.display_name
    rivals = {r["name"]: r for r in comparison["rivals"]}
    assert rivals["Rival Even"]["votes_needed_beyond_cap"] and rivals["Rival Even"]["more_votes_needed"] is None
    assert rivals["Rival Far"]["more_votes_needed"] == 0 and not rivals["Rival Far"]["votes_needed_beyond_cap"]
    html = " ".join(client.get("/leaderboard/head-to-head/").content.decode().split())
    assert "more than 10,000" in html and str(exact) not in html
    assert "settled" in html


def test_the_trust_screen_reads_the_snapshots_votes_as_it_would_read_them_itself(five):
    """The snapshot hands the trust screen the votes it read (one pass, not two): the same table as the screen's
    own read, trust.risk.vote_table, over voters on shared addresses, answers finished at different times, a
    battle with no finished turn, an imported battle (left to where it was collected) and a multi-turn one."""
    from django.utils import timezone

    from arena.facts import battle_facts_rebuild, key_code
    from leaderboard.snapshots import leaderboard_votes, trust_vote_table
    from trust.risk import vote_table

    specs = simulate(five, 40, seed=3)
    specs[0].session_key = "import:llmfao:0"
    battles = [record(spec) for spec in specs]
    now = timezone.now()
    for i, battle in enumerate(battles):
        Battle.objects.filter(pk=battle.pk).update(ip_hash=f"ip-{i % 7}" if i % 5 else "")
        if i % 9:
            for k, turn in enumerate(Turn.objects.filter(side__battle=battle)):
                Turn.objects.filter(pk=turn.pk).update(finished_at=now - datetime.timedelta(seconds=30 * i + k))
    Vote.objects.filter(battle__in=battles).update(created_at=now)
    battle_facts_rebuild([b.pk for b in battles])  # the rows were changed behind the ORM's back
    shared = trust_vote_table(leaderboard_votes())
    own = vote_table(shared.vote_ids.tolist())
    assert shared.vote_ids.size == len(battles) - 1 and key_code("import:llmfao:0") not in set(shared.session)
    for name in ("vote_ids", "session", "address", "left", "right", "outcome", "model_ids"):
        assert np.array_equal(getattr(shared, name), getattr(own, name)), name
    for name in ("voted_at", "wait", "answer_chars"):
        assert np.allclose(getattr(shared, name), getattr(own, name), equal_nan=True), name
    assert np.isnan(shared.wait).sum() == sum(1 for i in range(1, len(battles)) if i % 9 == 0)
    assert (shared.answer_chars > 0).all()


@pytest.mark.parametrize("rare", [False, True])
def test_a_category_holding_every_vote_is_fitted_as_its_own_category_would_be(settings, rare):
    """A category that holds every vote (an arena where every prompt is English) takes the overall fit rather than
    fitting the same battles again; that must be the fit the category would get on its own, also where a model
    has fewer votes than a category needs (then it is fitted on its own, leaving that model out)."""
    from arena.facts import CATEGORY_BITS
    from leaderboard.snapshots import LeaderboardVotes, category_fit, leaderboard_payload

    settings.ARENA_LEADERBOARD_MIN_CATEGORY_VOTES = 20
    rng = np.random.default_rng(5)
    n = 3000
    left = rng.integers(1, 6, n)
    right = (left + rng.integers(1, 5, n) - 1) % 5 + 1
    if rare:  # model 9 in 5 battles only: under the category's minimum
        left[:5] = 9
    outcome = rng.choice([0.0, 0.5, 1.0], n)
    style = rng.integers(0, 300, (n, 2, 4)).astype(np.int32)
    z = np.zeros(n)
    votes = LeaderboardVotes(
        vote_ids=np.arange(n), left=left, right=right, outcome=outcome,
        categories=np.full(n, 1 << CATEGORY_BITS.index("lang:en")), other_categories={}, style=style,
        has_text=np.ones(n, dtype=bool), session=z, address=z, voted_at=np.full(n, 1.7e9), done=z, chars=z,
        turns=z, imported=np.zeros(n, dtype=bool), started=np.full(n, 1.7e9), prompt=z)
    payload = leaderboard_payload(votes)
    alone = category_fit(left, right, outcome, style, min_votes=20, preliminary_votes=100, label="English",
                         has_text=votes.has_text)
    assert payload["categories"]["lang:en"] == alone
    assert any(o["model_id"] == 9 for o in alone["left_out"]) == rare
