"""Serving under load: many threads on one model give the serial answers, models can be swapped
while threads serve, and memory does not grow with the number of calls."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import run_in_threads

from xrcomplete import Completer
from xrcomplete.data import SAMPLE_VALID, sample_path, session_pairs
from xrcomplete.metrics import cases

THREADS = 8
CALLS_PER_THREAD = 20_000


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Completer, Path]:
    completer = Completer(index="hybrid", progress=False).fit_log(sample_path())
    path = completer.save(tmp_path_factory.mktemp("model") / "c.xrc")
    return completer, path


def workload(seed: int = 0, n: int = 400) -> list[tuple[str, str]]:
    every = [(p, x) for p, x, _ in cases(session_pairs(sample_path(SAMPLE_VALID)))]
    return random.Random(seed).sample(every, n)


def serve(
    get: Callable[[], Completer],
    calls: list[tuple[str, str]],
    expected: list[list[tuple[str, float]]],
    n: int,
    seed: int,
) -> int:
    """``n`` mixed complete / complete_batch calls on ``get()``; returns the mismatches."""
    rng = random.Random(seed)
    wrong = 0
    done = 0
    while done < n:
        if rng.random() < 0.1:
            picks = [rng.randrange(len(calls)) for _ in range(8)]
            got = get().complete_batch(
                [calls[i][0] for i in picks], [calls[i][1] for i in picks], 10
            )
            wrong += sum(got[j] != expected[i] for j, i in enumerate(picks))
            done += len(picks)
        else:
            i = rng.randrange(len(calls))
            wrong += get().complete(calls[i][0], calls[i][1], 10) != expected[i]
            done += 1
    return wrong


def test_eight_threads_get_the_serial_answers(trained: tuple[Completer, Path]) -> None:
    completer, _ = trained
    calls = workload()
    expected = [completer.complete(p, x, 10) for p, x in calls]
    seeds = iter(range(THREADS))
    lock = threading.Lock()

    def work() -> int:
        with lock:
            seed = next(seeds)
        return serve(lambda: completer, calls, expected, CALLS_PER_THREAD, seed)

    assert run_in_threads(work, n=THREADS, timeout=240) == [0] * THREADS


def test_a_model_swapped_in_while_threads_serve(trained: tuple[Completer, Path]) -> None:
    completer, path = trained
    calls = workload(seed=1)
    expected = [completer.complete(p, x, 10) for p, x in calls]
    current = [Completer.load(path)]
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        while not stop.is_set():
            # A new object, read or mapped in turn; the old one is dropped under load.
            current[0] = Completer.load(path, mmap=swaps[0] % 2 == 1)
            swaps[0] += 1
            time.sleep(0.01)

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        wrong = run_in_threads(
            lambda: serve(lambda: current[0], calls, expected, CALLS_PER_THREAD // 4, 7),
            n=4,
            timeout=240,
        )
    finally:
        stop.set()
        thread.join(30)
    assert wrong == [0] * 4
    assert swaps[0] >= 2


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_does_not_grow_with_calls(trained: tuple[Completer, Path]) -> None:
    completer, _ = trained
    calls = workload(seed=2, n=1000)
    for p, x in calls * 5:  # warm up: thread-local scratch, allocator pools
        completer.complete(p, x, 10)
    # Two windows of 100,000 calls: a leak of even 64 bytes per call would grow each by 6 MiB,
    # while what the tests before leave behind (threads winding down, memory handed back)
    # moves RSS in one window at most.
    grown = []
    for _ in range(2):
        before = rss_kib()
        for _ in range(100):
            for p, x in calls:
                completer.complete(p, x, 10)
        grown.append(rss_kib() - before)
    assert min(grown) < 2048, f"RSS grew by {grown} KiB over two windows of 100,000 calls"
