"""Training across machines (``xrcomplete.distributed``): on a local Ray cluster started here,
the files of a log read by tasks and the matcher's subtrees trained by tasks give the model of
one machine, byte for byte, also when a worker dies; and reading a log as several files gives
what reading it as one does (what the distributed reading rests on)."""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrcomplete import Completer
from xrcomplete.cli import main
from xrcomplete.data import (
    LogFormatError,
    SkippedRowsWarning,
    read_log_shard,
    sample_path,
    session_pairs,
)
from xrcomplete.distributed import RayEngine, RayShards

HEADER = "AnonID\tQuery\tQueryTime\n"


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of 2 CPUs for this module's tests; shut down after them."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        yield
    finally:
        ray.shutdown()


class CountingEngine(RayEngine):
    """A RayEngine that keeps count of the tasks it ran on the cluster, and of the bytes the
    driver got back from them."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.tasks: Counter[str] = Counter()
        self.received: Counter[str] = Counter()

    def shards(self, held: list[tuple[object, np.ndarray, int]], rest: Any) -> RayShards:
        engine = self

        class Counting(RayShards):
            def map(self, task: bytes) -> list[bytes]:
                answers = super().map(task)
                engine.received["map"] += sum(len(a) for a in answers)
                return answers

            def shuffle(self, task: bytes, n_parts: int) -> list[bytes]:
                answers = super().shuffle(task, n_parts)
                engine.received["shuffle"] += sum(len(a) for a in answers)
                return answers

            def close(self) -> None:
                engine.tasks.update(self.tasks)
                super().close()

        return Counting(self, held, rest)


@pytest.fixture(scope="module")
def log_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The first 6,000 rows of the bundled slice as one file, and as three files cut inside
    sessions (so that a session runs on from one file into the next)."""
    rows = sample_path().read_text(encoding="utf-8").splitlines(keepends=True)[1:6001]
    folder = tmp_path_factory.mktemp("log")
    whole = folder / "whole.tsv"
    whole.write_text(HEADER + "".join(rows), encoding="utf-8")
    cuts = [_cut_inside_a_session(rows, at) for at in (1500, 4000)]
    parts = []
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(rows)])):
        part = folder / f"part-{i}.tsv"
        part.write_text(HEADER + "".join(rows[a:b]), encoding="utf-8")
        parts.append(part)
    return whole, parts


def _cut_inside_a_session(rows: list[str], start: int) -> int:
    """The first row from ``start`` that continues its user's session within a minute."""
    for i in range(start, len(rows)):
        (user_a, _, time_a), (user_b, _, time_b) = (
            r.rstrip("\n").split("\t") for r in rows[i - 1 : i + 1]
        )
        if user_a == user_b and time_a[:16] == time_b[:16]:
            return i
    raise AssertionError("no session to cut")


def model_bytes(completer: Completer, folder: Path, name: str) -> bytes:
    return completer.save(folder / f"{name}.xrc").read_bytes()


def test_the_cuts_run_sessions_across_files(log_files: tuple[Path, list[Path]]) -> None:
    _, parts = log_files
    shards = [read_log_shard(p) for p in parts]
    assert all(b.first_pair_joins(a.last, 30.0) for a, b in zip(shards, shards[1:]))


