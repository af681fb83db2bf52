"""How training scales: the Ray engine against one process, and one machine by log size.

    pip install '.[ray]' && python benches/scale.py [--shards 4] [--sizes 250000,1000000]

**Ray** (``--shards``): the AOL training log (``../shared/data/aol_train.tsv``) cut into that
many files at user boundaries, trained by ``fit_log(files)`` in this process (the baseline), and
with ``engine="ray"`` on a local Ray cluster of 1 and of 2 worker CPUs (each worker one thread:
``RAYON_NUM_THREADS=1``; the driver keeps its threads for the top levels). Each run is a fresh
process; the table gives the wall time, the driver's peak memory, and whether the model file is
byte-identical to the baseline's (it must be).

``--ray-log N``: the same table on a synthetic log of N distinct queries (the sizes' below,
written in AOL's layout: one user per session, a search a minute) instead of aol_train: how
the driver's memory grows with the log. ``--repeat K``: each session searched by K users (K
times the searches and the training rows, the same distinct queries).

**Sizes** (``--sizes``, none by default: a million takes about two minutes, three million about
nine, ten million about 51 and 14.2 GiB; ``--range-rows on|off`` trains both tables with
``range_rows`` forced, by default the completer's "auto": on from 500,000 pairs): synthetic logs of
that many distinct queries (``benches/load.py``'s: sessions of 5 made-up queries of 2-4 AOL
words), each written to a file of pairs first and trained in a fresh process that streams the
file into ``fit`` (as a log too large to hold as a list would be; the fit time includes reading
it): fit time, peak memory (through ``fit``, then through ``save`` as well), bytes per query on
disk, and ``complete()`` p50 / p99 over 2,000 prefixes of the log's queries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from benchdata import add_data_option, require
from load import synthetic_pairs

# Run in a fresh interpreter: train on the files given, print time, peak memory, model hash.
TRAIN = r"""
import hashlib, json, os, resource, sys, time
from xrcomplete import Completer
mode, out, files = sys.argv[1], sys.argv[2], sys.argv[4:]
range_rows = {"on": True, "off": False, "auto": "auto"}[sys.argv[3]]
engine = "local"
if mode != "local":
    import ray
    ray.init(num_cpus=int(mode), include_dashboard=False, logging_level="error",
             runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}})
    engine = "ray"
start = time.perf_counter()
completer = Completer(progress=False, range_rows=range_rows).fit_log(files, engine=engine)
seconds = time.perf_counter() - start
path = completer.save(out)
digest = hashlib.sha1(path.read_bytes()).hexdigest()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak, "sha1": digest,
                  "queries": completer.n_queries_}))
"""

# Run in a fresh interpreter: train on a synthetic log of N queries (a file of pairs, streamed
# into fit: the process never holds the list); time, memory, size, latency.
SIZE = r"""
import json, random, resource, sys, time
from xrcomplete import Completer
pairs_file, out = sys.argv[1], sys.argv[2]
range_rows = {"on": True, "off": False, "auto": "auto"}[sys.argv[3]]
rng = random.Random(0)
cases = []
def pairs():
    # Reservoir-samples 2,000 pairs for the latency cases as it reads.
    with open(pairs_file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            pair = tuple(line.rstrip("\n").split("\t"))
            if len(cases) < 2000:
                cases.append(pair)
            elif (j := rng.randrange(i + 1)) < 2000:
                cases[j] = pair
            yield pair
start = time.perf_counter()
completer = Completer(progress=False, range_rows=range_rows).fit(pairs())
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
path = completer.save(out)
peak_saved = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cases = [(p, q[: rng.randint(1, len(q))]) for p, q in cases]
times = []
for prev, prefix in cases:
    t = time.perf_counter()
    completer.complete(prev, prefix, 10)
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"seconds": seconds, "peak_mib": peak, "peak_saved_mib": peak_saved,
                  "bytes": path.stat().st_size,
                  "queries": completer.n_queries_, "p50": times[len(times) // 2],
                  "p99": times[int(len(times) * 0.99)]}))
