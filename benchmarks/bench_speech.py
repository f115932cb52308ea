"""Speech figures for the default voices on this machine: generation time, audio duration, real-time factor.

    python benchmarks/bench_speech.py [--runs 5]

For each default espeak-ng voice (models_hub.speech_defaults) and each of three texts (a short sentence, a
TTS-Arena-style example, the longest text a voter may enter), one warm-up call and then --runs calls of
``inference.speech.synthesize``, the same function the voice battle job calls. Generation time is the engine's wall
time to the last byte of audio; the arena's re-encoding (resampling, peak normalisation, WAV writing) is timed
apart. The real-time factor is seconds of audio per second of generation. The figures go to
benchmarks/results/speech.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from machine import machine  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "speech.md"


def _django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _texts(limit: int) -> dict[str, str]:
    from speech.services import EXAMPLE_TEXTS

    paragraph = (
        "The lighthouse keeper climbed the spiral stairs every evening at dusk, trimmed the wick, polished the great "
        "lens and watched the ships pass far out at sea. One stormy night a bottle washed up on the rocks below, and "
        "inside it was a letter, written in a careful hand, addressed to whoever might find it. He read it twice by "
        "the light of the lamp, folded it carefully, and began, for the first time in years, to write a reply."
    )
    return {"short": "Hello, and welcome to the arena.", "example": EXAMPLE_TEXTS[0], "paragraph": paragraph[:limit]}


def measure(runs: int) -> list[dict]:
    from django.conf import settings

    from inference.speech import audio_normalise, synthesize
    from inference.speech import _espeak_audio
    from models_hub.models import ModelEntry
    from models_hub.speech_defaults import DEFAULT_VOICES

    texts = _texts(settings.ARENA_SPEECH_MAX_CHARS)
    rows = []
    jobs = [(voice, kind) for voice in DEFAULT_VOICES for kind in texts]
    for (slug, name, voice), kind in tqdm(jobs, desc="voices x texts", unit="case"):
        entry = ModelEntry(slug=slug, display_name=name, provider="espeak", modality="speech", voice=voice)
        text = texts[kind]
        synthesize(entry, text)  # warm-up: the engine's data files into the page cache
        results = [synthesize(entry, text) for _ in range(runs)]
        raw = _espeak_audio(entry, text)
        started = time.perf_counter()
        for _ in range(runs):
            audio_normalise(raw)
        normalise = (time.perf_counter() - started) / runs
        gen = statistics.median(r.generation_seconds for r in results)
        audio = results[0].audio_seconds
        rows.append({
            "slug": slug, "voice": voice, "text": kind, "chars": len(text), "generation": gen, "audio": audio,
            "rtf": audio / gen, "normalise": normalise, "bytes": len(results[0].audio),
        })
    return rows


def write(rows: list[dict], *, runs: int, load_before: str, load_after: str) -> str:
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Speech figures",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Command: `python benchmarks/bench_speech.py --runs {runs}`",
        f"- Software: Python {platform.python_version()}, {version.split(' Data at')[0]}",
        f"- Load average (1, 5, 15 min) before / after: {load_before} / {load_after} (a shared machine: other work"
        " slows every figure)",
        "- Device: CPU; espeak-ng runs as one subprocess per clip, single-threaded.",
        f"- Workload: each default voice reads three texts; median of {runs} calls after one warm-up call.",
        "- Generation: wall time of `inference.speech.synthesize` up to the last byte of engine audio (process start"
        " included). Audio: duration of the clip the voter hears. Real-time factor: audio seconds per generation"
        " second (above 1 is faster than real time). Normalise: the arena's re-encoding of the same clip (mono,"
        " 22050 Hz, 16-bit, peak-normalised, metadata stripped), timed apart.",
        "",
        "| voice | espeak-ng voice | text | chars | generation (s) | audio (s) | real-time factor | normalise (ms) | WAV (KiB) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['slug']} | {r['voice']} | {r['text']} | {r['chars']} | {r['generation']:.3f} | {r['audio']:.2f} |"
            f" {r['rtf']:.1f}x | {r['normalise'] * 1000:.1f} | {r['bytes'] / 1024:.0f} |"
        )
    by_voice: dict[str, list[dict]] = {}
    for r in rows:
        by_voice.setdefault(r["slug"], []).append(r)
    lines += ["", "Per voice, over the three texts (total audio over total generation time):", ""]
    lines += ["| voice | audio (s) | generation (s) | real-time factor |", "| --- | ---: | ---: | ---: |"]
    for slug, rs in by_voice.items():
        audio, gen = sum(r["audio"] for r in rs), sum(r["generation"] for r in rs)
        lines.append(f"| {slug} | {audio:.2f} | {gen:.3f} | {audio / gen:.1f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    _django()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = measure(args.runs)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = write(rows, runs=args.runs, load_before=load_before, load_after=load_after)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