@pytest.mark.usefixtures("cluster")
def test_ray_trains_the_model_of_one_machine(
    log_files: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    whole, parts = log_files
    # min_users 2: who searched what is merged across files too; range_rows: the jobs carry the
    # label range of each row; a hybrid tree: the labels' rows meet for their PIFA embeddings.
    for min_users, range_rows, index in [(1, False, "trie"), (2, True, "hybrid")]:
        here, there = (
            Completer(min_users=min_users, range_rows=range_rows, index=index, progress=False)
            for _ in range(2)
        )
        here.fit_log(whole)
        engine = CountingEngine(min_subtrees=8)
        there.fit_log(parts, engine=engine)
        # Every shard (a file's pairs, where it was read) answered each stage: which pairs are
        # held out for the ranker, their counts, transitions, then twice (the ranker's parts,
        # then the model's) counted its rows and terms, and cut its rows into pieces, trained
        # in parts.
        assert engine.tasks["answer"] % 3 == 0 and engine.tasks["answer"] > 2 * 2 * 3
        assert engine.tasks["pieces"] == 2 * 3 * (2 if index == "hybrid" else 1)
        assert engine.tasks["part"] >= 2 * 2
        # What the training sends back to the driver is trained columns, not rows: no more
        # than the model holds (twice: the ranker's parts, then the model's).
        assert engine.received["shuffle"] <= 2 * len(model_bytes(here, tmp_path, "here"))
        assert model_bytes(here, tmp_path, "here") == model_bytes(there, tmp_path, "there")
        assert there.read_report_ is not None and here.read_report_ is not None
        assert there.read_report_.rows == here.read_report_.rows == 6000
        assert there.complete("", "goo") == here.complete("", "goo")


@pytest.mark.usefixtures("cluster")
def test_searches_after_the_log_train_on_ray_as_here(
    log_files: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    whole, parts = log_files
    # Searches a server recorded after the log (pairs given here, not read on the cluster),
    # one with a previous query the log never counted.
    searches = [
        ("goo maps", "", 1.0, 1_200_000_000.0),
        ("goo maps", "never searched", 2.0, 1_200_000_060.0),
        ("hotels", "goo maps", 1.0, 1_200_000_120.0),
    ]
    here = Completer(progress=False).fit_log(whole, searches=searches)
    there = Completer(progress=False).fit_log(parts, searches=searches, engine="ray")
    assert model_bytes(here, tmp_path, "here") == model_bytes(there, tmp_path, "there")


@pytest.mark.usefixtures("cluster")
def test_a_worker_that_dies_is_retried_and_the_model_is_unchanged(
    log_files: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    whole, parts = log_files
    marker = tmp_path / "died"
    engine = RayEngine(min_subtrees=8, max_retries=2, _die_once=str(marker))
    there = Completer(progress=False).fit_log(parts, engine=engine)
    assert marker.exists()  # a worker was killed in the middle of training
    here = Completer(progress=False).fit_log(whole)
    assert model_bytes(here, tmp_path, "here") == model_bytes(there, tmp_path, "there")


@pytest.mark.usefixtures("cluster")
def test_bad_rows_are_reported_on_the_driver_as_on_one_machine(tmp_path: Path) -> None:
    good = tmp_path / "good.tsv"
    bad = tmp_path / "bad.tsv"
    good.write_text(HEADER + "1\tcheap flights\t2006-03-01 10:00:00\n", encoding="utf-8")
    bad.write_text(
        HEADER + "2\thotels\t2006-03-01 10:00:00\n2\tnot a time\tyesterday\n"
        "2\thotels paris\t2006-03-01 10:01:00\n",
        encoding="utf-8",
    )
    with pytest.raises(LogFormatError, match=rf"{bad}:3"):
        Completer(progress=False).fit_log([good, bad], engine="ray")
    with pytest.warns(SkippedRowsWarning, match="skipped 1 unreadable rows of 3"):
        there = Completer(progress=False).fit_log([good, bad], engine="ray", errors="skip")
    with pytest.warns(SkippedRowsWarning):
        here = Completer(progress=False).fit_log([good, bad], errors="skip")
    assert there.read_report_ == here.read_report_
    assert here.read_report_ is not None and here.read_report_.skipped == 1


@pytest.mark.usefixtures("cluster")
def test_the_command_line_trains_on_ray(
    log_files: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole, parts = log_files
    on_ray, here = tmp_path / "ray.xrc", tmp_path / "here.xrc"
    args = ["train", *map(str, parts), "--ray", "local"]
    assert main([*args, "-o", str(on_ray)]) == 0
    assert main(["train", str(whole), "-o", str(here)]) == 0
    assert on_ray.read_bytes() == here.read_bytes()
    capsys.readouterr()
    assert main(["train", str(whole), "--pairs", "--ray", "local", "-o", str(here)]) == 2
    assert "--ray trains on logs" in capsys.readouterr().err


def test_engines_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one file"):
        Completer(progress=False).fit_log([])
    with pytest.raises(ValueError, match="engine must be"):
        Completer(progress=False).fit_log(sample_path(), engine="spark")
    with pytest.raises(TypeError, match="engine must be"):
        Completer(progress=False).fit_log(sample_path(), engine=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retries"):
        RayEngine(max_retries=-1)


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[str], list[int]]:
    """Rows of a log (users in order, each user's searches in time order, gaps of seconds to
    hours) and the places where it is cut into files."""
    rows = []
    words = ["cheap", "flights", "hotels", "paris", "weather", "maps", "news"]
    for user in range(draw(st.integers(1, 4))):
        time = 1_141_200_000 + user * 10_000
        for _ in range(draw(st.integers(1, 8))):
            time += draw(st.sampled_from([1, 30, 600, 1900, 7200]))
            query = " ".join(draw(st.lists(st.sampled_from(words), min_size=1, max_size=2)))
            stamp = _stamp(time)
            rows.append(f"{user}\t{query}\t{stamp}\n")
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    return rows, cuts


def _stamp(seconds: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(), st.sampled_from([1, 2]))
def test_a_log_read_as_several_files_is_the_log_read_as_one(
    log: tuple[list[str], list[int]], min_users: int
) -> None:
    rows, cuts = log
    with tempfile.TemporaryDirectory() as folder:
        whole = Path(folder) / "whole.tsv"
        whole.write_text(HEADER + "".join(rows), encoding="utf-8")
        parts = []
        for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(rows)])):
            part = Path(folder) / f"part-{i}.tsv"
            part.write_text(HEADER + "".join(rows[a:b]), encoding="utf-8")
            parts.append(part)

        def fit(files: list[Path] | Path) -> bytes | str:
            try:
                completer = Completer(progress=False, min_users=min_users).fit_log(files)
            except ValueError as err:  # too little to train on: the same error either way
                return str(err)
            return completer.save(Path(folder) / "m.xrc").read_bytes()

        assert fit(parts) == fit(whole)


def test_sessions_join_across_files_by_the_log_clock_also_at_a_change_of_daylight_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 2 am on 2006-04-02 New York's clocks jumped to 3 am: 01:50 and 03:10 of the log are
    80 minutes apart on its clock (two sessions, as one file reads them), 20 minutes apart as
    timestamps of that zone. A cut between them must not join them."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        rows = ["1\tcheap flights\t2006-04-02 01:50:00\n", "1\thotels\t2006-04-02 03:10:00\n"]
        whole, first, second = (tmp_path / n for n in ("whole.tsv", "a.tsv", "b.tsv"))
        whole.write_text(HEADER + "".join(rows), encoding="utf-8")
        first.write_text(HEADER + rows[0], encoding="utf-8")
        second.write_text(HEADER + rows[1], encoding="utf-8")
        assert list(session_pairs(whole, first_queries=True)) == [
            ("", "cheap flights"),
            ("", "hotels"),
        ]
        assert not read_log_shard(second).first_pair_joins(read_log_shard(first).last, 30.0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
