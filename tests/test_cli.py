"""The command line: the quickstart on the bundled sample, and completion over a given log."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from xrcomplete.cli import main
from xrcomplete.data import (
    SAMPLE_VALID,
    normalize_query,
    prefix_examples,
    read_pairs,
    read_queries,
    sample_path,
    session_pairs,
)


def test_quickstart_trains_on_the_sample_and_scores_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quickstart", "-k", "3"]) == 0
    out = capsys.readouterr().out
    counts = Counter(read_queries(sample_path()))
    assert f"on {len(counts):,} distinct queries" in out
    assert out.count("after ") == 8  # 4 sessions x 2 prefixes
    lines = out.splitlines()
    mpc = next(line for line in lines if line.startswith("  most popular "))
    ours = next(line for line in lines if line.startswith("  xrcomplete "))
    assert float(ours.split()[1]) > float(mpc.split()[2])  # MRR@10 beats popularity


def tiny_log(tmp_path: Path) -> Path:
    log = tmp_path / "log.tsv"
    rows = ["AnonID\tQuery\tQueryTime"]
    for user in range(10):
        rows += [
            f"{user}\tCheap Flights\t2006-03-01 10:00:00",
            f"{user}\thotels paris \t2006-03-01 10:01:00",
            f"{user}\thotwire\t2006-03-02 10:00:00",
            f"{user}\thotwire\t2006-03-02 10:00:01",
            f"{user}\t   \t2006-03-02 10:00:02",
        ]
    log.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return log


def shown_completions(out: str) -> list[str]:
    """The queries of the completion lines ("    score  query") of the CLI's output."""
    return [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("    ")]


def test_train_complete_eval_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tiny_log(tmp_path)
    model = tmp_path / "model"
    assert main(["train", str(log), "-o", str(model) + "/", "--index", "hybrid"]) == 0
    assert "saved to" in capsys.readouterr().out
    assert main(["complete", "--model", str(model), "--prev", "cheap flights", "hot"]) == 0
    assert shown_completions(capsys.readouterr().out)[0] == "hotels paris"
    assert main(["complete", "--model", str(model), "hot"]) == 0
    # hotwire was searched 20 times, hotels paris 10
    assert shown_completions(capsys.readouterr().out)[0] == "hotwire"
    assert main(["complete", "--log", str(log), "--prev", "cheap flights", "h", "-k", "1"]) == 0
    assert "hotels paris" in capsys.readouterr().out
    assert main(["eval", str(model), str(log)]) == 0
    assert capsys.readouterr().out.startswith("MRR@10 1.000")


def test_train_on_a_pair_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "prev\tnext\n" + "Cheap Flights\thotels paris\n\thotwire\n\thotwire\n" * 3 + "x\t  \n",
        encoding="utf-8",
    )
    assert list(read_pairs(pairs))[:3] == [
        ("cheap flights", "hotels paris"),
        ("", "hotwire"),
        ("", "hotwire"),
    ]
    assert main(["train", "--pairs", str(pairs), "-o", str(tmp_path / "m.xrc")]) == 0
    capsys.readouterr()
    model = str(tmp_path / "m.xrc")
    assert main(["complete", "--model", model, "--prev", "cheap flights", "h", "-k", "2"]) == 0
    assert shown_completions(capsys.readouterr().out) == ["hotels paris", "hotwire"]
    (tmp_path / "bad.tsv").write_text("one column\n", encoding="utf-8")
    assert main(["train", "--pairs", str(tmp_path / "bad.tsv"), "-o", str(tmp_path / "b")]) == 2
    assert "bad.tsv:1: expected 'previous query<TAB>next query'" in capsys.readouterr().err


def test_a_malformed_log_is_a_clear_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "bad.tsv"
    log.write_text("just one column\n", encoding="utf-8")
    assert main(["complete", "--log", str(log), "x"]) == 2
    assert "bad.tsv:1: expected tab-separated" in capsys.readouterr().err
    assert main(["complete", "--log", str(tmp_path / "missing.tsv"), "x"]) == 2
    assert "No such file" in capsys.readouterr().err
    (tmp_path / "junk.xrc").write_bytes(b"junk")
    assert main(["complete", "--model", str(tmp_path / "junk.xrc"), "x"]) == 2
    assert "xrcomplete: error:" in capsys.readouterr().err


def test_the_installed_command_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xrcomplete.cli", "quickstart", "-k", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "xrcomplete" in result.stdout and "MRR@10" in result.stdout


def test_bundled_samples_are_present_and_normalised() -> None:
    queries = list(read_queries(sample_path(SAMPLE_VALID)))
    assert queries
    assert all(q == normalize_query(q) and q for q in queries)
    with pytest.raises(ValueError, match="no bundled sample"):
        sample_path("../../etc/passwd")


def test_session_pairs_follow_the_protocol(tmp_path: Path) -> None:
    log = tmp_path / "log.tsv"
    log.write_text(
        "AnonID\tQuery\tQueryTime\n"
        "1\tCheap Flights\t2006-03-01 10:00:00\n"
        "1\thotels \t2006-03-01 10:29:59\n"  # same session (gap under 30 min)
        "1\thotels\t2006-03-01 10:30:30\n"  # next == prev: no pair
        "1\t\t2006-03-01 10:31:00\n"  # empty query: skipped
        "1\tparis\t2006-03-01 10:40:00\n"
        "1\tmaps\t2006-03-01 11:10:01\n"  # gap over 30 min: new session
        "2\tweather\t2006-03-01 11:10:30\n",  # new user: new session
        encoding="utf-8",
    )
    assert list(session_pairs(log)) == [("cheap flights", "hotels"), ("hotels", "paris")]
    assert list(session_pairs(log, first_queries=True)) == [
        ("", "cheap flights"),
        ("cheap flights", "hotels"),
        ("hotels", "paris"),
        ("", "maps"),
        ("", "weather"),
    ]
    assert list(session_pairs(log, gap_minutes=60)) == [
        ("cheap flights", "hotels"),
        ("hotels", "paris"),
        ("paris", "maps"),
    ]
    with pytest.raises(ValueError, match="gap_minutes"):
        list(session_pairs(log, gap_minutes=0))
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tq\tyesterday\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:1: QueryTime 'yesterday'"):
        list(session_pairs(bad))


def test_prefix_examples_sample_distinct_prefixes_reproducibly() -> None:
    pairs = [("p", "abcdefgh"), ("", "ab")]
    examples = list(prefix_examples(pairs, per_pair=3, seed=7))
    assert len(examples) == 3 + 2  # "ab" is shorter than 3: both of its prefixes
    for prev, prefix, nxt in examples:
        assert (prev, nxt) in pairs
        assert nxt.startswith(prefix) and prefix
    long = [prefix for prev, prefix, nxt in examples if nxt == "abcdefgh"]
    assert len(set(long)) == 3
    assert examples == list(prefix_examples(pairs, per_pair=3, seed=7))
    many = [("p", "abcdefghijklmnop")] * 20
    assert list(prefix_examples(many, seed=1)) != list(prefix_examples(many, seed=2))
    with pytest.raises(ValueError, match="per_pair"):
        list(prefix_examples(pairs, per_pair=0))
