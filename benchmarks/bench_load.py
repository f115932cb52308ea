"""Load test of the production processes on loopback: many voters running whole battles and voting, then the
leaderboard page and ranking export read with 10k and 1M stored votes.

Everything runs on 127.0.0.1 and is started here: a throwaway PostgreSQL and Redis (``devstack``), the
migrations, the OpenAI-compatible stand-in model (``tests.standin``, model ``echo`` answers at once, so the load
falls on the web, channel-layer and database path), two model entries pointing at it in pool ``bench``, one
Celery worker ``-Q bench`` and ``--web-processes`` daphne processes (2), with the rate limits on but out of reach.

1. Load: ``--voters`` concurrent voters, each with its own session (GET / for the cookie) and websocket, loop
   start -> both turns ended -> vote, for ``--duration`` seconds or ``--battles`` battles, whichever ends first.
   Every ``--early-every``-th voter also votes right after "started", while the answers stream (expected refusal:
   not_finished); a ``--replay-share`` of votes are sent twice (expected refusal: already_voted). Every vote
   answer is recorded; afterwards PostgreSQL must hold exactly one Vote for each battle with a success answer
   (with the choice that was answered) and none for a battle whose every vote was refused.
2. The vote path: ``--vote-voters`` voters, each with ``--vote-battles`` finished battles of its session stored
   beforehand, resume a battle and vote on it, once per ``--vote-rates`` entry: 0 as fast as the answers come
   (a closed loop: capacity), else that many votes per second offered (an open loop: each voter sends its next
   resume on schedule, so the latency is what voters see at that rate).
3. Leaderboard: for each of ``--sizes`` stored votes, bulk-insert anonymous battles (Battle, 2 Side, 2 Turn,
   Vote per vote, by COPY) among ``--models`` models with known Bradley-Terry strengths, time
   ``manage.py compute_leaderboard``, then time ``--gets`` GETs each of /leaderboard/ and
   /leaderboard/rankings.csv while ``--bg-voters`` voters keep voting. The fitted scores are checked against the
   true strengths.

    .venv/bin/python benchmarks/bench_load.py                                  # 60 s / 400 battles, 10k and 1M
    .venv/bin/python benchmarks/bench_load.py --sizes 10000 --duration 20      # quick

Writes benchmarks/results/load.md (``--out``; ``--out -`` for stdout only) and the raw figures as JSON beside the
logs in ``--workdir``. Every process it started is stopped at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import datetime
import hashlib
import io
import json
import os
import platform
import random
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from machine import machine  # benchmarks/machine.py, beside this script

import httpx
import numpy as np
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from devstack import free_port, services, wait_for_port  # noqa: E402

POOL = "bench"
CHOICES = ("A", "B", "tie", "bothbad")
PROMPTS = (
    "What is the capital of France?",
    "Write a python function that reverses a list.",
    "Explain why the sky is blue in two sentences.",
    "Give me three names for a grey cat.",
)


# ---------------------------------------------------------------------------------------------------------------
# Processes


class Processes:
    """Child processes in their own sessions, stopped in reverse order (TERM, then KILL after 20 s)."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen, object]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.running.append((name, process, log))
        return process

    def pid(self, name: str) -> int:
        return next(process.pid for n, process, _ in self.running if n == name)

    def stop_all(self) -> None:
        for name, process, log in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
            log.close()
        self.running.clear()


def _proc_times() -> dict[int, tuple[int, float, float]]:
    """{pid: (ppid, own CPU seconds, CPU seconds of waited-for children)} for every process now."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick,
                                        (int(fields[13]) + int(fields[14])) / tick)
    return table


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process and its descendants (live ones and those reaped)."""
    table = _proc_times()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in roots.items():
        if root == os.getpid():  # this process started the others: count only its own time
            out[name] = table[root][1]
            continue
        total, todo = table.get(root, (0, 0.0, 0.0))[2], [root]
        while todo:
            pid = todo.pop()
            total += table.get(pid, (0, 0.0, 0.0))[1]
            todo.extend(children.get(pid, []))
        out[name] = total
    return out


def run_checked(argv: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "ab") as out:
        subprocess.run(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def timed_command(argv: list[str], env: dict[str, str], log: Path, timeout: float) -> dict:
    """Run a command, return its wall seconds, peak RSS (MiB) and exit status; killed after ``timeout``."""
    with open(log, "ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                process.returncode = None
                break
            time.sleep(0.2)
    return {"seconds": time.perf_counter() - started, "peak_rss_mib": usage.ru_maxrss / 1024,
            "exit": process.returncode, "timed_out": process.returncode is None}


# ---------------------------------------------------------------------------------------------------------------
# A small websocket client on asyncio streams. The installed autobahn has an asyncio client, but txaio lets a
# process use one framework only, and Django's daphne app (imported by django.setup() here) takes Twisted.


class WebSocket:
    """RFC 6455 client, text frames only: masked frames out, ping answered, fragments joined."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: dict[str, str]) -> "WebSocket":
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                   f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                   *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(request) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if b" 101 " not in status or accept not in head:
            writer.close()
            raise ConnectionError(f"websocket refused: {status.decode(errors='replace')}")
        return cls(reader, writer)

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.writer.write(header + mask + masked)

    def send_text(self, text: str) -> None:
        self._frame(0x1, text.encode())

    async def receive_text(self) -> str | None:
        """The next text message; None once the server closed."""
        parts: list[bytes] = []
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(n)  # servers do not mask
            opcode = b0 & 0x0F
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self) -> None:
        try:
            self._frame(0x8, struct.pack("!H", 1000))
        except Exception:
            pass
        self.writer.close()


class BattleSocket:
    """One voter's battle websocket. ``reply()`` returns the next frame that answers a message of ours
    (started, voted, error, state); token frames are counted and turn frames kept in ``turns`` on the way,
    because a fast model's turn frames can arrive before the "started" answer."""

    def __init__(self, socket: WebSocket):
        self.socket = socket
        # One reader task per socket, so a timed-out wait never cuts a frame in half.
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())
        self.turns: dict[str, dict] = {}
        self.tokens = 0

    @classmethod
    async def connect(cls, port: int, *, session: str) -> "BattleSocket":
        socket = await asyncio.wait_for(WebSocket.connect(
            "127.0.0.1", port, "/ws/battle/",
            {"Origin": f"http://127.0.0.1:{port}", "Cookie": f"sessionid={session}"},
        ), 15)
        return cls(socket)

    async def _read(self) -> None:
        try:
            while (text := await self.socket.receive_text()) is not None:
                self.frames.put_nowait(text)
        except (OSError, asyncio.IncompleteReadError):
            pass
        self.frames.put_nowait(None)

    def send(self, message: dict) -> None:
        self.socket.send_text(json.dumps(message))

    async def _next(self, timeout: float) -> dict:
        text = await asyncio.wait_for(self.frames.get(), timeout)
        if text is None:
            self.frames.put_nowait(None)
            raise ConnectionError("the server closed the websocket")
        frame = json.loads(text)
        if frame.get("type") == "token":
            self.tokens += 1
        elif frame.get("type") == "turn" and frame.get("turn") == 0:
            self.turns[frame["side"]] = frame
        return frame

    async def reply(self, timeout: float) -> dict:
        while True:
            frame = await self._next(timeout)
            if frame.get("type") not in ("token", "turn"):
                return frame

    async def both_turns_ended(self, timeout: float) -> list[dict]:
        """Wait until turn 0 of sides A and B has ended (done or failed); frames answering nothing are dropped."""
        deadline = time.monotonic() + timeout
        while not ("A" in self.turns and "B" in self.turns):
            await self._next(max(0.01, deadline - time.monotonic()))
        return [self.turns["A"], self.turns["B"]]

    def close(self) -> None:
        self.reader.cancel()
        self.socket.close()


# ---------------------------------------------------------------------------------------------------------------
# Voters


@dataclass
class VoteAnswer:
    battle: str
    kind: str  # "early" (while streaming), "vote", "replay" (the same battle again)
    choice: str
    ok: bool | None  # None: no answer came in time
    code: str | None
    status: int | None
    seconds: float
    phase: str


@dataclass
class Tally:
    sessions: set[str] = field(default_factory=set)
    started: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)  # both turns ended (done or failed)
    failed_sides: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)  # no turn frames within the timeout
    start_errors: Counter = field(default_factory=Counter)
    voter_errors: list[str] = field(default_factory=list)
    answers: list[VoteAnswer] = field(default_factory=list)
    battle_seconds: list[float] = field(default_factory=list)  # start sent -> both turns ended
    start_seconds: list[float] = field(default_factory=list)  # start sent -> "started"