"""


def split_by_user(log: Path, shards: int, folder: Path) -> list[Path]:
    """``log`` cut into ``shards`` files of about equal rows, each cut at a change of user."""
    with log.open(encoding="utf-8") as f:
        header = f.readline()
        rows = f.readlines()
    parts, start = [], 0
    for i in range(shards):
        end = len(rows) if i == shards - 1 else max(start, len(rows) * (i + 1) // shards)
        while (
            0 < end < len(rows) and rows[end].split("\t", 1)[0] == rows[end - 1].split("\t", 1)[0]
        ):
            end += 1
        part = folder / f"part-{i:02d}.tsv"
        part.write_text(header + "".join(rows[start:end]), encoding="utf-8")
        parts.append(part)
        start = end
    return parts


def write_log(pairs: Iterator[tuple[str, str]], path: Path, repeat: int = 1) -> None:
    """``pairs`` (a session's first query paired with "") as a log in AOL's layout: one user
    per session (``repeat`` users, one after the other), a search a minute, sessions ten
    minutes apart."""
    start = datetime(2006, 3, 1)
    user = 0

    def write(session: list[str]) -> None:
        nonlocal user
        for _ in range(repeat):
            user += 1
            for step, query in enumerate(session):
                when = start + timedelta(seconds=600 * user + 60 * step)
                f.write(f"{user}\t{query}\t{when:%Y-%m-%d %H:%M:%S}\n")

    with path.open("w", encoding="utf-8") as f:
        f.write("AnonID\tQuery\tQueryTime\n")
        session: list[str] = []
        for prev, nxt in pairs:
            if not prev and session:
                write(session)
                session = []
            session.append(nxt)
        if session:
            write(session)


def run(script: str, *args: str) -> dict[str, float | str]:
    out = subprocess.run(
        [sys.executable, "-c", script, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4, help="files the log is cut into")
    parser.add_argument(
        "--sizes", default="", help="distinct queries of the synthetic logs, comma-separated"
    )
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument(
        "--ray-log", type=int, default=0, help="Ray on a synthetic log of N distinct queries"
    )
    parser.add_argument("--repeat", type=int, default=1, help="users per synthetic session")
    parser.add_argument(
        "--range-rows",
        choices=("auto", "on", "off"),
        default="auto",
        help="range_rows of every fit (auto: the default, on from 500,000 pairs)",
    )
    add_data_option(parser)
    args = parser.parse_args(argv)
    (aol,) = require(args.data, "aol_train.tsv")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_ray:
            log, name = aol, "aol_train.tsv"
            if args.ray_log:
                log = folder / "synthetic.tsv"
                users = f"{args.repeat} user" + "s" * (args.repeat > 1)
                name = f"a synthetic log of {args.ray_log:,} queries, {users} a session"
                write_log(synthetic_pairs(aol, args.ray_log), log, args.repeat)
            parts = [str(p) for p in split_by_user(log, args.shards, folder)]
            print(f"{name} in {len(parts)} files; each run a fresh process\n")
            print("| engine | fit | vs one process | driver peak memory | same model file |")
            print("|---|---:|---:|---:|---|")
            base: dict[str, float | str] = {}
            for mode, name in [
                ("local", "one process"),
                ("1", "Ray, 1 worker CPU"),
                ("2", "Ray, 2 worker CPUs"),
            ]:
                got = run(TRAIN, mode, str(folder / f"{mode}.xrc"), args.range_rows, *parts)
                base = base or got
                print(
                    f"| {name} | {got['seconds']:.1f} s "
                    f"| {float(base['seconds']) / float(got['seconds']):.2f}x "
                    f"| {float(got['peak_mib']):,.0f} MiB | {got['sha1'] == base['sha1']} |",
                    flush=True,
                )
        sizes = [int(s) for s in args.sizes.split(",") if s]
        if sizes:
            print(
                "\n| distinct queries | fit | peak memory | with save | model file "
                "| bytes per query | complete p50 / p99 |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            pairs_file = folder / f"size-{n}.tsv"
            with pairs_file.open("w", encoding="utf-8") as f:
                f.writelines(f"{prev}\t{nxt}\n" for prev, nxt in synthetic_pairs(aol, n))
            got = run(SIZE, str(pairs_file), str(folder / f"size-{n}.xrc"), args.range_rows)
            pairs_file.unlink()
            queries = float(got["queries"])
            print(
                f"| {int(queries):,} | {float(got['seconds']):.0f} s "
                f"| {float(got['peak_mib']) / 1024:.2f} GiB "
                f"| {float(got['peak_saved_mib']) / 1024:.2f} GiB "
                f"| {float(got['bytes']) / 1e6:.0f} MB | {float(got['bytes']) / queries:,.0f} "
                f"| {float(got['p50']) * 1e6:.0f} / {float(got['p99']) * 1e6:.0f} µs |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
