"""What the in-house MoE learns from when it is built, and the held-out chats it is judged on.

Nothing here is downloaded. The training conversations are questions about the Python standard library answered
by its own docstrings (text that ships with Python, under the PSF licence, which allows this use); the held-out
chats were written for this project and are never trained on. Both are plain Python data, so their hash is the
identity of the training data in the build marker and in a model entry's lineage.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from typing import TypedDict

# The modules whose docstrings become training conversations.
TRAINING_MODULES = (
    "argparse", "bisect", "collections", "contextlib", "dataclasses", "decimal", "difflib", "fractions",
    "functools", "heapq", "itertools", "json", "logging", "pathlib", "random", "statistics", "string", "textwrap",
)  # fmt: skip
# Questions asked about each member, chosen by a hash of its name so the data set is the same on every machine.
_QUESTIONS = (
    "What does `{name}` do in Python?",
    "Explain `{name}` from the Python standard library.",
    "I am reading some Python code that calls `{name}`. What is it for?",
    "Briefly describe `{name}`.",
)
_MAX_ANSWER_CHARS = 700


class ChatMessage(TypedDict):
    role: str
    content: str


class HeldOutChat(TypedDict):
    prompt: str
    answer: str


# Everyday chat prompts with short reference answers, written for this project: the greedy comparison with the
# dense model and the held-out perplexity use these, and no training run ever sees them.
HELD_OUT_CHATS: tuple[HeldOutChat, ...] = (
    {"prompt": "What is the capital of France?", "answer": "The capital of France is Paris."},
    {
        "prompt": "Explain in two sentences why the sky is blue.",
        "answer": "Sunlight is scattered by the molecules of the air, and blue light, with its shorter wavelength, "
        "is scattered much more than red light. So when we look at the sky away from the sun, we see mostly "
        "scattered blue light.",
    },
    {
        "prompt": "Give me three tips for sleeping better.",
        "answer": "1. Go to bed and get up at the same time every day.\n2. Keep your bedroom dark, quiet and cool.\n"
        "3. Avoid screens and caffeine in the hour before bed.",
    },
    {
        "prompt": "Write a haiku about autumn leaves.",
        "answer": "Red leaves drift and fall,\nwhispering on the cold wind,\nthe trees let them go.",
    },
    {
        "prompt": "How do I boil an egg?",
        "answer": "Put the egg in a pan of cold water, bring it to the boil, then let it simmer for about seven "
        "minutes for a firm yolk. Cool it in cold water before peeling.",
    },
    {
        "prompt": "What is photosynthesis?",
        "answer": "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make "
        "sugar for energy, releasing oxygen as a by-product.",
    },
    {
        "prompt": "Translate 'good morning' into Spanish.",
        "answer": "'Good morning' in Spanish is 'buenos días'.",
    },
    {
        "prompt": "Suggest a name for a small bakery.",
        "answer": "How about 'The Daily Crumb'? It is short, friendly and easy to remember.",
    },
    {
        "prompt": "What are the primary colours?",
        "answer": "In painting, the traditional primary colours are red, yellow and blue. For light, they are red, "
        "green and blue.",
    },
    {
        "prompt": "Why is exercise good for you?",
        "answer": "Regular exercise strengthens the heart and muscles, helps control weight, improves sleep and "
        "mood, and lowers the risk of many diseases.",
    },
    {
        "prompt": "Write one sentence to thank a colleague for their help.",
        "answer": "Thank you so much for your help with the report this week; I could not have finished it "
        "without you.",
    },
    {
        "prompt": "How many days are there in a leap year?",
        "answer": "A leap year has 366 days, one more than a common year, because February has 29 days.",
    },
    {
        "prompt": "What is the difference between weather and climate?",
        "answer": "Weather is the state of the air on a given day, such as rain or sunshine. Climate is the "
        "average pattern of weather in a place over many years.",
    },
    {
        "prompt": "Give me a simple recipe for a salad.",
        "answer": "Chop a cucumber, two tomatoes and half a red onion, add a handful of lettuce, and dress it "
        "with olive oil, lemon juice, salt and pepper.",
    },
    {
        "prompt": "What does a computer's CPU do?",
        "answer": "The CPU, or central processing unit, carries out the instructions of programs: it does the "
        "arithmetic, makes decisions and moves data between memory and the other parts of the computer.",
    },
    {
        "prompt": "Tell me a fun fact about octopuses.",
        "answer": "An octopus has three hearts and blue blood, and each of its eight arms can taste what it "
        "touches.",
    },
)


def _first_paragraphs(doc: str) -> str:
    """The opening paragraphs of a docstring, up to a few hundred characters, without code examples."""
    kept: list[str] = []
    length = 0
    for paragraph in doc.split("\n\n"):
        paragraph = paragraph.strip()
        if not paragraph or paragraph.startswith((">>>", "    ", "Example")) or paragraph.endswith("::"):
            break
        if length and length + len(paragraph) > _MAX_ANSWER_CHARS:
            break
        kept.append(paragraph)
        length += len(paragraph)
    return "\n\n".join(kept)[:_MAX_ANSWER_CHARS]


def training_conversations() -> list[list[ChatMessage]]:
    """One user question and the docstring's answer per documented public member of TRAINING_MODULES.

    Sorted by name so the list, and its hash, are the same on every machine with the same Python.
    """
    conversations: list[list[ChatMessage]] = []
    for module_name in TRAINING_MODULES:
        module = importlib.import_module(module_name)
        members = [(module_name, module)]
        for name, member in sorted(vars(module).items()):
            if name.startswith("_") or getattr(member, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(member) or inspect.isfunction(member):
                members.append((f"{module_name}.{name}", member))
        for qualified, member in members:
            answer = _first_paragraphs(inspect.getdoc(member) or "")
            if len(answer) < 40:
                continue
            pick = int(hashlib.sha256(qualified.encode()).hexdigest(), 16) % len(_QUESTIONS)
            conversations.append(
                [
                    {"role": "user", "content": _QUESTIONS[pick].format(name=qualified)},
                    {"role": "assistant", "content": answer},
                ]
            )
    return conversations


def training_data_sha256() -> str:
    """The identity of the training conversations: changes when Python's docstrings or this module change."""
    return hashlib.sha256(json.dumps(training_conversations(), sort_keys=True).encode()).hexdigest()
