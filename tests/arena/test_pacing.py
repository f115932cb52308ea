"""Equal pace (arena.pacing), on a fabricated clock: each call of tick() is one tick, no sleeping."""

from __future__ import annotations

from arena.pacing import Pacer


def token(side: str, text: str, offset: int, *, turn: int = 0, attempt: int = 0) -> dict:
    return {"type": "battle.token", "side": side, "turn": turn, "attempt": attempt, "text": text, "offset": offset}


def end(side: str, text: str, *, status: str = "done", turn: int = 0, attempt: int = 0) -> dict:
    return {"type": "turn", "side": side, "turn": turn, "attempt": attempt, "status": status, "text": text,
            "html": f"<p>{text}</p>" if text else "", "error": "failed" if status == "failed" else "", "cut": False,
            "stopped": False}


def started(pacer: Pacer, *, turn: int = 0, statuses=("queued", "queued"), texts=("", "")) -> dict:
    state = {"battle": "b", "mode": "anonymous", "voted": None, "models": None, "sides": {
        label: [{"turn": turn, "attempt": 0, "prompt": "p", "status": status, "text": text,
                 "html": f"<p>{text}</p>" if status == "done" else "", "error": "", "cut": False, "stopped": False}]
        for label, status, text in zip("AB", statuses, texts)}}
    return pacer.sync(state)


def shown(frames: list[dict], side: str) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "token" and f["side"] == side)


def test_it_shows_both_sides_the_same_count_bounded_by_the_slower_side():
    pacer = Pacer(chars_per_tick=100)
    started(pacer)
    fast, slow = "f" * 300, "s" * 300
    frames: list[dict] = []
    for tick in range(1, 4):  # the fast side streams 3x the slow side's text per tick
        pacer.token(token("A", fast[(tick - 1) * 90: tick * 90], (tick - 1) * 90))
        pacer.token(token("B", slow[(tick - 1) * 30: tick * 30], (tick - 1) * 30))
        now = pacer.tick()
        frames += now
        assert [f["side"] for f in now] == ["A", "B"], "both sides at every tick, in the same order"
        assert len(shown(frames, "A")) == len(shown(frames, "B")) == tick * 30, "never ahead of the slower side"


def test_it_holds_the_side_that_finished_first_and_ends_both_together():
    pacer = Pacer(chars_per_tick=1000)
    started(pacer)
    pacer.token(token("A", "a" * 50, 0))
    assert pacer.turn_end(end("A", "a" * 50)) == [], "the faster side's end is held"
    pacer.token(token("B", "b" * 20, 0))
    frames = pacer.tick()
    assert shown(frames, "A") == "a" * 20 and shown(frames, "B") == "b" * 20
    pacer.token(token("B", "b" * 30, 20))
    ends = pacer.turn_end(end("B", "b" * 50))
    assert [(f["side"], f["status"], f["text"]) for f in ends] == [("A", "done", "a" * 50), ("B", "done", "b" * 50)]
    assert not pacer.running and pacer.tick() == [], "no added wait once both answers are in"


def test_it_keeps_a_reading_pace_that_show_all_lifts():
    pacer = Pacer(chars_per_tick=10)
    started(pacer)
    pacer.token(token("A", "a" * 100, 0))
    pacer.token(token("B", "b" * 80, 0))
    assert len(shown(pacer.tick(), "A")) == 10
    assert len(shown(pacer.tick(), "B")) == 10
    pacer.show_all()
    frames = pacer.tick()
    assert shown(frames, "A") == "a" * 60 and shown(frames, "B") == "b" * 60, "up to the slower side at once"
    assert pacer.tick() == [], "nothing new to show: no frames"


def test_it_holds_both_while_one_side_is_still_queued():
    pacer = Pacer(chars_per_tick=100)
    started(pacer)
    pacer.token(token("A", "a" * 100, 0))
    assert pacer.tick() == [] and pacer.tick() == [], "the first answer waits for the other's first text"


def test_it_tells_a_failure_at_once_and_goes_on_with_the_other_side():
    pacer = Pacer(chars_per_tick=100)
    started(pacer)
    pacer.token(token("A", "a" * 40, 0))
    failed = pacer.turn_end(end("B", "", status="failed"))
    assert [(f["side"], f["status"]) for f in failed] == [("B", "failed")]
    assert shown(pacer.tick(), "A") == "a" * 40
    assert [f["side"] for f in pacer.turn_end(end("A", "a" * 40))] == ["A"]


def test_a_resumed_state_shows_the_common_count_and_holds_a_finished_side():
    pacer = Pacer(chars_per_tick=100)
    state = started(pacer, statuses=("done", "running"), texts=("a" * 90, "b" * 30))
    a, b = state["sides"]["A"][-1], state["sides"]["B"][-1]
    assert (a["status"], a["text"], a["html"]) == ("running", "a" * 30, ""), "the finished side reads as writing"
    assert (b["status"], b["text"]) == ("running", "b" * 30)
    pacer.token(token("B", "b" * 10, 30))
    frames = pacer.tick()
    assert shown(frames, "A") == "a" * 10 and [f["offset"] for f in frames] == [30, 30]
    ends = pacer.turn_end(end("B", "b" * 40))
    assert [f["side"] for f in ends] == ["A", "B"] and ends[0]["html"] == "<p>" + "a" * 90 + "</p>"


def test_a_retried_side_is_paced_alone_beside_the_answer_already_shown():
    pacer = Pacer(chars_per_tick=100)
    state = {"battle": "b", "mode": "anonymous", "voted": None, "sides": {
        "A": [{"turn": 0, "attempt": 0, "prompt": "p", "status": "done", "text": "kept", "html": "<p>kept</p>",
               "error": "", "cut": False, "stopped": False}],
        "B": [{"turn": 0, "attempt": 1, "prompt": "p", "status": "queued", "text": "", "html": "", "error": "",
               "cut": False, "stopped": False}]}}
    paced = pacer.sync(state, hold_done=False)
    assert paced["sides"]["A"][-1]["status"] == "done"
    pacer.token(token("B", "stale", 0, attempt=0))
    pacer.token(token("B", "new", 0, attempt=1))
    assert [(f["side"], f["text"], f["attempt"]) for f in pacer.tick()] == [("B", "new", 1)]


def test_a_new_round_holds_both_sides_again():
    pacer = Pacer(chars_per_tick=100)
    started(pacer)
    pacer.token(token("A", "x", 0))
    pacer.token(token("B", "y", 0))
    pacer.turn_end(end("A", "x"))
    assert len(pacer.turn_end(end("B", "y"))) == 2
    pacer.token(token("A", "second", 0, turn=1))
    assert pacer.tick() == [], "the other side of the new round has written nothing yet"
    pacer.token(token("B", "2nd", 0, turn=1))
    frames = pacer.tick()
    assert [(f["side"], f["turn"], f["text"]) for f in frames] == [("A", 1, "sec"), ("B", 1, "2nd")]


def test_a_failure_releases_the_other_side_held_as_finished():
    pacer = Pacer(chars_per_tick=100)
    started(pacer, statuses=("done", "queued"), texts=("all of it", ""))
    frames = pacer.turn_end(end("B", "", status="failed"))
    assert [(f["side"], f["status"]) for f in frames] == [("B", "failed"), ("A", "done")]
    assert not pacer.running
