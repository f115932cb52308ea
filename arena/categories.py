"""Categories of a battle, read from its prompts: what the leaderboard can be sliced by.

Coding is decided by weighing evidence, not by one keyword: code itself (a fenced block, a line of code, a
traceback) settles it; a programming language, library or tool that means nothing else ("javascript", "sql",
"numpy", "git") counts for a lot; a word that is also everyday English ("class", "bug", "swift", "react",
"python", "function", "loop") counts only beside other evidence. ``tests/arena/test_categories.py`` measures it
on the labelled prompts of ``tests/fixtures/prompts``.

The language comes from py3langid (langid.py's model, shipped inside the package: no download). A prompt too
short to tell, or one the model is unsure of, gets no language tag rather than a wrong one.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

LONG_PROMPT_CHARS = 500


# Every pattern here meets the voter's text, so every one has linear cost (see README, "Adding a category"): a
# pattern that can start anywhere reads a bounded stretch, or a run that a delimiter it cannot cross ends, before
# it fails; runs that could be tried from each of their own characters start only after a boundary ((?<!\w),
# \b) or a line start; possessive quantifiers (*+, ++) keep the engine from trying every split of a run again.
# Patterns that read to the end of a line start only at line starts (^, with a first match taken atomically).
_code_marks = re.compile(
    r"```"  # a fenced block
    r"|^(?: {4}|\t)\S.*[(){}\[\]=;:]"  # an indented line with code punctuation
    r"|[{};][^\S\n]*+$"  # a line ending the way C-family code does
    r"|^[^\S\n]*+(?:def|class|fn|func|function|import|from \S+ import|#include|public|private|const|let|var|return)\b"
    r".*[(){}=:;<]"
    r"|^[^\S\n]*+(?:SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE TABLE)\b.*\b(?:FROM|VALUES|SET|WHERE|\()"
    r"|\bTraceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception)\b"
    r"|=>|\(\)\s*+\{|(?<!\w)\w++\[\w*+\]\s*+[+\-*/]?="
    # for/while/if ( ... ) {: from the line's first such opening parenthesis only, taken atomically
    r"|^(?>.*?\b(?:for|while|if)[^\S\n]*+\().*\)\s*+\{"
    r"|`[^`\n()=._/\\]*+[()=._/\\][^`\n]*+`"  # inline code with code punctuation in it
    r"|(?<![=!<>])(?:===?|!==?|&&|\|\||<=|>=|\+\+|->|::)(?![=])"  # operators no prose uses
    r"|\bin (?:python|java|ruby|swift|rust|go|golang|js|node|c|r|lua|perl|php|scala|kotlin|dart|elixir|julia|matlab)"
    r"(?:[^\S\n]*+\d++(?:\.\d++)*+)?+[^\S\n]*+[?.!,]?+[^\S\n]*+$"  # "... in Ruby?": a task asked in a programming language
    r"|\b(?:keyword|syntax|operator|dependency injection|design pattern|todo app|web app)\b",
    re.MULTILINE,
)
# Words that mean programming and little else: two points each.
_code_terms = re.compile(
    r"\b(?:javascript|typescript|c\+\+|c#|golang|sql|postgres(?:ql)?|mysql|sqlite|regex|regexp|django|flask|"
    r"fastapi|numpy|pandas|pytorch|tensorflow|kubernetes|docker(?:file)?|git|github|npm|pip|json|yaml|html|css|"
    r"flexbox|bash|powershell|haskell|kotlin|scala|perl|php|ruby on rails|c\b(?=\s*(?:code|program|pointer))|"
    r"recursion|recursive|algorithm|big-o|time complexity|compile[rsd]?|compilation|segfault|"
    r"segmentation fault|stack ?trace|null ?pointer|runtime error|syntax error|debugg(?:er|ing)|refactor|"
    r"unit tests?|api endpoint|endpoint|http request|rest api|graphql|frontend|backend|linux kernel|"
    r"programming|programmer|source code|codebase|coding|code review|pull request|"
    r"list comprehension|dictionar(?:y|ies) in python|hash ?map|linked list|binary (?:search )?tree|"
    r"dijkstra|quicksort|mergesort|async|await|closure|struct|enum|pointer|mutex|thread-safe|"
    r"virtual environment|gunicorn|nginx|webpack|node\.js|nodejs|jquery|vue\.js|angular|swiftui|"
    r"rust(?=\s+(?:code|program|crate|compiler|function|struct|with|trait|borrow))|"
    r"[a-z_]+\.(?:py|js|ts|java|cpp|rs|go|rb|php|sh|sql|html|css|json|yaml|yml)\b)",
    re.IGNORECASE,
)
# Words that are also everyday English: one point each; alone they decide nothing.
_code_words = re.compile(
    r"\b(?:python|java|ruby|node|vue|js|swift|react|rust|go|class|classes|bug|bugs|debug|function|functions|method|variable|"
    r"variables|loop|loops|array|arrays|string|strings|integer|object|objects|shell|script|scripts|library|"
    r"framework|api|code|program|query|queries|database|server|error|exception|hook|component|"
    r"implement|compile|install|parse|parses|parser|type|types|test|tests|data ?frame|csv|file|files|"
    r"constant|decode|encode|dependency|package|module|commit|repository|repo|terminal|command line|cli|"
    r"process|thread|lazily|fibonacci|prime)\b",
    re.IGNORECASE,
)
# Everyday phrases that hold those words: they count for nothing.
_not_code = re.compile(
    r"\b(?:taylor swift|monty python|python snake|rust belt|world[- ]class|middle class|working class|"
    r"(?:yoga|dance|art|fitness|cooking|school) class|class of (?:ship|car|train|people|\d)|stomach bug|"
    r"bed ?bugs?|swiss roll|function of the)\b",
    re.IGNORECASE,
)
CODING_THRESHOLD = 2


@dataclass
class ScanWork:
    """What the category scan read: the characters handed to its patterns and to the language identifier, added
    up over every call. The tests read it to show that the scan's work grows with the prompt, not faster, and
    that a continued battle reads only its new prompt."""

    chars: int = 0


_work: contextvars.ContextVar[ScanWork | None] = contextvars.ContextVar("category_scan_work", default=None)


@contextlib.contextmanager
def scan_work() -> Iterator[ScanWork]:
    """Count the scan's work within the block (see ScanWork)."""
    work = ScanWork()
    token = _work.set(work)
    try:
        yield work
    finally:
        _work.reset(token)


