"""The command line: the quickstart on the bundled sample, and completion over a given log."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from xrcomplete import Completer
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
    assert out.count("after ") == 9  # 4 sessions x 2 prefixes, and one slip
    slip = out.split("With a slip")[1].split("Scored on")[0]
    assert "[typo? " in slip and "<- what the user searched" in slip
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
    # Never searched whole: composed from the log's words, and marked as such.
    assert main(["complete", "--model", model, "hotwire pa", "-k", "1"]) == 0
    assert "hotwire paris  [composed]" in capsys.readouterr().out
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


def test_a_log_of_single_search_users_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "once.tsv"
    rows = [f"{u}\t{q}\t2006-03-01 10:00:00" for u, q in enumerate(["hello world", "help me"] * 3)]
    log.write_text("AnonID\tQuery\tQueryTime\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["train", str(log), "-o", str(tmp_path / "m.xrc")]) == 0, capsys.readouterr().err
    assert main(["complete", "--model", str(tmp_path / "m.xrc"), "hel", "-k", "2"]) == 0
    assert set(shown_completions(capsys.readouterr().out)) == {"hello world", "help me"}


def test_an_unwritable_output_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A log that fails at its second row: an error about it would mean training had started.
    log = tmp_path / "log.tsv"
    log.write_text("1\tq\t2006-03-01 10:00:00\nnot a row\n", encoding="utf-8")
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    for output, why in [
        (tmp_path / "missing" / "m.xrc", "does not exist"),
        (tmp_path / "a_file" / "m.xrc", "is not a folder"),
        (tmp_path, "is a folder"),  # a folder holding a folder named completer.xrc
    ]:
        if output == tmp_path:
            (tmp_path / "completer.xrc").mkdir()
        assert main(["train", str(log), "-o", str(output)]) == 2
        err = capsys.readouterr().err
        assert "cannot save to" in err and why in err and "log.tsv" not in err, err
    assert main(["retrieve", "--judgments", str(log), "--catalogue", str(log), "-o",
                 str(tmp_path / "missing" / "r.xrc"), "q"]) == 2  # fmt: skip
    assert "cannot save to" in capsys.readouterr().err


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    assert main(["train", str(tiny_log(folder)), "-o", str(folder / "m.xrc")]) == 0
    return folder / "m.xrc"


def test_a_huge_k_is_all_completions_not_a_traceback(
    saved_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["complete", "--model", str(saved_model), "-k", "99999999999999999999", "ho"]) == 0
    assert shown_completions(capsys.readouterr().out)[:2] == ["hotwire", "hotels paris"]


def test_eval_of_a_log_without_cases_fails(
    saved_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.tsv"
    for text in ["", "AnonID\tQuery\tQueryTime\n", "1\tsame\t2006-03-01 10:00:00\n" * 3]:
        empty.write_text(text, encoding="utf-8")
        capsys.readouterr()
        assert main(["eval", str(saved_model), str(empty)]) == 2
        captured = capsys.readouterr()
        assert "no case to score" in captured.err and "MRR" not in captured.out


def test_a_closed_pipe_ends_the_command_quietly(saved_model: Path) -> None:
    # As `xrcomplete complete ... | head -2`: the reader goes away after two lines.
    args = ["complete", "--model", str(saved_model), "-k", "10", *(["h", "ho", "hot"] * 300)]
    with subprocess.Popen(
        [sys.executable, "-m", "xrcomplete.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141
    assert err == ""


def test_help_is_plain_text_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and "xrcomplete quickstart" in top
    for command, shown in [
        ("train", ["(default: trie)", "(default: 3)", "(default: 30.0)", "(default: strict)"]),
        ("complete", ["(default: 10)", "(default: trie)"]),
        ("eval", ["(default: 10)"]),
        ("quickstart", ["(default: 5)"]),
        ("retrieve", ["(default: 2.33)", "(default: 10)"]),
    ]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(s in text for s in shown), (command, text)
        assert "(default: )" not in text and "(default: False)" not in text


def test_training_shows_one_progress_line_from_reading_to_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Completer(progress=True).fit_log(tiny_log(tmp_path))
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1  # one line, redrawn in place
    steps = [s.strip() for s in err.split("\r") if s.strip()]
    assert steps[0].startswith(f"xrcomplete: reading {tmp_path / 'log.tsv'} [")
    assert any("[" + "#" * 30 + "] 100%: 30 pairs" in s for s in steps)  # 10 users x 3
    assert steps[-1].startswith("xrcomplete: trained [")
    Completer(progress=False).fit_log(tiny_log(tmp_path))
    assert capsys.readouterr().err == ""


HOSTILE_VALUES = [
    "",
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "99999999999999999999",
    "\x00",
    "é\u202e",
    "x" * 10_000,
    "--",
    "/",
    "/dev/null",
    "/nonexistent/file",
]


def _hostile_commands(tmp_path: Path, model: Path) -> list[list[str]]:
    binary = tmp_path / "binary.tsv"
    binary.write_bytes(bytes(range(256)) * 4)
    folder = tmp_path / "a_folder"
    folder.mkdir(exist_ok=True)
    commands: list[list[str]] = []
    for value in [*HOSTILE_VALUES, str(binary), str(folder), str(model)]:
        commands += [
            ["train", value, "-o", str(tmp_path / "out.xrc")],
            ["train", str(binary), "-o", value],
            ["train", "--pairs", value, "-o", str(tmp_path / "out.xrc")],
            ["complete", "--model", value, "ho"],
            ["complete", "--model", str(model), "-k", value, "ho"],
            ["complete", "--model", str(model), "--prev", value, value],
            ["complete", "--log", value, "ho"],
            ["eval", value, str(binary)],
            ["eval", str(model), value],
            ["eval", str(model), str(binary), "-k", value, "--gap-minutes", value],
            ["retrieve", "--model", value, "q"],
            ["retrieve", "--judgments", value, "--catalogue", str(binary), "q"],
            ["retrieve", "--model", str(model), "q", "--min-relevance", value],
            ["train", str(binary), "-o", str(tmp_path / "o.xrc"), "--min-count", value],
            ["train", str(binary), "-o", str(tmp_path / "o.xrc"), "--index", value],
            ["quickstart", "-k", value],
            [value],
        ]
    return commands


def test_no_hostile_argument_prints_a_traceback(
    tmp_path: Path, saved_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in _hostile_commands(tmp_path, saved_model):
        if argv[:2] == ["quickstart", "-k"] and argv[2].lstrip("+").isdigit():
            continue  # a valid quickstart: covered elsewhere, and slow
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse's usage errors, --help
            code = exit.code if isinstance(exit.code, int) else 2
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err, (argv, captured.err)
        assert code in (0, 2), (argv, code, captured.err)
        if code == 2:
            lines = captured.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("xrcomplete"), (argv, captured.err)
            assert "internal error" not in lines[0], (argv, lines[0])


def test_the_installed_command_never_prints_a_traceback(saved_model: Path, tmp_path: Path) -> None:
    # A few of the hostile commands through the real entry point (a subprocess each: slow).
    for argv in [
        ["complete", "--model", str(saved_model), "-k", "99999999999999999999", "ho"],
        ["complete", "--model", str(tmp_path), "ho"],
        ["eval", str(saved_model), "/dev/null"],
        ["train", "/dev/null", "-o", "/nonexistent/m.xrc"],
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "xrcomplete.cli", *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert "Traceback" not in result.stderr, (argv, result.stderr)
        assert result.returncode in (0, 2), (argv, result.returncode)
