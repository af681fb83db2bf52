"""Reading real logs: bad bytes, short rows, bad times and byte-order marks get one clear error
naming path:line (or are skipped and counted), and no input makes a reader fail otherwise."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrcomplete import Completer, LogFormatError, SkippedRowsWarning
from xrcomplete.data import (
    ReadReport,
    read_catalogue,
    read_events,
    read_judgments,
    read_pairs,
    read_queries,
    session_pairs,
)

GOOD = [
    "AnonID\tQuery\tQueryTime",
    "1\tcheap flights\t2006-03-01 10:00:00",
    "1\thotels paris\t2006-03-01 10:01:00",
    "2\tweather\t2006-03-01 11:00:00",
]


def write(tmp_path: Path, data: bytes, name: str = "log.tsv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_bad_utf8_byte_names_its_line(tmp_path: Path) -> None:
    data = ("\n".join(GOOD[:2]) + "\n").encode() + b"1\thot\xffels\t2006-03-01 10:01:00\n"
    data += (GOOD[3] + "\n").encode()
    log = write(tmp_path, data)
    with pytest.raises(LogFormatError, match=r"log\.tsv:3: invalid UTF-8 \(byte 0xff") as caught:
        list(read_events(log))
    assert (caught.value.line, caught.value.path) == (3, str(log))
    assert isinstance(caught.value, ValueError)
    # The error pickles whole (multiprocessing, Ray).
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.path, again.line, again.reason) == (
        caught.value.path,
        3,
        caught.value.reason,
    )
    with pytest.raises(LogFormatError, match=r"log\.tsv:3:"):
        Completer(progress=False).fit_log(log)


def test_skip_drops_bad_rows_and_counts_them(tmp_path: Path) -> None:
    rows = [
        *GOOD[:3],
        "1\tonly two columns",
        "1\tq\tyesterday",
        "2\tweather\t2006-03-01 11:00:00",
        "2\twells fargo\t2006-03-01 11:01:00",
    ]
    log = write(tmp_path, ("\n".join(rows) + "\n").encode() + b"3\t\xfe\t2006-03-01 11:00:00\n")
    with pytest.raises(LogFormatError, match=r":4: expected tab-separated AnonID"):
        list(read_events(log))
    report = ReadReport()
    skipped = r"skipped 3 unreadable rows of 7 \(the first at line 4: expected"
    with pytest.warns(SkippedRowsWarning, match=skipped):
        events = list(read_events(log, errors="skip", report=report))
    assert [q for _, q, _ in events] == ["cheap flights", "hotels paris", "weather", "wells fargo"]
    assert (report.rows, report.skipped) == (4, 3)
    assert [e.split(": ")[0] for e in report.examples] == [f"{log}:4", f"{log}:5", f"{log}:8"]
    assert "QueryTime 'yesterday'" in report.examples[1]
    with pytest.warns(SkippedRowsWarning):
        c = Completer(progress=False).fit_log(log, errors="skip")
    assert c.read_report_ is not None and c.read_report_.skipped == 3
    assert [q for q, _ in c.complete("weather", "w", 1)] == ["wells fargo"]
    with pytest.raises(ValueError, match="errors must be one of"):
        list(read_events(log, errors="ignore"))
    with pytest.raises(ValueError, match="errors must be one of"):
        Completer(progress=False).fit_log(log, errors="replace")


def test_a_byte_order_mark_before_the_header_is_accepted(tmp_path: Path) -> None:
    log = write(tmp_path, b"\xef\xbb\xbf" + ("\r\n".join(GOOD) + "\r\n").encode(), "bom.tsv")
    assert [q for _, q, _ in read_events(log)] == ["cheap flights", "hotels paris", "weather"]
    assert list(session_pairs(log)) == [("cheap flights", "hotels paris")]
    pairs = write(tmp_path, "\ufeffprev\tnext\nA\tb\n".encode(), "pairs.tsv")
    assert list(read_pairs(pairs)) == [("a", "b")]
    catalogue = write(tmp_path, "\ufeffproduct_uid\tproduct_title\n1\tSofa\n".encode(), "c.tsv")
    assert read_catalogue(catalogue) == {"1": "Sofa"}
    judged = write(tmp_path, "\ufeffsearch_term\tproduct_uid\trelevance\nsofa\t1\t3\n".encode())
    assert list(read_judgments(judged)) == [("sofa", "1", 3.0)]
    # Without the fix the header became a data row: "bom.tsv:1: QueryTime 'QueryTime' ...".
    Completer(progress=False).fit_log(log)


def test_every_reader_names_the_line_of_a_malformed_row(tmp_path: Path) -> None:
    bad = write(tmp_path, b"x\n", "bad.tsv")
    for reader in (read_queries, read_events, read_pairs, read_judgments):
        with pytest.raises(LogFormatError, match=r"bad\.tsv:1: expected"):
            list(reader(bad))  # type: ignore[operator]
    with pytest.raises(LogFormatError, match=r"bad\.tsv:1: expected 'product id<TAB>title'"):
        read_catalogue(bad)
    with pytest.warns(SkippedRowsWarning):
        assert read_catalogue(bad, errors="skip") == {}


# Pieces that real and broken files are made of: good rows, headers, BOMs, every line ending,
# NULs, invalid and truncated UTF-8, tabs, long fields, binary.
PIECES = st.sampled_from(
    [
        *(row.encode() for row in GOOD),
        b"\xef\xbb\xbf",
        b"\n",
        b"\r\n",
        b"\r",
        b"\t",
        b"\x00",
        b"\xff",
        b"\xc3",  # a truncated two-byte character
        b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
        "h\u00f4tel \u4e2d\u6587 \U0001f600".encode(),
        b"prev\tnext",
        b"search_term\tproduct_uid\trelevance",
        b"q\t12\t2.5",
        b"2006-03-01 10:00:00",
        b"nan",
        b" " * 3,
        b"x" * 5000,
    ]
)
HOSTILE_FILES = st.one_of(st.binary(max_size=300), st.lists(PIECES, max_size=40).map(b"".join))
READERS: dict[str, Callable[..., Any]] = {
    "read_queries": read_queries,
    "read_events": read_events,
    "read_pairs": read_pairs,
    "read_judgments": read_judgments,
    "read_catalogue": read_catalogue,
    "session_pairs": session_pairs,
}


def _read(reader: Callable[..., Any], path: Path, **kwargs: Any) -> list[Any]:
    got = reader(path, **kwargs)
    return list(got.items() if isinstance(got, dict) else got)


def _lines(data: bytes) -> Iterator[bytes]:
    yield from data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=HOSTILE_FILES, name=st.sampled_from(sorted(READERS)))
def test_any_bytes_yield_rows_or_the_typed_error_naming_the_line(
    tmp_path: Path, data: bytes, name: str
) -> None:
    path = write(tmp_path, data, "any.tsv")
    reader = READERS[name]
    try:
        strict = _read(reader, path)
        failed_at = None
    except LogFormatError as err:
        assert err.path == str(path)
        assert 1 <= err.line <= len(list(_lines(data)))
        assert str(err).startswith(f"{path}:{err.line}: ")
        strict, failed_at = [], err.line
    report = ReadReport()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skipped = _read(reader, path, errors="skip", report=report)
    # Strict fails exactly where skip first skips; skip never fails.
    if failed_at is None:
        assert report.skipped == 0 and not caught and skipped == strict
    else:
        assert report.examples[0].startswith(f"{path}:{failed_at}: ")
        assert [w.category for w in caught] == [SkippedRowsWarning]