class Budget:
    """Battles left to start: a count and a deadline (None: unbounded), or until ``stop`` is set."""

    def __init__(self, battles: int | None, seconds: float | None):
        self.left = battles
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.stop = asyncio.Event()

    def take(self) -> bool:
        if self.stop.is_set() or (self.left is not None and self.left <= 0):
            return False
        if self.deadline is not None and time.monotonic() > self.deadline:
            return False
        if self.left is not None:
            self.left -= 1
        return True


async def new_session(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        response = await http.get("/")
        response.raise_for_status()
        return response.cookies["sessionid"]


async def cast_vote(ws: BattleSocket, battle: str, kind: str, rng: random.Random, tally: Tally, phase: str,
                    timeout: float) -> VoteAnswer:
    choice = rng.choice(CHOICES)
    started = time.perf_counter()
    ws.send({"type": "vote", "choice": choice})
    try:
        frame = await ws.reply(timeout)
    except asyncio.TimeoutError:
        answer = VoteAnswer(battle, kind, choice, None, "no_answer", None, time.perf_counter() - started, phase)
    else:
        ok = frame.get("type") == "voted"
        answer = VoteAnswer(battle, kind, choice, ok, None if ok else frame.get("code", frame.get("type")),
                            None if ok else frame.get("status"), time.perf_counter() - started, phase)
    tally.answers.append(answer)
    return answer


async def voter(index: int, *, base: str, port: int, budget: Budget, tally: Tally, early: bool, replay_share: float,
                seed: int, phase: str, timeout: float, progress: tqdm | None = None) -> None:
    rng = random.Random(seed * 1000 + index)
    try:
        session = await new_session(base)
        tally.sessions.add(session)
        ws = await BattleSocket.connect(port, session=session)
    except Exception as exc:  # recorded and reported: a voter that cannot even connect is a finding
        tally.voter_errors.append(f"voter {index} connect: {type(exc).__name__}: {exc}")
        return
    try:
        while budget.take():
            ws.turns.clear()
            started = time.perf_counter()
            ws.send({"type": "start", "prompt": f"{rng.choice(PROMPTS)} (voter {index}, {rng.random():.6f})"})
            frame = await ws.reply(timeout)
            if frame.get("type") != "started":
                tally.start_errors[frame.get("code", frame.get("type"))] += 1
                continue
            battle = frame["battle"]
            tally.started.append(battle)
            tally.start_seconds.append(time.perf_counter() - started)
            if early:
                await cast_vote(ws, battle, "early", rng, tally, phase, timeout)
            try:
                turns = await ws.both_turns_ended(timeout)
            except asyncio.TimeoutError:
                tally.hung.append(battle)
            else:
                tally.ended.append(battle)
                tally.battle_seconds.append(time.perf_counter() - started)
                if any(t["status"] != "done" for t in turns):
                    tally.failed_sides.append(battle)
            answer = await cast_vote(ws, battle, "vote", rng, tally, phase, timeout)
            if answer.ok is not None and rng.random() < replay_share:
                await cast_vote(ws, battle, "replay", rng, tally, phase, timeout)
            if progress is not None:
                progress.update(1)
    except Exception as exc:
        tally.voter_errors.append(f"voter {index}: {type(exc).__name__}: {exc}")
    finally:
        ws.close()


async def load_phase(args, ports: list[int], tally: Tally) -> dict:
    budget = Budget(args.battles, args.duration)
    with tqdm(total=args.battles, desc=f"battles ({args.voters} voters)", unit="battle") as progress:
        started = time.perf_counter()
        await asyncio.gather(*(
            voter(i, base=f"http://127.0.0.1:{ports[i % len(ports)]}", port=ports[i % len(ports)], budget=budget, tally=tally, early=(i % args.early_every == 0),
                  replay_share=args.replay_share, seed=args.seed, phase="load", timeout=args.timeout,
                  progress=progress)
            for i in range(args.voters)
        ))
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "started": len(tally.started), "ended": len(tally.ended)}


