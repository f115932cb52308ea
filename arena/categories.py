"""Categories of a battle, read from its prompts: what the leaderboard can be sliced by."""

from __future__ import annotations

import re

LONG_PROMPT_CHARS = 500

_code_words = re.compile(
    r"\b(python|javascript|typescript|java|c\+\+|rust|golang|sql|regex|function|def|class|compile|bug|debug|"
    r"stack ?trace|api|json|html|css|bash|shell|algorithm|recursion|array|loop|variable|git|docker|"
    r"exception|segfault|kotlin|swift|haskell|django|react|numpy|pandas)\b",
    re.IGNORECASE,
)
_code_marks = re.compile(r"```|^\s{4}\S|[{};]\s*$|\bimport \w+|#include\s*<|=>|\(\)\s*\{", re.MULTILINE)

# A few very common words per language; enough to tell the big languages apart in a prompt of a sentence or two.
_stopwords = {
    "en": "the and is are you what how to of in it for that this with can please write",
    "de": "der die das und ist nicht ich sie wie was ein eine zu mit bitte schreibe",
    "fr": "le la les et est une un des pas vous que qui pour avec dans écris",
    "es": "el la los las y es una un que por para con como qué escribe",
    "it": "il lo la gli e è una un che per con come non scrivi",
    "pt": "o a os as e é uma um que para com como não você escreva",
    "nl": "de het een en is niet ik je wat hoe van voor met schrijf",
    "ru": "и в не на что как это я ты он она мы вы они с по для",
}
_stopword_sets = {lang: set(words.split()) for lang, words in _stopwords.items()}
_word = re.compile(r"[^\W\d_]+", re.UNICODE)


def prompt_language(text: str) -> str:
    """An ISO 639-1 code for the prompt's language, "und" when it cannot tell."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "und"
    counts = {"zh": 0, "ja": 0, "ko": 0, "ru": 0, "ar": 0}
    for c in letters:
        o = ord(c)
        if 0x3040 <= o <= 0x30FF:
            counts["ja"] += 1
        elif 0xAC00 <= o <= 0xD7AF:
            counts["ko"] += 1
        elif 0x4E00 <= o <= 0x9FFF:
            counts["zh"] += 1
        elif 0x0400 <= o <= 0x04FF:
            counts["ru"] += 1
        elif 0x0600 <= o <= 0x06FF:
            counts["ar"] += 1
    script, hits = max(counts.items(), key=lambda kv: kv[1])
    if hits > len(letters) / 3:
        if script == "zh" and counts["ja"]:
            return "ja"
        return script
    words = [w.lower() for w in _word.findall(text)]
    scores = {lang: sum(w in stop for w in words) for lang, stop in _stopword_sets.items() if lang != "ru"}
    lang, best = max(scores.items(), key=lambda kv: kv[1])
    return lang if best > 0 else "und"


def is_coding(text: str) -> bool:
    return bool(_code_marks.search(text)) or len(_code_words.findall(text)) >= 1


def battle_categories(prompts: list[str]) -> list[str]:
    """Category tags for a conversation given its user prompts in order: overall is implied and not stored."""
    first = prompts[0] if prompts else ""
    tags = []
    if any(is_coding(p) for p in prompts):
        tags.append("coding")
    if any(len(p) >= LONG_PROMPT_CHARS for p in prompts):
        tags.append("long_prompt")
    if len(prompts) > 1:
        tags.append("multi_turn")
    tags.append(f"lang:{prompt_language(first)}")
    return tags