def _read(text: str) -> str:
    """``text``, counted as read by the scan when a ScanWork is counting."""
    work = _work.get()
    if work is not None:
        work.chars += len(text)
    return text


def coding_score(text: str) -> int:
    """Points of evidence that ``text`` is about programming: a code mark is worth the threshold on its own,
    a programming term 2, an ambiguous word 1 (each distinct word counted once)."""
    if _code_marks.search(_read(text)):
        return CODING_THRESHOLD
    plain = _not_code.sub(" ", _read(text))
    terms = {m.lower() for m in _code_terms.findall(_read(plain))}
    words = {m.lower() for m in _code_words.findall(_read(plain))}
    return 2 * len(terms) + len(words)


def is_coding(text: str) -> bool:
    return coding_score(text) >= CODING_THRESHOLD


# The languages the arena names; py3langid knows 97 and is restricted to these, which makes it surer of them.
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "ru", "zh", "ja", "ko", "ar", "pl", "tr", "uk", "sv",
             "cs", "vi", "id", "hi", "fa", "he", "el", "ro", "hu", "da", "fi", "no", "th")
MIN_LANGUAGE_LETTERS = 12  # "Tell me a joke" has 11: too few letters for any identifier to be trusted
MIN_LANGUAGE_CONFIDENCE = 0.6
_ideographs = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
# A fenced block, or an unclosed fence to the end: the lazy run stops at the first closing fence and the match
# consumes what it read, so no character is read from two starts.
_fenced = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)


@functools.cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def prompt_language(text: str) -> str:
    """An ISO 639-1 code for the prompt's language, "und" when the prompt is too short or the identifier unsure.

    Code blocks are left out before identifying: they are written in no human language."""
    prose = _fenced.sub(" ", _read(text))
    letters = sum(c.isalpha() for c in _read(prose))
    # One CJK character carries about a word: a short prompt in those scripts is already long enough.
    if letters < MIN_LANGUAGE_LETTERS and len(_ideographs.findall(_read(prose))) < 3:
        return "und"
    language, confidence = _identifier().classify(_read(prose))
    return language if confidence >= MIN_LANGUAGE_CONFIDENCE else "und"


def battle_categories(prompts: list[str]) -> list[str]:
    """Category tags for a conversation given its user prompts in order: overall is implied and not stored; a
    conversation whose language cannot be told gets no language tag."""
    first = prompts[0] if prompts else ""
    tags = []
    if any(is_coding(p) for p in prompts):
        tags.append("coding")
    if any(len(p) >= LONG_PROMPT_CHARS for p in prompts):
        tags.append("long_prompt")
    if len(prompts) > 1:
        tags.append("multi_turn")
    language = prompt_language(first)
    if language != "und":
        tags.append(f"lang:{language}")
    return tags


def categories_after(categories: list[str] | None, prompt: str) -> list[str]:
    """A battle's categories once ``prompt`` is added as a further turn: what the earlier prompts gave (the
    battle's stored tags) with what the new prompt adds, in ``battle_categories``' order. Only the new prompt is
    read, so a long conversation is not scanned again at every turn; the language stays the first prompt's."""
    had = list(categories or [])
    found = {"multi_turn"}
    if is_coding(prompt):
        found.add("coding")
    if len(prompt) >= LONG_PROMPT_CHARS:
        found.add("long_prompt")
    ordered = ("coding", "long_prompt", "multi_turn")
    return [t for t in ordered if t in found or t in had] + [t for t in had if t not in ordered]
