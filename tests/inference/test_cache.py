from __future__ import annotations

import threading

from inference.cache import ModelCache


def test_it_loads_a_model_once_when_threads_ask_for_it_together() -> None:
    cache: ModelCache[object] = ModelCache(budget_bytes=100)
    arrived = threading.Semaphore(0)
    loads: list[object] = []
    threads_count = 8

    def load() -> object:
        # Hold the load until every thread has at least called get(): they must all wait for this one load.
        for _ in range(threads_count):
            arrived.acquire(timeout=10)
        loads.append(object())
        return loads[-1]

    got: list[object] = []

    def ask() -> None:
        arrived.release()
        got.append(cache.get("smollm2", load, size_of=lambda _: 10))

    threads = [threading.Thread(target=ask) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(loads) == 1
    assert len(got) == threads_count and all(value is loads[0] for value in got)


def test_it_loads_different_models_at_the_same_time() -> None:
    cache: ModelCache[str] = ModelCache(budget_bytes=100)
    both_loading = threading.Barrier(2, timeout=10)

    def loader(name: str):
        def load() -> str:
            both_loading.wait()  # would time out (BrokenBarrierError) if loads were serialised
            return name

        return load

    results: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.__setitem__(n, cache.get(n, loader(n), size_of=lambda _: 1)))
        for n in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results == {"a": "a", "b": "b"}


def test_it_evicts_the_least_recently_used_model_past_the_budget() -> None:
    cache: ModelCache[str] = ModelCache(budget_bytes=100)
    size = {"a": 40, "b": 40, "c": 40}

    for key in ("a", "b"):
        cache.get(key, lambda key=key: key, size_of=size.__getitem__)
    cache.get("a", lambda: "reloaded", size_of=size.__getitem__)  # a hit: a is now the most recently used
    cache.get("c", lambda: "c", size_of=size.__getitem__)

    assert cache.keys() == ["a", "c"]
    assert cache.total_bytes == 80


def test_it_makes_room_before_loading_when_told_the_size() -> None:
    cache: ModelCache[str] = ModelCache(budget_bytes=100)
    cache.get("a", lambda: "a", size_of=lambda _: 60)
    cached_while_loading: list[list[object]] = []

    def load_b() -> str:
        cached_while_loading.append(cache.keys())
        return "b"

    cache.get("b", load_b, size_of=lambda _: 60, size_hint=60)

    assert cached_while_loading == [[]]
    assert cache.keys() == ["b"]


def test_it_keeps_the_model_just_loaded_even_alone_over_budget() -> None:
    cache: ModelCache[str] = ModelCache(budget_bytes=10)
    cache.get("small", lambda: "small", size_of=lambda _: 5)

    value = cache.get("big", lambda: "big", size_of=lambda _: 50)

    assert value == "big"
    assert cache.keys() == ["big"]
    loads: list[int] = []
    cache.get("big", lambda: loads.append(1) or "again", size_of=lambda _: 50)
    assert loads == []
