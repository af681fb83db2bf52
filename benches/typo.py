"""Typo tolerance on the AOL validation week: MRR@10 of prefixes with one injected edit against
the same prefixes typed exactly, with and without fuzzy completion, and what it costs.

    pip install . && python benches/typo.py [--model FILE] [--seed 0]

The completer is trained on aol_train.tsv (or ``--model``: a saved one). Cases: the data
README's protocol (every prefix of every (previous, next) pair's next query), restricted to
prefixes of 5 or more characters. Each gets one edit, drawn with the seed: a substitution (a
letter a-z), a transposition of two adjacent characters, a deletion or an insertion, never at
the first character. A case is right when the next query is in the top 10: for a typed prefix
the completions must start with it, so without fuzzy completion an edited prefix can only be
completed by chance. Also: the exact prefixes' MRR with fuzzy on and off (the answers of
corrected prefixes are ranked with the typed prefix's own, so a correction can push the right
answer down: what typo tolerance costs), and complete() latency, one call at a time.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchdata import add_data_option, model_or_train, require

from xrcomplete import Completer
from xrcomplete.data import session_pairs

K = 10
MIN_CHARS = 5


def inject(prefix: str, rng: random.Random) -> str:
    """``prefix`` with one edit after its first character (the result differs from it)."""
    while True:
        kind = rng.choice(("substitute", "transpose", "delete", "insert"))
        i = rng.randrange(1, len(prefix))
        if kind == "substitute":
            edited = prefix[:i] + rng.choice(string.ascii_lowercase) + prefix[i + 1 :]
        elif kind == "transpose" and i + 1 < len(prefix):
            edited = prefix[:i] + prefix[i + 1] + prefix[i] + prefix[i + 2 :]
        elif kind == "delete":
            edited = prefix[:i] + prefix[i + 1 :]
        elif kind == "insert":
            edited = prefix[:i] + rng.choice(string.ascii_lowercase) + prefix[i:]
        else:
            continue
        if edited != prefix and edited.strip():
            return edited


def mrr(
    completer: Completer, cases: list[tuple[str, str, str]], **options: Any
) -> tuple[float, int]:
    found = completer.model.complete_batch(
        [p for p, _, _ in cases], [x for _, x, _ in cases], K, **options
    )
    total, fuzzy = 0.0, 0
    for (_, _, answer), got in zip(cases, found):
        queries = [q for q, _, _, _ in got]
        fuzzy += any(src == "fuzzy" for _, _, src, _ in got)
        if answer in queries:
            total += 1.0 / (queries.index(answer) + 1)
    return total / len(cases), fuzzy


def typo_table(completer: Completer, pairs: list[tuple[str, str]], seed: int = 0) -> str:
    """The MRR table of ``completer`` on every prefix of 5+ characters of ``pairs``' next
    queries, typed exactly and with one edit, fuzzy completion on and off."""
    rng = random.Random(seed)
    exact = [(prev, nxt[:n], nxt) for prev, nxt in pairs for n in range(MIN_CHARS, len(nxt) + 1)]
    typo = [(prev, inject(prefix, rng), nxt) for prev, prefix, nxt in exact]
    off = {"fuzzy_one": 0, "fuzzy_two": 0}
    rows = []
    for name, cases, options in (
        ("typed exactly, fuzzy off", exact, off),
        ("typed exactly, fuzzy on", exact, {}),
        ("one edit, fuzzy off", typo, off),
        ("one edit, fuzzy on", typo, {}),
    ):
        score, fuzzy = mrr(completer, cases, **options)
        rows.append((name, score, fuzzy / len(cases)))
    lines = [f"{len(exact):,} cases of {MIN_CHARS}+ characters"]
    lines.append(f"{'cases':<28}{'MRR@10':>8}{'with a fuzzy answer':>21}")
    lines += [f"{name:<28}{score:>8.4f}{share:>20.1%}" for name, score, share in rows]
    lines.append(
        f"one edit / typed exactly (fuzzy on): {rows[3][1] / rows[1][1]:.3f}x; "
        f"exact-prefix MRR change from fuzzy: {rows[1][1] - rows[0][1]:+.4f}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a saved completer (default: train one)")
    parser.add_argument("--seed", type=int, default=0)
    add_data_option(parser)
    args = parser.parse_args(argv)
    train, valid = require(args.data, "aol_train.tsv", "aol_valid.tsv")
    with tempfile.TemporaryDirectory() as folder:
        completer = Completer.load(model_or_train(args.model, train, Path(folder)), mmap=True)
        pairs = list(session_pairs(valid))
        print(typo_table(completer, pairs, args.seed), flush=True)
        rng = random.Random(args.seed)
        typo = [
            (prev, inject(nxt[:n], rng), nxt)
            for prev, nxt in pairs
            for n in range(MIN_CHARS, len(nxt) + 1)
        ]

        def latency(sample: list[tuple[str, str, str]], **options: Any) -> tuple[float, float]:
            times = []
            for prev, prefix, _ in sample:
                t0 = time.perf_counter_ns()
                completer.model.complete(prev, prefix, K, **options)
                times.append(time.perf_counter_ns() - t0)
            times.sort()
            return times[len(times) // 2] / 1e3, times[int(len(times) * 0.99)] / 1e3

        # The protocol's prefixes (every length), typed right, and the edited ones.
        every = [(p, n[:i], n) for p, n in pairs for i in range(1, len(n) + 1)]
        draw = random.Random(args.seed + 1)
        for name, sample in (
            ("typed right, any length", draw.sample(every, min(5000, len(every)))),
            ("one edit, 5+ characters", draw.sample(typo, min(5000, len(typo)))),
        ):
            off = latency(sample, fuzzy_one=0, fuzzy_two=0)
            on = latency(sample)
            print(
                f"complete() of {name}: p50 / p99 {off[0]:.0f} / {off[1]:.0f} µs fuzzy off, "
                f"{on[0]:.0f} / {on[1]:.0f} µs fuzzy on"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