async def read_leaderboard(args, base: str, port: int, tally: Tally, phase: str) -> dict:
    """Time ``args.gets`` GETs of each page while ``args.bg_voters`` voters keep voting."""
    budget = Budget(None, None)
    background = [
        asyncio.create_task(voter(1000 + i, base=base, port=port, budget=budget, tally=tally, early=False,
                                  replay_share=0.0, seed=args.seed, phase=phase, timeout=args.timeout))
        for i in range(args.bg_voters)
    ]
    votes_before = sum(1 for a in tally.answers if a.ok)
    paths = ("/leaderboard/", "/leaderboard/rankings.csv")
    results: dict[str, dict] = {}
    try:
        await asyncio.sleep(2.0)
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            for path in paths:  # warm-up: the first requests import templates and open connections
                for _ in range(3):
                    await http.get(path)
            times: dict[str, list[float]] = {p: [] for p in paths}
            statuses: dict[str, Counter] = {p: Counter() for p in paths}
            sizes: dict[str, int] = {}
            bodies: dict[str, str] = {}
            started = time.perf_counter()
            for _ in tqdm(range(args.gets), desc=f"leaderboard GETs ({phase})", unit="round"):
                for path in paths:
                    t0 = time.perf_counter()
                    response = await http.get(path)
                    times[path].append(time.perf_counter() - t0)
                    statuses[path][response.status_code] += 1
                    sizes[path] = len(response.content)
                    bodies[path] = response.text
            elapsed = time.perf_counter() - started
    finally:
        budget.stop.set()
        await asyncio.gather(*background)
    for path in paths:
        results[path] = {"p50_ms": percentile(times[path], 50) * 1e3, "p99_ms": percentile(times[path], 99) * 1e3,
                         "mean_ms": float(np.mean(times[path])) * 1e3, "statuses": dict(statuses[path]),
                         "bytes": sizes[path]}
    return {"pages": results, "seconds": elapsed, "csv": bodies["/leaderboard/rankings.csv"],
            "background_votes": sum(1 for a in tally.answers if a.ok) - votes_before}


async def vote_voter(index: int, *, port: int, session: str, battles: list[str], tally: Tally, seed: int,
                     timeout: float, progress: tqdm, phase: str, start: float, interval: float) -> None:
    """Vote on finished battles of this session: resume one (the socket follows it), vote, next. With
    ``interval`` 0, as fast as the answers come (closed loop); else the k-th resume is sent at ``start`` +
    k * ``interval`` (at once when behind), whatever the answers before it took. Only the vote message is timed."""
    rng = random.Random(seed * 7919 + index)
    try:
        ws = await BattleSocket.connect(port, session=session)
    except Exception as exc:
        tally.voter_errors.append(f"vote voter {index} connect: {type(exc).__name__}: {exc}")
        return
    try:
        for k, battle in enumerate(battles):
            if interval:
                await asyncio.sleep(max(0.0, start + k * interval - time.perf_counter()))
            started = time.perf_counter()
            ws.send({"type": "resume", "battle": battle})
            frame = await ws.reply(timeout)
            if frame.get("type") != "state":
                tally.start_errors[f"resume: {frame.get('code', frame.get('type'))}"] += 1
                continue
            tally.start_seconds.append(time.perf_counter() - started)
            await cast_vote(ws, battle, "throughput", rng, tally, phase, timeout)
            progress.update(1)
    except Exception as exc:
        tally.voter_errors.append(f"vote voter {index}: {type(exc).__name__}: {exc}")
    finally:
        ws.close()


