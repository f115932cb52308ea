"""How well a voice can be understood: it reads the arena's English example texts, an offline recogniser
(`inference.transcribe`, Whisper tiny.en) writes down what it hears, and the word error rate is the word-level
edit distance to the text over the text's word count (0 is every word heard right).

The recogniser knows English only, so the check reads only the English examples, and only for voices that read
English. `manage.py check_voices` stores a `SpeechVoiceCheck` per voice, which the voice board shows;
`benchmarks/bench_speech.py` calls the same function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from arena.categories import prompt_language
from inference.speech import synthesize
from inference.transcribe import transcribe_english
from models_hub.models import ModelEntry

from .models import SpeechVoiceCheck
from .services import EXAMPLE_TEXTS

def words(text: str) -> list[str]:
    """Lower-case words without punctuation; digits are kept as the recogniser writes them (1969)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Substitutions, deletions and insertions that turn `reference` into `hypothesis` (Levenshtein on words)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


@dataclass
class Intelligibility:
    word_error_rate: float
    words: int  # words read, over every text
    texts: int
    transcripts: list[str]


def english_examples() -> list[str]:
    return [t for t in EXAMPLE_TEXTS if prompt_language(t) == "en"]


def voice_intelligibility(entry: ModelEntry, texts: list[str] | None = None) -> Intelligibility | None:
    """The voice's word error rate over `texts` (the English examples by default); None if it reads no English."""
    if not entry.reads("en"):
        return None
    texts = texts or english_examples()
    errors = total = 0
    transcripts = []
    for text in texts:
        heard = transcribe_english(synthesize(entry, text, language="en").audio)
        transcripts.append(heard)
        reference = words(text)
        errors += word_errors(reference, words(heard))
        total += len(reference)
    return Intelligibility(errors / total, total, len(texts), transcripts)


def voice_check_record(entry: ModelEntry) -> SpeechVoiceCheck | None:
    """Measure `entry` and store the result; None for a voice that reads no English."""
    result = voice_intelligibility(entry)
    if result is None:
        return None
    return SpeechVoiceCheck.objects.create(
        model=entry, word_error_rate=result.word_error_rate, words=result.words, texts=result.texts
    )
