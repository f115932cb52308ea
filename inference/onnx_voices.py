"""What the neural voices share: their ONNX sessions, loaded once per process, and speaking sentence by sentence.

Each engine (`inference.piper`, `inference.kokoro`) turns one sentence of IPA into samples; `neural_audio` reads
the text sentence by sentence, so the first sentence is audio (``first_audio_seconds``) before the last is read,
and returns one WAV for `inference.speech.audio_normalise` to re-encode like any other clip.

Sessions live in a `ModelCache` (one per process, within ``ARENA_MODEL_CACHE_BYTES``), so each model loads once
per worker process. They run on onnxruntime's CUDA provider where the installed onnxruntime has one
(``onnxruntime-gpu`` on a CUDA host; ``ARENA_SPEECH_ONNX_DEVICE=cpu`` keeps them on the CPU), else on the CPU with
``ARENA_SPEECH_ONNX_THREADS``.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from django.conf import settings

from .base import GenerationError
from .cache import ModelCache
from .phonemes import ipa_clauses

if TYPE_CHECKING:
    import onnxruntime

    from models_hub.models import ModelEntry

logger = logging.getLogger(__name__)
SENTENCE_PAUSE = 0.2  # seconds of silence between sentences, as Piper's own reader leaves
UNKNOWN_VOICE = "This voice is misconfigured on the server."

_sessions_lock = threading.Lock()
_sessions: ModelCache | None = None


def onnx_providers() -> list[str]:
    """onnxruntime's execution providers for the voices: CUDA first where present and not turned off."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if settings.ARENA_SPEECH_ONNX_DEVICE != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_session(key: str, model: Callable[[], bytes | str]) -> onnxruntime.InferenceSession:
    """The process's one session for `key`, created on first use from `model()` (the ONNX bytes or a path)."""
    global _sessions
    with _sessions_lock:  # every thread of a worker shares the one cache, so each model loads once
        if _sessions is None:
            _sessions = ModelCache(settings.ARENA_MODEL_CACHE_BYTES)

    def load() -> onnxruntime.InferenceSession:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.ARENA_SPEECH_ONNX_THREADS
        return onnxruntime.InferenceSession(model(), sess_options=options, providers=onnx_providers())

    # An estimate of a loaded voice model (weights and onnxruntime's arenas); the cache only needs the order.
    return _sessions.get(key, load, size_of=lambda _: 256 * 1024**2)


class Engine(Protocol):
    sample_rate: int
    session: onnxruntime.InferenceSession

    def sentence(self, ipa: str) -> np.ndarray:
        """Float samples in [-1, 1] for one sentence of IPA with its punctuation."""
        ...


@dataclass
class NeuralAudio:
    wav: bytes  # 16-bit mono PCM WAV at the engine's own rate
    first_audio_seconds: float  # from the call until the first sentence was audio
    device: str  # "cuda" or "cpu": where the session ran


def sentences(clauses: list[str], max_chars: int) -> list[str]:
    """Clauses (each ending in its punctuation) joined into sentences of at most about `max_chars` characters."""
    out: list[str] = []
    current = ""
    for clause in clauses:
        if current and len(current) + 1 + len(clause) > max_chars:
            out.append(current)
            current = ""
        current = f"{current} {clause}".strip()
        if clause[-1] in ".!?…":
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return [s[:max_chars] for s in out]


def neural_audio(engine: Engine, text: str, *, espeak_voice: str, max_chars: int) -> NeuralAudio:
    started = time.perf_counter()
    pieces: list[np.ndarray] = []
    first = None
    pause = np.zeros(int(SENTENCE_PAUSE * engine.sample_rate), dtype=np.float32)
    for sentence in sentences(ipa_clauses(text, espeak_voice), max_chars):
        samples = np.asarray(engine.sentence(sentence), dtype=np.float32).ravel()
        if first is None:
            first = time.perf_counter() - started
        pieces.extend([samples, pause])
    if first is None:
        raise GenerationError("The voice produced no audio for this text.")
    audio = np.concatenate(pieces[:-1])
    peak = float(np.max(np.abs(audio))) or 1.0
    pcm = np.clip(np.round(audio / peak * 32767.0), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(engine.sample_rate)
        writer.writeframes(pcm.tobytes())
    device = "cuda" if "CUDAExecutionProvider" in engine.session.get_providers() else "cpu"
    return NeuralAudio(wav=out.getvalue(), first_audio_seconds=first, device=device)


def entry_voice(entry: ModelEntry, known: dict[str, object]) -> str:
    """The entry's voice if its engine has it; otherwise a voter-safe error (the log names the voice)."""
    voice = entry.voice.strip()
    if voice not in known:
        logger.warning("speech model %s: no voice %r in its engine (known: %s)", entry.slug, voice, ", ".join(known))
        raise GenerationError(UNKNOWN_VOICE)
    return voice


def neural_speech(entry: ModelEntry, text: str, language: str | None) -> tuple[bytes, float, str]:
    """(WAV, first-audio seconds, device) from the entry's neural engine; `inference.speech.synthesize` calls this."""
    if entry.provider == "piper":
        from .piper import piper_audio

        spoken = piper_audio(entry, text)
    else:
        from .kokoro import kokoro_audio

        spoken = kokoro_audio(entry, text, language)
    return spoken.wav, spoken.first_audio_seconds, spoken.device
