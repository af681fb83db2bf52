"""Live counts on the AOL validation week: MRR with and without recording the week's searches as
they happen, what a recorded search costs, how fast a trending query rises, and what the event
log's fsync policy costs.

    pip install . && python benches/live.py [--model FILE]

The completer is trained on aol_train.tsv (or ``--model``: a saved one, with its defaults).
Replay: every search of aol_valid.tsv in time order; each (previous, next) pair of a session is
scored (every prefix of the next query, the data README's protocol) *before* its own search is
recorded, so a case can only profit from searches made before it, by anyone. The same cases
without recording are the plain protocol. Then a synthetic burst: a query nobody searched is
recorded once a second, and after each search every prefix of it is completed: how many
searches until it is the top completion of its prefixes. Last, ``xrcomplete serve --events``
answering searches posted one by one on a kept-alive connection, with ``--fsync always`` and
``never``, and without an event log.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from benchdata import add_data_option, model_or_train, require

from xrcomplete import Completer
from xrcomplete.data import read_events
from xrcomplete.metrics import BUCKETS, Report

K = 10
GAP = timedelta(minutes=30)


def searches_in_time_order(valid: Path) -> list[tuple[float, str, str, bool]]:
    """(time, previous query, query, is a scored pair) for every search of the file."""
    rows = []
    last: tuple[str, str, object] | None = None
    for user, query, when in read_events(valid):
        same = last is not None and last[0] == user and when - last[2] <= GAP  # type: ignore[operator]
        is_pair = same and last is not None and query != last[1]
        prev = last[1] if is_pair and last is not None else ""
        rows.append((when.timestamp(), prev, query, is_pair))
        last = (user, query, when)
    rows.sort(key=lambda r: r[0])  # stable: a user's searches keep their order
    return rows


def score(completer: Completer, prev: str, query: str, report: Report) -> None:
    prefixes = [query[:n] for n in range(1, len(query) + 1)]
    found = completer.complete_batch([prev] * len(prefixes), prefixes, K)
    ranks = [report.add(p, [c.query for c in f], query) for p, f in zip(prefixes, found)]
    report.add_pair(ranks)


def replay(
    completer: Completer, rows: list[tuple[float, str, str, bool]], live: bool
) -> tuple[Report, float, int]:
    completer.reset_live()
    report = Report(k=K)
    record_seconds = 0.0
    for when, prev, query, is_pair in rows:
        if is_pair:
            score(completer, prev, query, report)
        if live:
            start = time.perf_counter()
            completer.record(query, prev=prev, time=when)
            record_seconds += time.perf_counter() - start
    return report, record_seconds, len(rows)


def burst(completer: Completer, query: str, start_time: float, limit: int = 3000) -> dict[str, int]:
    """Searches of ``query`` (one a second) until it is the top completion of each prefix."""
    needed: dict[int, int] = {}
    for n in range(1, limit + 1):
        completer.record(query, time=start_time + n)
        for length in range(1, len(query) + 1):
            if length not in needed and completer.complete("", query[:length], 1)[0].query == query:
                needed[length] = n
        if len(needed) == len(query):
            break
    # Per prefix length for the shortest prefixes, the most needed over the longer buckets.
    out = {f"{n} char{'s' if n > 1 else ''}": needed.get(n, limit + 1) for n in (1, 2, 3)}
    for name, lo, hi in BUCKETS[1:]:
        lengths = range(lo, min(hi or len(query), len(query)) + 1)
        out[name] = max((needed.get(n, limit + 1) for n in lengths), default=0)
    return out


def serve_rate(model: Path, tmp: Path, fsync: str | None, seconds: float = 3.0) -> float:
    """Searches answered per second, posted one at a time on one connection."""
    cmd = [sys.executable, "-m", "xrcomplete.cli", "serve", str(model), "--port", "0"]
    if fsync is not None:
        events = tmp / f"events-{fsync}.log"
        events.unlink(missing_ok=True)
        cmd += ["--events", str(events), "--fsync", fsync]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        found = re.search(r":(\d+)/", proc.stdout.readline())
        if found is None:
            raise SystemExit("live.py: the server did not start")
        conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=30)
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.request("POST", "/v1/searches", body=json.dumps({"query": f"search {n}"}))
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"live.py: a search was refused: {response.status}")
            n += 1
        rate = n / (time.perf_counter() - start)
        conn.close()
        return rate
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_option(parser)
    parser.add_argument("--model", type=Path, help="a saved completer (default: train one)")
    args = parser.parse_args(argv)
    train, valid = require(args.data, "aol_train.tsv", "aol_valid.tsv")
    with tempfile.TemporaryDirectory(prefix="xrc-live-") as tmp_dir:
        tmp = Path(tmp_dir)
        model = model_or_train(args.model, train, tmp)
        completer = Completer.load(model, mmap=True)
        rows = searches_in_time_order(valid)
        print(f"{len(rows):,} searches of aol_valid, {sum(r[3] for r in rows):,} scored pairs")
        header = (
            f"{'':<24}{'MRR@10':>8}" + "".join(f"{b:>7}" for b, _, _ in BUCKETS) + f"{'pair':>7}"
        )
        print(header)
        for live in (False, True):
            report, seconds, n = replay(completer, rows, live)
            name = "with live counts" if live else "without (the protocol)"
            buckets = "".join(f"{report.bucket_mrr(b):>7.3f}" for b, _, _ in BUCKETS)
            print(f"{name:<24}{report.mrr:>8.3f}{buckets}{report.pair_mrr:>7.3f}")
            if live:
                stats = completer.live_stats()
                print(
                    f"recording: {seconds / n * 1e6:.1f} us per search ({n:,} searches); held "
                    f"{stats['queries']:,.0f} queries, {stats['prevs']:,.0f} previous queries, "
                    f"{stats['memory_bytes'] / 2**20:.1f} MiB"
                )
        clock = completer.live_stats()["clock"]
        for query in ["xrcomplete launch party tickets", "zq7 phone case"]:
            needed = burst(completer, query, clock)
            shown = ", ".join(
                f"{b}: {n if n <= 3000 else 'not within 3,000'}" for b, n in needed.items()
            )
            print(f"burst of {query!r}, searches until it is the top completion: {shown}")
        policies = [
            ("no event log", None),
            ("--fsync never", "never"),
            ("--fsync always", "always"),
        ]
        rates = {name: serve_rate(model, tmp, fsync) for name, fsync in policies}
        print(
            "xrcomplete serve, searches posted one at a time: "
            + ", ".join(f"{n} {r:,.0f}/s ({1e3 / r:.2f} ms each)" for n, r in rates.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
