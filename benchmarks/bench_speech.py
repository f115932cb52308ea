"""Speech figures for the default voices on this machine: generation time, first audio, real-time factor, and how
well each voice is understood.

    python benchmarks/bench_speech.py [--runs 5] [--voices SLUG ...] [--device auto|cpu] [--no-wer]

For each default voice (models_hub.speech_defaults: espeak-ng, Piper, Kokoro-82M) and each of three texts in its
first language (a short sentence, an example text, the longest text a voter may enter), one warm-up call and then
--runs calls of ``inference.speech.synthesize``, the same function the voice battle job calls. Generation time is
the engine's wall time to the last sample of audio, first audio the time until the first sentence was audio; the
arena's re-encoding (resampling, peak normalisation, WAV writing) is timed apart. The real-time factor is seconds of
audio per second of generation. Then each voice that reads English reads the English example texts and an offline
recogniser gives its word error rate (speech.intelligibility). The figures go to benchmarks/results/speech.md.
On a CUDA host with onnxruntime-gpu installed, ``--device auto`` runs the neural voices on the GPU.
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


FRENCH_PARAGRAPH = (
    "Le gardien du phare montait chaque soir l'escalier en colimaçon, taillait la mèche, polissait la grande lentille "
    "et regardait passer les navires au large. Une nuit de tempête, une bouteille s'échoua sur les rochers, et à "
    "l'intérieur se trouvait une lettre, écrite d'une main soignée, adressée à quiconque la trouverait. Il la lut deux "
    "fois à la lueur de la lampe, la plia avec soin et commença, pour la première fois depuis des années, à répondre."
)


def _texts(limit: int, language: str) -> dict[str, str]:
    from speech.services import EXAMPLE_TEXTS

    if language == "fr":
        return {"short": "Bonjour, et bienvenue dans l'arène.", "example": EXAMPLE_TEXTS[-2],
                "paragraph": FRENCH_PARAGRAPH[:limit]}
    paragraph = (
        "The lighthouse keeper climbed the spiral stairs every evening at dusk, trimmed the wick, polished the great "
        "lens and watched the ships pass far out at sea. One stormy night a bottle washed up on the rocks below, and "
        "inside it was a letter, written in a careful hand, addressed to whoever might find it. He read it twice by "
        "the light of the lamp, folded it carefully, and began, for the first time in years, to write a reply."
    )
    return {"short": "Hello, and welcome to the arena.", "example": EXAMPLE_TEXTS[0], "paragraph": paragraph[:limit]}


def _entries(only: list[str]) -> list:
    from models_hub.models import ModelEntry
    from models_hub.speech_defaults import DEFAULT_VOICES, NEURAL_VOICES

    voices = [(v, {"provider": "espeak"}) for v in DEFAULT_VOICES] + list(NEURAL_VOICES)
    return [
        ModelEntry(slug=v.slug, display_name=v.display_name, provider=engine["provider"], modality="speech",
                   voice=v.voice, languages=v.languages)
        for v, engine in voices if not only or v.slug in only
    ]


def measure(runs: int, only: list[str], wer: bool) -> tuple[list[dict], dict[str, dict]]:
    from django.conf import settings

    from inference.speech import audio_normalise, synthesize
    from speech.intelligibility import voice_intelligibility

    rows, checks = [], {}
    entries = _entries(only)
    jobs = [(entry, kind) for entry in entries for kind in ("short", "example", "paragraph")]
    for entry, kind in tqdm(jobs, desc="voices x texts", unit="case"):
        language = entry.languages.split(",")[0]
        text = _texts(settings.ARENA_SPEECH_MAX_CHARS, language)[kind]
        warm = synthesize(entry, text, language=language)  # warm-up: the model loaded, the engine's data cached
        results = [synthesize(entry, text, language=language) for _ in range(runs)]
        gen = statistics.median(r.generation_seconds for r in results)
        first = statistics.median(r.first_audio_seconds or r.generation_seconds for r in results)
        started = time.perf_counter()
        for _ in range(runs):
            audio_normalise(warm.audio)
        normalise = (time.perf_counter() - started) / runs
        audio = results[0].audio_seconds
        rows.append({
            "slug": entry.slug, "voice": entry.voice, "engine": entry.provider, "language": language, "text": kind,
            "chars": len(text), "generation": gen, "first_audio": first, "audio": audio, "rtf": audio / gen,
            "normalise": normalise, "bytes": len(results[0].audio), "device": results[0].device,
        })
    if wer:
        for entry in tqdm(entries, desc="intelligibility", unit="voice"):
            result = voice_intelligibility(entry)
            if result is not None:
                checks[entry.slug] = {"wer": result.word_error_rate, "words": result.words, "texts": result.texts}
    return rows, checks


def write(rows: list[dict], checks: dict[str, dict], *, runs: int, load_before: str, load_after: str) -> str:
    import onnxruntime

    from inference.onnx_voices import onnx_providers

    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    devices = sorted({r["device"] for r in rows})
    lines = [
        "# Speech figures",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Command: `python benchmarks/bench_speech.py --runs {runs}`",
        f"- Software: Python {platform.python_version()}, {version.split(' Data at')[0]}, onnxruntime"
        f" {onnxruntime.__version__} (providers used: {', '.join(onnx_providers())})",
        f"- Load average (1, 5, 15 min) before / after: {load_before} / {load_after} (a shared machine: other work"
        " slows every figure)",
        f"- Device: {', '.join(devices)}; espeak-ng runs as one subprocess per clip, single-threaded; the neural voices"
        " run on onnxruntime in the benchmark's process (all cores), their text read as IPA by one espeak-ng"
        " subprocess per clip. On a host with onnxruntime-gpu and CUDA the neural voices run on the GPU"
        " (ARENA_SPEECH_ONNX_DEVICE=cpu keeps them on the CPU); the device column says which served each row.",
        f"- Workload: each default voice reads three texts in its first language; median of {runs} calls after one"
        " warm-up call (which also loads the model once for the process).",
        "- Generation: wall time of `inference.speech.synthesize` up to the last sample of engine audio (process start"
        " included). First audio: until the first sentence was audio (neural voices read sentence by sentence; for"
        " espeak-ng, which answers all at once, the whole generation). Audio: duration of the clip the voter hears."
        " Real-time factor: audio seconds per generation second (above 1 is faster than real time). Normalise: the"
        " arena's re-encoding of the same clip (mono, 22050 Hz, 16-bit, peak-normalised, metadata stripped), timed"
        " apart.",
        "",
        "| voice | engine | voice id | text | chars | generation (s) | first audio (s) | audio (s) | real-time factor"
        " | normalise (ms) | WAV (KiB) | device |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['slug']} | {r['engine']} | {r['voice']} | {r['text']} ({r['language']}) | {r['chars']} |"
            f" {r['generation']:.3f} | {r['first_audio']:.3f} | {r['audio']:.2f} | {r['rtf']:.1f}x |"
            f" {r['normalise'] * 1000:.1f} | {r['bytes'] / 1024:.0f} | {r['device']} |"
        )
    by_voice: dict[str, list[dict]] = {}
    for r in rows:
        by_voice.setdefault(r["slug"], []).append(r)
    lines += [
        "",
        "Per voice, over the three texts (total audio over total generation time; first audio: median over the three"
        " texts' medians). Word error rate: Whisper tiny.en (offline, `inference.transcribe`) transcribing the voice"
        " reading the arena's English example texts (`speech.intelligibility`, the check `manage.py check_voices`"
        " stores for the board); the recogniser knows English only, so a voice that reads no English has none.",
        "",
        "| voice | audio (s) | generation (s) | real-time factor | first audio (s) | word error rate (en) | device |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for slug, rs in by_voice.items():
        audio, gen = sum(r["audio"] for r in rs), sum(r["generation"] for r in rs)
        first = statistics.median(r["first_audio"] for r in rs)
        check = checks.get(slug)
        wer = f"{check['wer']:.3f} ({check['words']} words)" if check else "–"
        lines.append(
            f"| {slug} | {audio:.2f} | {gen:.3f} | {audio / gen:.1f}x | {first:.3f} | {wer} | {rs[0]['device']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--voices", nargs="*", default=[], help="Only these voice slugs (default: all default voices).")
    parser.add_argument("--no-wer", action="store_true", help="Skip the intelligibility check.")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto",
                        help="auto: the neural voices on CUDA where onnxruntime has it; cpu: always the CPU.")
    args = parser.parse_args()
    os.environ["ARENA_SPEECH_ONNX_DEVICE"] = args.device
    _django()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows, checks = measure(args.runs, args.voices, not args.no_wer)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = write(rows, checks, runs=args.runs, load_before=load_before, load_after=load_after)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
