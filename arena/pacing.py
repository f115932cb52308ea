"""Equal pace: an anonymous battle's two answers shown at one common pace, so that neither speed nor finishing first
tells the voter which model wrote which side (and a fast answer is not favoured for arriving first).

The battle socket (arena.consumers) holds what each side's job has streamed and, on a common clock, sends the
same number of new characters of both sides at the same tick, in the order A then B:

- the count shown grows by at most ``chars_per_tick`` a tick (a reading pace), and never past what the slower of
  the still-running sides has streamed; a side that is still queued holds both at nothing;
- a side that finished is held as still writing while the other runs: its turn frame goes out only once both
  ended, then both together, with no added wait (so both finish on the page at the same moment);
- ``show_all`` lifts the reading pace for the turn: the count is then bounded by the slower side's progress only;
- a side that fails is told at once (the round cannot be voted on, so there is nothing left to hide), and the
  other goes on alone at the same pace.

What still reaches the page: the slower side's progress (not which side is slower: both get the same count), when
the slower side finished (both end then), and the answers' lengths (the page shows them). What does not: the
faster side's speed, time to its first token and finishing time. A longer answer whose shorter rival finished
first shows its tail bounded by its own progress (still at most the reading pace).

A side's share of its own final length is unknowable until it ends, so the pace is in characters, not shares.
Pure state, no clock and no I/O: the caller calls ``tick()`` every tick and sends the frames it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIDES = ("A", "B")
LIVE = ("queued", "running")


@dataclass
class _Side:
    attempt: int | None = None  # None until this attempt's first frame or the battle's state names it
    text: str = ""  # what the job streamed (what the page will be shown), in the page's coordinates
    end: int = 0  # where `text` ends in the job's own answer (token frames carry offsets in it)
    shown: int = 0  # how much of `text` the page holds
    final: dict | None = None  # the job's turn frame, held until both sides ended


@dataclass
class Pacer:
    chars_per_tick: int
    turn: int = -1
    sides: dict[str, _Side] = field(default_factory=dict)  # the sides still held this turn
    shown: int = 0  # the common count of characters shown on every held side
    uncapped: bool = False

    # ---- input ------------------------------------------------------------------------------------------------

    def sync(self, state: dict, *, hold_done: bool = True) -> dict:
        """Start over from a battle's state (sent on start, resume, retry) and return the state as the page may
        see it: every side still held shows the common count of characters and reads as still running.

        With ``hold_done`` (a page that has not seen this turn yet) a side that finished while the other still
        runs is held too; without (a retried side, beside an answer the page already shows) it is not."""
        self.sides, self.shown, self.uncapped = {}, 0, False
        last = {label: turns[-1] for label, turns in (state.get("sides") or {}).items() if turns}
        if not last:
            return state
        self.turn = max(t["turn"] for t in last.values())
        live = [label for label, t in last.items() if t["turn"] == self.turn and t["status"] in LIVE]
        if not live:
            return state
        for label, t in last.items():
            if t["turn"] != self.turn or t["status"] == "failed" or (t["status"] == "done" and not hold_done):
                continue
            side = _Side(attempt=t["attempt"], text=t["text"] or "", end=len(t["text"] or ""))
            if t["status"] == "done":
                side.final = {"type": "turn", "side": label, **{k: t[k] for k in ("turn", "attempt", "status", "text", "html", "error",
                                                                 "cut", "stopped")}}
            self.sides[label] = side
        self.shown = self._bound()
        paced = {label: list(turns) for label, turns in state["sides"].items()}
        for label, side in self.sides.items():
            side.shown = min(self.shown, len(side.text))
            paced[label][-1] = {**paced[label][-1], "status": "running" if side.text[:side.shown] else "queued",
                                "text": side.text[:side.shown], "html": "", "cut": False, "stopped": False}
        return {**state, "sides": paced}

    def token(self, event: dict) -> None:
        """A batch of a side's answer, as its job published it (side, turn, attempt, text, offset)."""
        side = self._side(event)
        if side is None or side.final is not None:
            return
        text, offset = event["text"], event["offset"]
        if offset > side.end:  # frames lost in between (the channel layer was away): mark the gap as the page did
            side.text += " … " + text
        elif offset + len(text) > side.end:
            side.text += text[side.end - offset:]
        side.end = max(side.end, offset + len(text))

    def turn_end(self, event: dict) -> list[dict]:
        """A side's job ended (``event``: its turn frame, as the page would get it): the frames to send now (a
        failure at once, both ends once both ended)."""
        frame = event
        if event["turn"] == self.turn and event["side"] not in self.sides:
            return [frame]  # a side this socket does not hold (retried beside a shown answer, reaped): as it comes
        side = self._side(event)
        if side is None:
            return []
        if frame["status"] != "done":
            del self.sides[frame["side"]]
            return [frame] + self._release()
        final_text = frame["text"] or ""
        if len(final_text) > side.end:
            side.text += final_text[side.end:]
            side.end = len(final_text)
        side.final = frame
        return self._release()

    def show_all(self) -> None:
        """The voter asked to see everything now: no reading pace for the rest of this turn."""
        self.uncapped = True

    # ---- output -----------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self.sides)

    def tick(self) -> list[dict]:
        """The token frames of one tick: for every held side, the same number of new characters (none where a
        side's answer is shorter), or nothing at all when the count did not grow."""
        if not self.sides:
            return []
        bound = self._bound()
        target = bound if self.uncapped else min(bound, self.shown + self.chars_per_tick)
        if target <= self.shown:
            return []
        self.shown = target
        frames = []
        for label in SIDES:
            side = self.sides.get(label)
            if side is None:
                continue
            upto = min(target, len(side.text))
            frames.append({"type": "token", "side": label, "turn": self.turn, "attempt": side.attempt or 0,
                           "text": side.text[side.shown:upto], "offset": side.shown})
            side.shown = upto
        return frames

    # ---- inside -----------------------------------------------------------------------------------------------

    def _bound(self) -> int:
        """How far every held side may be shown: what the slowest side still running has streamed."""
        running = [len(s.text) for s in self.sides.values() if s.final is None]
        if not running:
            return max((len(s.text) for s in self.sides.values()), default=0)
        return min(running)

    def _release(self) -> list[dict]:
        """The held ends, A first, once no held side is still running (then the turn is over); else nothing."""
        if any(s.final is None for s in self.sides.values()):
            return []
        frames = [self.sides[label].final for label in SIDES if label in self.sides]
        self._reset()
        return frames

    def _reset(self) -> list[dict]:
        self.sides, self.shown, self.uncapped = {}, 0, False
        return []

    def _side(self, event: dict) -> _Side | None:
        """The held side an event belongs to (None for an earlier turn or attempt); a later turn or attempt starts
        afresh: a new round holds both sides, a retried side holds itself."""
        label, turn, attempt = event["side"], event["turn"], event["attempt"]
        if label not in SIDES or turn < self.turn:
            return None
        if turn > self.turn:
            self.turn, self.shown, self.uncapped = turn, 0, False
            self.sides = {s: _Side() for s in SIDES}
        side = self.sides.get(label)
        if side is None:
            return None
        if side.attempt is None:
            side.attempt = attempt
        elif attempt < side.attempt:
            return None
        elif attempt > side.attempt:
            side = self.sides[label] = _Side(attempt=attempt)
        return side