def finished_battles(database_url: str, *, sessions: list[str], per_session: int, model_ids: tuple[int, int]
                     ) -> dict[str, list[str]]:
    """COPY ``per_session`` anonymous battles with both answers done and no vote yet for each session; returns
    their public ids by session."""
    import secrets

    import psycopg

    from ratings import style_counts

    from arena.facts import key_code, prompt_code

    answer = RESPONSES[1]
    style = "\t".join(map(str, style_counts(answer)))
    prompt = prompt_code("What is the capital of France?")
    session_codes: dict[str, int] = {}
    count = len(sessions) * per_session
    ids: dict[str, list[str]] = {s: [] for s in sessions}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    with psycopg.connect(database_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        with conn.cursor() as cursor:
            first_battle = _reserve_ids(cursor, "arena_battle", count)
            first_side = _reserve_ids(cursor, "arena_side", 2 * count)
            first_turn = _reserve_ids(cursor, "arena_turn", 2 * count)
        battle, side, turn = io.StringIO(), io.StringIO(), io.StringIO()
        for k in range(count):
            session = sessions[k % len(sessions)]
            public_id = secrets.token_urlsafe(16)
            ids[session].append(public_id)
            bid = first_battle + k
            # The codes the arena stores with a battle (arena.facts): the session's, none for the address, the
            # prompt's.
            battle.write(f"{bid}\t{public_id}\tanonymous\t{session}\t\t[\"lang:en\"]\tf\t{now}\t"
                         f"{session_codes.setdefault(session, key_code(session))}\t0\t{prompt}\n")
            for j, (position, model) in enumerate((("left", model_ids[0]), ("right", model_ids[1]))):
                sid = first_side + 2 * k + j
                side.write(f"{sid}\t{bid}\t{position}\t{model}\n")
                turn.write(f"{first_turn + 2 * k + j}\t{sid}\t0\t0\tWhat is the capital of France?\t"
                           f"{_copy_text(answer)}\tdone\t\t5\t9\t0.01\t100.0\tf\tf\t{style}\t{now}\t{now}\t{now}\t{now}\n")
        with conn.transaction(), conn.cursor() as cursor:
            for table, columns, buffer in (
                ("arena_battle", "id, public_id, mode, session_key, ip_hash, categories, retried_failure, created_at, "
                                 "session_code, address_code, prompt_code", battle),
                ("arena_side", "id, battle_id, position, model_id", side),
                ("arena_turn", "id, side_id, index, attempt, prompt, response, status, error, prompt_tokens, "
                               "output_tokens, time_to_first_token, tokens_per_second, cut_by_limit, "
                               "stop_requested, style_tokens, style_headers, "
                               "style_list_items, style_bold, created_at, queued_at, started_at, finished_at", turn),
            ):
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    copy.write(buffer.getvalue())
        conn.execute("ANALYZE arena_battle, arena_side, arena_turn")
    return ids


async def vote_sessions(bases: list[str], n: int) -> list[str]:
    return list(await asyncio.gather(*(new_session(bases[i % len(bases)]) for i in range(n))))


async def vote_phase(args, ports: list[int], battles: dict[str, list[str]], tally: Tally, rate: float) -> dict:
    """One run of the vote path: ``rate`` 0 as fast as answered, else ``rate`` votes per second offered, spread
    evenly over the voters (each sends its next resume on its own schedule, also when answers come late)."""
    sessions = list(battles)
    total = sum(len(b) for b in battles.values())
    phase = f"votes@{rate:g}"
    interval = len(sessions) / rate if rate else 0.0
    desc = f"votes ({len(sessions)} voters, " + (f"{rate:g}/s offered)" if rate else "as fast as answered)")
    with tqdm(total=total, desc=desc, unit="vote") as progress:
        started = time.perf_counter()
        await asyncio.gather(*(
            vote_voter(i, port=ports[i % len(ports)], session=session, battles=battles[session], tally=tally,
                       seed=args.seed, timeout=args.timeout, progress=progress, phase=phase,
                       start=started + i * interval / len(sessions), interval=interval)
            for i, session in enumerate(sessions)
        ))
        elapsed = time.perf_counter() - started
    answers = [a for a in tally.answers if a.phase == phase]
    ok = [a.seconds for a in answers if a.ok]
    return {"rate": rate, "seconds": elapsed, "voters": len(sessions), "battles": total, "votes_ok": len(ok),
            "votes_per_s": len(ok) / elapsed, "vote_p50_ms": percentile(ok, 50) * 1e3,
            "vote_p99_ms": percentile(ok, 99) * 1e3, "vote_max_ms": max(ok, default=0.0) * 1e3,
            "refused": Counter(a.code for a in answers if a.ok is False),
            "unanswered": sum(1 for a in answers if a.ok is None)}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# The exactly-once check


def check_votes(tally: Tally) -> dict:
    """Compare every vote answer with the Vote rows in PostgreSQL."""
    from django.db.models import Count

    from arena.models import Battle, Vote

    by_battle: dict[str, list[VoteAnswer]] = {}
    for answer in tally.answers:
        by_battle.setdefault(answer.battle, []).append(answer)
    rows = {
        public_id: (choice, n) for public_id, choice, n in
        Vote.objects.filter(battle__public_id__in=list(by_battle)).values("battle__public_id", "choice")
        .annotate(n=Count("id")).values_list("battle__public_id", "choice", "n")
    }
    # The consumer maps A/B to left/right; Vote rows store positions.
    stored_choice = {"A": "left", "B": "right", "tie": "tie", "bothbad": "bothbad"}
    problems: list[str] = []
    success_battles = refused_battles = unanswered_battles = 0
    for battle, answers in by_battle.items():
        successes = [a for a in answers if a.ok]
        row = rows.get(battle)
        if any(a.ok is None for a in answers) and not successes:
            unanswered_battles += 1
            continue
        if len(successes) > 1:
            problems.append(f"{battle}: {len(successes)} success answers")
        if successes:
            success_battles += 1
            if row is None:
                problems.append(f"{battle}: answered voted ({successes[0].choice}) but no Vote row")
            elif row[1] != 1:
                problems.append(f"{battle}: {row[1]} Vote rows")
            elif row[0] != stored_choice[successes[0].choice]:
                problems.append(f"{battle}: answered {successes[0].choice}, stored {row[0]}")
        else:
            refused_battles += 1
            if row is not None:
                problems.append(f"{battle}: every vote refused ({[a.code for a in answers]}) but a Vote row exists")
    # Every battle a voter was told about exists, and no other battle was made for these sessions.
    stored = set(Battle.objects.filter(session_key__in=tally.sessions).values_list("public_id", flat=True))
    told = set(tally.started)
    if stored != told:
        problems.append(f"battles: {len(told - stored)} announced but not stored, {len(stored - told)} stored "
                        "but never announced")
    return {"success_battles": success_battles, "refused_battles": refused_battles,
            "unanswered_battles": unanswered_battles, "battles_stored": len(stored), "problems": problems}


# ---------------------------------------------------------------------------------------------------------------
# Bulk votes


RESPONSES = (  # varied length and markdown, so style control has something to count
    "Paris.",
    "The capital of France is **Paris**, on the Seine.",
    "Here you go:\n\n```python\ndef reverse(xs):\n    return xs[::-1]\n```",
    "## Answer\n\n- Paris\n- on the Seine\n- about two million people\n\nIt has been the capital for centuries.",
    "Three names:\n\n1. Ash\n2. Smoke\n3. Pebble",
)


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _reserve_ids(cursor, table: str, n: int) -> int:
    """Take ``n`` consecutive ids from the table's identity sequence; returns the first."""
    cursor.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
    sequence = cursor.fetchone()[0]
    cursor.execute("SELECT nextval(%s)", [sequence])
    first = cursor.fetchone()[0]
    cursor.execute("SELECT setval(%s, %s)", [sequence, first + n])
    return first


VOTES_PER_SESSION = 20


def bulk_votes(database_url: str, *, count: int, model_ids: list[int], truth: np.ndarray, seed: int,
               chunk: int = 100_000, skip_key_checks: bool = False) -> dict:
    """COPY ``count`` voted anonymous battles into PostgreSQL: per vote one Battle (marked voted), two Sides, two
    done Turns, one Vote and its fact row, drawn from Bradley-Terry with ``truth`` (Elo scale) with some ties (half of them both-bad)
    that leave each pair's expected outcome unchanged.

    ``skip_key_checks``: COPY with ``session_replication_role = replica``, which skips the per-row foreign key
    triggers (the rows reference each other correctly by construction; their ids are reserved first). Needs a
    superuser, as the benchmark's own cluster has. On 2 cores a chunk of 100,000 votes took 11 s without the
    checks (with a test suite running beside it) against 16 s with them."""
    import psycopg

    rng = np.random.default_rng(seed)
    m = len(model_ids)
    ids = np.asarray(model_ids)
    now = np.datetime64(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None), "us")
    prompts = [_copy_text(p) for p in ("What is the capital of France?",
                                       "Write a python function that reverses a list.")]
    responses = [_copy_text(r) for r in RESPONSES]
    # Stored with each answer, as the arena does when it saves a turn (arena.models.turn_style_fields).
    from ratings import style_counts

    styles = ["\t".join(map(str, style_counts(r))) for r in RESPONSES]
    categories = ('["lang:en"]', '["coding", "lang:en"]')
    # The vote's fact row (arena.facts), as the vote path writes it with the vote.
    from arena.facts import OUTCOME_CODE, categories_mask, key_code, prompt_code

    masks = [categories_mask(json.loads(c)) for c in categories]
    prompt_codes = [prompt_code(p) for p in ("What is the capital of France?",
                                             "Write a python function that reverses a list.")]
    counts = [style_counts(r) for r in RESPONSES]
    lengths = [len(r) for r in RESPONSES]
    codes: dict[str, int] = {}
    started = time.perf_counter()
    with psycopg.connect(database_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        with conn.cursor() as cursor:
            first_battle = _reserve_ids(cursor, "arena_battle", count)
            first_side = _reserve_ids(cursor, "arena_side", 2 * count)
            first_turn = _reserve_ids(cursor, "arena_turn", 2 * count)
            first_vote = _reserve_ids(cursor, "arena_vote", count)
        for offset in tqdm(range(0, count, chunk), desc=f"COPY {count:,} votes", unit="chunk"):
            n = min(chunk, count - offset)
            a = rng.integers(0, m, n)
            b = (a + rng.integers(1, m, n)) % m
            p_left = 1.0 / (1.0 + 10.0 ** ((truth[b] - truth[a]) / 400.0))
            # Ties (counted as half a win each way) at 20% of the likelier loss, at most 10%: the expected outcome
            # stays p_left, so the fit should recover the true scores up to sampling error.
            p_tie = 0.2 * np.minimum(p_left, 1.0 - p_left)
            u = rng.random(n)
            choice = np.where(u < p_left - p_tie / 2, "left", np.where(u < p_left + p_tie / 2, "tie", "right"))
            choice = np.where((choice == "tie") & (rng.random(n) < 0.5), "bothbad", choice)
            coding = rng.random(n) < 0.15
            offsets = rng.integers(0, 60 * 86400 * 10**6, n).astype("timedelta64[us]")
            when = np.datetime_as_string(now - offsets)
            # The answers finished a minute before the vote: read at a human pace.
            answered = np.datetime_as_string(now - offsets - np.timedelta64(60, "s")).tolist()
            resp = rng.integers(0, len(responses), (n, 2))
            out_tokens = rng.integers(2, 60, (n, 2))
            left, right = ids[a].tolist(), ids[b].tolist()
            choice, coding, when = choice.tolist(), coding.astype(int).tolist(), when.tolist()
            resp, out_tokens = resp.tolist(), out_tokens.tolist()
            # Voters: VOTES_PER_SESSION votes per session on average, two sessions per address, spread over the
            # 60 days, so that each stored vote is an ordinary voter's for the trust screen the snapshot runs.
            voter = rng.integers(0, max(1, count // VOTES_PER_SESSION), n).tolist()
            battle, side, turn, vote, fact = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
            for i in range(n):
                k = offset + i
                bid, t, a = first_battle + k, f"{when[i]}+00", f"{answered[i]}+00"
                who = f"bulk-{seed}-{voter[i]}"
                address = f"addr-{seed}-{voter[i] // 2}"
                session_code = codes[who] if who in codes else codes.setdefault(who, key_code(who))
                address_code = codes[address] if address in codes else codes.setdefault(address, key_code(address))
                battle.write(f"{bid}\tbulk-{bid}\tanonymous\t{who}\t{address}\t"
                             f"{categories[coding[i]]}\tf\t{a}\t{session_code}\t{address_code}\t"
                             f"{prompt_codes[coding[i]]}\tt\n")
                for j, (position, model) in enumerate((("left", left[i]), ("right", right[i]))):
                    sid = first_side + 2 * k + j
                    side.write(f"{sid}\t{bid}\t{position}\t{model}\n")
                    turn.write(
                        f"{first_turn + 2 * k + j}\t{sid}\t0\t0\t{prompts[coding[i]]}\t{responses[resp[i][j]]}\tdone\t"
                        f"\t5\t{out_tokens[i][j]}\t0.01\t100.0\tf\tf\t{styles[resp[i][j]]}\t{a}\t{a}\t{a}\t{a}\n"
                    )
                vote.write(f"{first_vote + k}\t{bid}\t{choice[i]}\t{who}\tf\tf\t{t}\n")
                rl, rr = resp[i]
                fact.write(
                    f"{first_vote + k}\t{bid}\ttext\tt\tf\tf\t{left[i]}\t{right[i]}\t{OUTCOME_CODE[choice[i]]}\t{t}\t"
                    f"{a}\t{lengths[rl] + lengths[rr]}\t2\t" + "\t".join(map(str, counts[rl] + counts[rr]))
                    + f"\tt\t{masks[coding[i]]}\t{session_code}\t{address_code}\t{a}\t{prompt_codes[coding[i]]}\n")
            with conn.transaction(), conn.cursor() as cursor:
                if skip_key_checks:
                    cursor.execute("SET LOCAL session_replication_role = replica")
                for table, columns, buffer in (
                    ("arena_battle", "id, public_id, mode, session_key, ip_hash, categories, retried_failure, "
                                     "created_at, session_code, address_code, prompt_code, voted", battle),
                    ("arena_side", "id, battle_id, position, model_id", side),
                    ("arena_turn", "id, side_id, index, attempt, prompt, response, status, error, prompt_tokens, "
                                   "output_tokens, time_to_first_token, tokens_per_second, cut_by_limit, "
                                   "stop_requested, style_tokens, "
                                   "style_headers, style_list_items, style_bold, created_at, queued_at, "
                                   "started_at, finished_at", turn),
                    ("arena_vote", "id, battle_id, choice, session_key, identity_leak, simulated, created_at", vote),
                    ("arena_votefact", "vote_id, battle_id, modality, counted, simulated, imported, left_model_id, "
                                       "right_model_id, outcome, voted_at, done_at, chars, turns, "
                                       + ", ".join(f"style_{p}_{k}" for p in ("left", "right") for k in range(4))
                                       + ", has_text, categories, session_code, address_code, started_at, "
                                         "prompt_code", fact),
                ):
                    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        copy.write(buffer.getvalue())
        inserted = time.perf_counter() - started
        conn.execute("ANALYZE arena_battle, arena_side, arena_turn, arena_vote, arena_votefact")
    return {"insert_seconds": inserted, "analyze_seconds": time.perf_counter() - started - inserted}


def fit_accuracy(csv_text: str, truth_by_name: dict[str, float]) -> dict:
    """Spearman rho and RMSE (both centred) of the exported scores of the bulk models against the truth."""
    from scipy.stats import spearmanr

    rows = [r for r in csv.DictReader(io.StringIO(csv_text)) if r["model"] in truth_by_name]
    if len(rows) < 2:
        return {"models": len(rows)}
    fitted = np.array([float(r["score"]) for r in rows])
    true = np.array([truth_by_name[r["model"]] for r in rows])
    fitted, true = fitted - fitted.mean(), true - true.mean()
    return {"models": len(rows), "spearman": float(spearmanr(fitted, true).statistic),
            "rmse": float(np.sqrt(np.mean((fitted - true) ** 2))),
            "mean_interval": float(np.mean([float(r["upper"]) - float(r["lower"]) for r in rows]))}


# ---------------------------------------------------------------------------------------------------------------
# Report




def load_summary(tally: Tally, phase: dict, check: dict) -> dict:
    answers = [a for a in tally.answers if a.phase == "load"]
    votes = [a for a in answers if a.kind == "vote"]
    ok = [a for a in answers if a.ok]
    refusals = Counter((a.kind, a.code) for a in answers if a.ok is False)
    return {
        "seconds": phase["seconds"],
        "battles_started": phase["started"],
        "battles_ended": phase["ended"],
        "battles_per_s": phase["ended"] / phase["seconds"],
        "votes_ok": len(ok),
        "votes_per_s": len(ok) / phase["seconds"],
        "vote_p50_ms": percentile([a.seconds for a in votes if a.ok], 50) * 1e3,
        "vote_p99_ms": percentile([a.seconds for a in votes if a.ok], 99) * 1e3,
        "refusal_p50_ms": percentile([a.seconds for a in answers if a.ok is False], 50) * 1e3,
        "start_p50_ms": percentile(tally.start_seconds, 50) * 1e3,
        "start_p99_ms": percentile(tally.start_seconds, 99) * 1e3,
        "battle_p50_ms": percentile(tally.battle_seconds, 50) * 1e3,
        "battle_p99_ms": percentile(tally.battle_seconds, 99) * 1e3,
        "answers": Counter(a.kind for a in answers),
        "ok_by_kind": Counter(a.kind for a in ok),
        "refusals": {f"{kind}: {code}": n for (kind, code), n in sorted(refusals.items())},
        "unanswered": sum(1 for a in answers if a.ok is None),
        "start_errors": dict(tally.start_errors),
        "hung": len(tally.hung),
        "failed_sides": len(tally.failed_sides),
        "voter_errors": list(tally.voter_errors),
        "check": check,
        "cpu_seconds": phase["cpu_seconds"],
    }


def report(args, results: dict) -> str:
    load = results["load"]
    lines = [
        "# Load benchmark: battles, votes and leaderboard reads on the production processes",
        "",
        f"- Date: {results['date']}",
        f"- Machine: {machine()}",
        f"- Python {platform.python_version()}; PostgreSQL {results['postgres']}, Redis {results['redis']}",
        f"- Command: `python benchmarks/bench_load.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- 1-minute load average: {', '.join(f'{k} {v:.2f}' for k, v in results['loadavg'].items())} "
        "(2 cores shared with whatever else runs on the machine)",
        f"- Processes, all on 127.0.0.1: PostgreSQL (fsync off, as in the test stack), Redis, "
        f"{args.web_processes} daphne process{'es' if args.web_processes > 1 else ''} (voters take them in turn, "
        "as a proxy in front would), one Celery "
        f"worker -Q {POOL} ({args.worker_pool} pool, concurrency {args.worker_concurrency}), the stand-in model (`echo`: answers "
        "at once, so the load is on the web, channel-layer and database path), rate limits on but set out of reach "
        "(each start and vote pays its check); the voters and "
        "the timing run in one asyncio process beside them, so client latency includes client scheduling.",
        "",
        "## Battles and votes",
        "",
        f"{args.voters} voters, each with its own session and websocket, for {args.duration:.0f} s or {args.battles} "
        f"battles: start, wait for both turns, vote (A/B/tie/both bad at random). Every {args.early_every}th voter "
        f"also votes right after \"started\" while the answers stream; {args.replay_share:.0%} of votes are sent "
        "twice. Latencies are from sending the message to its answer on the socket.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| run time | {load['seconds']:.1f} s |",
        f"| battles started / ended | {load['battles_started']} / {load['battles_ended']} |",
        f"| battles per second | {load['battles_per_s']:.2f} |",
        f"| votes accepted per second | {load['votes_per_s']:.2f} |",
        f"| vote latency p50 / p99 (accepted) | {load['vote_p50_ms']:.0f} / {load['vote_p99_ms']:.0f} ms |",
        f"| refusal latency p50 | {load['refusal_p50_ms']:.0f} ms |",
        f"| start -> \"started\" p50 / p99 | {load['start_p50_ms']:.0f} / {load['start_p99_ms']:.0f} ms |",
        f"| start -> both answers ended p50 / p99 | {load['battle_p50_ms']:.0f} / {load['battle_p99_ms']:.0f} ms |",
        f"| vote messages sent (early / vote / replay) | {load['answers'].get('early', 0)} / "
        f"{load['answers'].get('vote', 0)} / {load['answers'].get('replay', 0)} |",
        f"| accepted (early / vote / replay) | {load['ok_by_kind'].get('early', 0)} / "
        f"{load['ok_by_kind'].get('vote', 0)} / {load['ok_by_kind'].get('replay', 0)} |",
        f"| messages with no answer in {args.timeout:.0f} s | {load['unanswered']} |",
        f"| battles with no turn frames in {args.timeout:.0f} s | {load['hung']} |",
        f"| battles with a failed side | {load['failed_sides']} |",
        f"| start refusals | {load['start_errors'] or 'none'} |",
        f"| voter connection errors | {len(load['voter_errors'])} |",
        f"| worker CPU per turn (all worker processes / turns ended) | "
        f"{1e3 * load['cpu_seconds']['celery worker'] / max(1, 2 * load['battles_ended']):.1f} ms |",
        "",
        "Refusals by message kind and code:",
        "",
        *([f"- {k}: {v}" for k, v in load["refusals"].items()] or ["- none"]),
        "",
        f"Where the CPU went during the run (CPU seconds, and cores busy on average over the {load['seconds']:.0f} s):",
        "",
        "| process | CPU s | cores |",
        "|---|---:|---:|",
        *[f"| {name} | {sec:.1f} | {sec / load['seconds']:.2f} |"
          for name, sec in sorted(load["cpu_seconds"].items(), key=lambda kv: -kv[1])],
        f"| all of the above | {sum(load['cpu_seconds'].values()):.1f} | "
        f"{sum(load['cpu_seconds'].values()) / load['seconds']:.2f} |",
        "",
    ]
    runs = results.get("vote_runs", [])
    if runs:
        def label(run: dict) -> str:
            return f"{run['rate']:g} votes/s offered" if run["rate"] else "as fast as answered"

        def row(name: str, cell) -> str:  # one table row: ``cell(run)`` for each run
            return f"| {name} | " + " | ".join(cell(run) for run in runs) + " |"

        def cores(run: dict) -> float:
            return sum(run["cpu_seconds"].values())

        names = sorted({name for run in runs for name in run["cpu_seconds"]},
                       key=lambda n: -max(run["cpu_seconds"].get(n, 0.0) for run in runs))
        lines += [
            "## The vote path",
            "",
            f"{runs[0]['voters']} voters per run (own sessions and sockets, spread over the {args.web_processes} "
            f"daphne processes), each with {args.vote_battles} finished battles of its session stored beforehand: "
            "resume a battle, vote on it, next one. *As fast as answered* is a closed loop (each voter sends its "
            "next resume when the vote is answered), so it measures how many votes the server takes, with a "
            "latency set by the queue the voters themselves keep full. *Offered* runs send a resume every "
            "voters/rate seconds per voter, on schedule whatever earlier answers took (an open loop), so the "
            "latency is the one voters see at that rate. The latency is the vote message's, from sending it to "
            "its answer.",
            "",
            row("figure", label),
            "|---|" + "---:|" * len(runs),
            row("run time", lambda run: f"{run['seconds']:.1f} s"),
            row("votes accepted", lambda run: f"{run['votes_ok']} of {run['battles']}"),
            row("votes accepted per second", lambda run: f"{run['votes_per_s']:.1f}"),
            row("vote latency p50 / p99 / max",
                lambda run: f"{run['vote_p50_ms']:.1f} / {run['vote_p99_ms']:.1f} / {run['vote_max_ms']:.0f} ms"),
            row("votes refused / unanswered", lambda run: f"{dict(run['refused']) or 'none'} / {run['unanswered']}"),
            row("cores busy on average, all processes", lambda run: f"{cores(run) / run['seconds']:.2f}"),
            row("the load generator's share of that CPU",
                lambda run: f"{run['cpu_seconds'].get('voters (this process)', 0.0) / cores(run):.0%}"),
            "",
            "CPU per process (CPU seconds, and cores busy on average over the run):",
            "",
            row("process", label),
            "|---|" + "---:|" * len(runs),
            *[row(name, lambda run, name=name: f"{run['cpu_seconds'].get(name, 0.0):.1f} s "
                  f"({run['cpu_seconds'].get(name, 0.0) / run['seconds']:.2f})") for name in names],
            "",
        ]
    check = results["check"]
    lines += [
        "## Exactly once",
        "",
        f"Checked in PostgreSQL after the run, over every vote answer of the load run and of the background "
        f"voters below: {check['success_battles']} battles with a success answer, {check['refused_battles']} "
        f"whose every vote was refused, {check['unanswered_battles']} with an unanswered vote (not judged); "
        f"{check['battles_stored']} battles stored for the voters' sessions.",
        "",
        ("**Held**: every battle with a success answer has exactly one Vote row, with the answered choice; no "
         "battle whose votes were all refused has one; at most one success answer per battle; every battle "
         "announced to a voter is stored and no other."
         if not check["problems"] else
         f"**Failed** ({len(check['problems'])} problems):\n\n" + "\n".join(f"- {p}" for p in check["problems"][:30])),
        "",
        "## Leaderboard reads against stored votes",
        "",
        f"Bulk-inserted anonymous battles among {args.models} models with known Bradley-Terry strengths "
        "(N(1000, 150^2), up to 10% ties that keep the expected outcome, 15% tagged coding), then `manage.py compute_leaderboard --force`, then "
        f"{args.gets} sequential GETs of each page (after 3 warm-up GETs) while {args.bg_voters} voters keep "
        "battling and voting.",
        "",
        "| stored votes | COPY | snapshot (compute_leaderboard) | snapshot peak RSS | /leaderboard/ p50 / p99 | "
        "rankings.csv p50 / p99 | page bytes | background votes | fit vs truth |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in results["sizes"]:
        page, export = size["reads"]["pages"]["/leaderboard/"], size["reads"]["pages"]["/leaderboard/rankings.csv"]
        snap = size["snapshot"]
        snapshot = ("did not finish in {:.0f} s (pages read the previous snapshot)".format(snap["seconds"])
                    if snap["timed_out"] else f"{snap['seconds']:.1f} s" + ("" if snap["exit"] == 0 else
                                                                              f" (exit {snap['exit']})"))
        acc = size["accuracy"]
        fit = (f"Spearman {acc['spearman']:.3f}, RMSE {acc['rmse']:.1f}, mean CI width {acc['mean_interval']:.1f}"
               if "spearman" in acc else "n/a")
        bad = {p: s for p, s in ((p, size["reads"]["pages"][p]["statuses"]) for p in size["reads"]["pages"])
               if set(s) != {200}}
        lines.append(
            f"| {size['stored_votes']:,} | {size['bulk']['insert_seconds']:.1f} s | {snapshot} | "
            f"{snap['peak_rss_mib']:.0f} MiB | {page['p50_ms']:.1f} / {page['p99_ms']:.1f} ms | "
            f"{export['p50_ms']:.1f} / {export['p99_ms']:.1f} ms | {page['bytes']:,} | "
            f"{size['reads']['background_votes']} | {fit} |" + (f" non-200: {bad}" if bad else "")
        )
    lines += [
        "",
        "Process logs and the raw figures (results.json) are in the work directory "
        f"`{args.workdir}` until the next run.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voters", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the load run (at most)")
    parser.add_argument("--battles", type=int, default=400, help="battles of the load run (at most)")
    parser.add_argument("--early-every", type=int, default=5, help="every Nth voter also votes while streaming")
    parser.add_argument("--replay-share", type=float, default=0.2, help="share of votes sent twice")
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--worker-pool", default="threads", help="Celery pool of the worker (make worker: threads)")
    parser.add_argument("--web-processes", type=int, default=2, help="daphne processes; voters take them in turn")
    parser.add_argument("--vote-voters", type=int, default=40, help="voters of the vote-path phase")
    parser.add_argument("--vote-rates", default="0,250",
                        help="vote-path runs: votes per second offered, 0 for as fast as the answers come")
    parser.add_argument("--vote-battles", type=int, default=150, help="finished battles per vote-path voter")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for any answer")
    parser.add_argument("--sizes", default="10000,1000000", help="stored votes to read the leaderboard at")
    parser.add_argument("--models", type=int, default=32)
    parser.add_argument("--gets", type=int, default=100, help="GETs of each leaderboard page per size")
    parser.add_argument("--bg-voters", type=int, default=3)
    parser.add_argument("--snapshot-timeout", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arena-bench-load"))
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "load.md"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    logs = args.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict = {"date": datetime.date.today().isoformat(), "loadavg": {"start": os.getloadavg()[0]},
                     "sizes": []}
    processes = Processes(logs)
    stack = contextlib.ExitStack()
    tally = Tally()
    try:
        postgres, redis = stack.enter_context(services(args.workdir))
        print(f"PostgreSQL on 127.0.0.1:{postgres.port}, Redis on 127.0.0.1:{redis.port}, logs in {logs}", flush=True)
        results["postgres"] = subprocess.run([str(postgres.bin_dir / "postgres"), "--version"], capture_output=True,
                                             text=True).stdout.split()[2]
        results["redis"] = subprocess.run(["redis-server", "--version"], capture_output=True,
                                          text=True).stdout.split()[2].removeprefix("v=")

        env = {
            **os.environ, "DATABASE_URL": postgres.url, "REDIS_URL": redis.url, "SECRET_KEY": "bench-only-secret",
            "DEBUG": "0", "SECURE_COOKIES": "0", "ALLOWED_HOSTS": "127.0.0.1",
            # Limits on but out of reach: every start and vote pays its rate-limit check, none is refused by it.
            "ARENA_RATE_LIMIT_BATTLES": "10000000", "ARENA_RATE_LIMIT_VOTES": "10000000", "ARENA_INPROCESS_WORKERS": "0", "ARENA_POOL_HEARTBEAT_SECONDS": "2",
            "ARENA_VAR_DIR": str(args.workdir / "var"), "CELERY_TASK_TIME_LIMIT": "60", "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1",
            # The load is the battle path; the proof of work is one solve per new session (benchmarks/bench_trust.py).
            "ARENA_POW": "0",
        }
        os.environ.update(env)
        import django

        django.setup()
        from inference.pools import live_pools
        from models_hub.models import ModelEntry

        python = sys.executable
        run_checked([python, "manage.py", "migrate", "--noinput"], env, logs / "migrate.log")
        run_checked([python, "manage.py", "collectstatic", "--noinput", "-v", "0"], env, logs / "migrate.log")

        standin_port = free_port()
        processes.start("standin", [python, "-m", "tests.standin", str(standin_port)], env)
        wait_for_port(standin_port)
        for slug in ("bench-a", "bench-b"):
            ModelEntry.objects.create(
                slug=slug, display_name=slug.replace("-", " ").title(), provider="openai", pool=POOL,
                base_url=f"http://127.0.0.1:{standin_port}/v1", remote_model="echo", max_new_tokens=64,
            )
        truth = np.random.default_rng(args.seed).normal(1000.0, 150.0, args.models)
        # Drawn into no live battle (weight 0): they hold the bulk votes the leaderboard is read with.
        bulk_models = [
            ModelEntry.objects.create(
                slug=f"bulk-{i:02d}", display_name=f"Bulk {i:02d}", provider="openai", pool="bulk",
                base_url="http://127.0.0.1:9/v1", remote_model="none", sampling_weight=0.0,
            )
            for i in range(args.models)
        ]
        truth_by_name = {e.display_name: float(t) for e, t in zip(bulk_models, truth)}

        processes.start("worker", [python, "-m", "celery", "-A", "config", "worker", "-Q", POOL, "--concurrency",
                                   str(args.worker_concurrency), "-P", args.worker_pool, "--without-gossip",
                                   "--without-mingle", "-n", f"{POOL}@load", "--loglevel", "WARNING"], env)
        web_ports = [free_port() for _ in range(args.web_processes)]
        for i, port in enumerate(web_ports):
            processes.start(f"daphne-{i}", [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                            "config.asgi:application"], env)
        for port in web_ports:
            wait_for_port(port, timeout=60)
        web_port = web_ports[0]
        deadline = time.monotonic() + 60
        while not live_pools({POOL}):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not announce pool {POOL}; see {logs / 'worker.log'}")
            time.sleep(0.2)
        base = f"http://127.0.0.1:{web_port}"
        health = httpx.get(f"{base}/healthz", timeout=10)
        if health.status_code != 200:
            raise RuntimeError(f"/healthz answered {health.status_code}: {health.text}")

        roots = {**{f"daphne {i}": processes.pid(f"daphne-{i}") for i in range(args.web_processes)},
                 "celery worker": processes.pid("worker"),
                 "PostgreSQL": int((postgres.data_dir / "postmaster.pid").read_text().split()[0]),
                 "Redis": int((redis.directory / "redis.pid").read_text().strip()),
                 "stand-in model": processes.pid("standin"), "voters (this process)": os.getpid()}
        cpu_before = cpu_seconds(roots)
        phase = asyncio.run(load_phase(args, web_ports, tally))
        cpu_after = cpu_seconds(roots)
        phase["cpu_seconds"] = {k: cpu_after[k] - cpu_before[k] for k in roots}
        results["loadavg"]["after load"] = os.getloadavg()[0]
        check = check_votes(tally)
        results["load"] = load_summary(tally, phase, check)
        print(json.dumps({k: v for k, v in results["load"].items() if k != "check"}, default=str, indent=1))
        print("exactly-once:", "held" if not check["problems"] else check["problems"][:10], flush=True)

        # The vote path alone: finished battles stored for each voter's session, voted on as fast as answered,
        # then at each offered rate.
        results["vote_runs"] = []
        rates = [float(r) for r in args.vote_rates.split(",") if r.strip()]
        if args.vote_voters and args.vote_battles:
            bases = [f"http://127.0.0.1:{port}" for port in web_ports]
            pair = tuple(ModelEntry.objects.filter(pool=POOL).order_by("slug").values_list("pk", flat=True)[:2])
            for rate in rates:
                sessions = asyncio.run(vote_sessions(bases, args.vote_voters))
                tally.sessions.update(sessions)
                battles = finished_battles(postgres.url, sessions=sessions, per_session=args.vote_battles,
                                           model_ids=pair)
                for ids in battles.values():
                    tally.started.extend(ids)
                cpu_before = cpu_seconds(roots)
                votes = asyncio.run(vote_phase(args, web_ports, battles, tally, rate))
                cpu_after = cpu_seconds(roots)
                votes["cpu_seconds"] = {k: cpu_after[k] - cpu_before[k] for k in roots}
                results["vote_runs"].append(votes)
                results["loadavg"][f"after the vote path at {rate:g}/s" if rate else "after the vote path"] = (
                    os.getloadavg()[0])
                print(json.dumps(votes, default=str, indent=1), flush=True)

        from arena.models import Vote

        bulk_so_far = 0
        for size in sizes:
            entry: dict = {"target": size}
            entry["bulk"] = bulk_votes(postgres.url, count=size - bulk_so_far, model_ids=[e.pk for e in bulk_models],
                                       truth=truth, seed=args.seed + size, skip_key_checks=True)
            bulk_so_far = size
            entry["stored_votes"] = Vote.objects.count()
            print(f"{entry['stored_votes']:,} votes stored; COPY took {entry['bulk']['insert_seconds']:.1f} s; "
                  "computing the snapshot...", flush=True)
            entry["snapshot"] = timed_command([python, "manage.py", "compute_leaderboard", "--force", "--quiet"], env,
                                              logs / f"snapshot-{size}.log", args.snapshot_timeout)
            print(f"snapshot: {entry['snapshot']}", flush=True)
            reads = asyncio.run(read_leaderboard(args, base, web_port, tally, phase=f"reads-{size}"))
            entry["accuracy"] = fit_accuracy(reads.pop("csv"), truth_by_name)
            entry["reads"] = reads
            results["loadavg"][f"after {size:,}"] = os.getloadavg()[0]
            print(json.dumps(entry, default=str, indent=1), flush=True)
            results["sizes"].append(entry)
            (args.workdir / "results.json").write_text(json.dumps(results, default=str, indent=1))

        results["check"] = check_votes(tally)  # again, with the background voters' answers
        print("exactly-once (all voters):", "held" if not results["check"]["problems"] else
              results["check"]["problems"][:10], flush=True)
        results["daphne_tracebacks"] = sum(
            (logs / f"daphne-{i}.log").read_text(errors="replace").count("Traceback") for i in range(args.web_processes)
        )
        results["worker_tracebacks"] = (logs / "worker.log").read_text(errors="replace").count("Traceback")
        results["tally"] = {"answers": [asdict(a) for a in tally.answers], "hung": tally.hung,
                            "voter_errors": tally.voter_errors}
        (args.workdir / "results.json").write_text(json.dumps(results, default=str, indent=1))
    finally:
        processes.stop_all()
        stack.close()

    text = report(args, results)
    text += (f"\nTracebacks in the logs: daphne {results['daphne_tracebacks']}, worker "
             f"{results['worker_tracebacks']}.\n")
    if args.out != "-":
        Path(args.out).write_text(text)
    print(text)
    return 0 if not results["check"]["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
