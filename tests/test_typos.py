"""Typo tolerance: a prefix with a slip gets the completions of the prefix it most likely meant,
marked ``source == "fuzzy"`` with the corrected prefix they match; the corrections join the
typed prefix's own candidates in one ranking; configurable; through the server the highlight
marks the corrected prefix."""

from __future__ import annotations

import random
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrcomplete import Completer
from xrcomplete.data import read_queries, sample_path
from xrcomplete.server import start

QUERIES = sorted(set(read_queries(sample_path())))


def osa(a: str, b: str) -> int:
    """Optimal-string-alignment (Damerau-Levenshtein) distance."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def inject(prefix: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(prefix))
    kind = rng.randrange(4)
    if kind == 0:
        return prefix[:i] + rng.choice(string.ascii_lowercase) + prefix[i + 1 :]
    if kind == 1 and i + 1 < len(prefix):
        return prefix[:i] + prefix[i + 1] + prefix[i] + prefix[i + 2 :]
    if kind == 2:
        return prefix[:i] + prefix[i + 1 :]
    return prefix[:i] + rng.choice(string.ascii_lowercase) + prefix[i:]


def test_common_slips_are_fixed(sample_model: tuple[Completer, Path]) -> None:
    c = sample_model[0]
    for typed, meant in (("goolge", "google"), ("weathr", "weather"), ("mapquets", "mapquest")):
        found = c.complete("", typed, 5)
        assert found and found[0].query.startswith(meant[:4]), (typed, found)
        assert all(f.source == "fuzzy" and f.query.startswith(f.matched) for f in found)
        assert all(1 <= osa(f.matched, typed) <= 1 for f in found if f.query in QUERIES)
    # explain shows what the ranker weighed: the corrections with their edits.
    explained = c.explain("", "goolge")
    assert explained[0].source == "fuzzy" and explained[0].features["edits"] >= 1
    assert all((e.source == "fuzzy") == (e.features["edits"] > 0) for e in explained)
    # The corrections say how word-like the typed word looks: one figure for the list; the
    # typed prefix's own candidates, and lists nothing corrects, never see it.
    shapes = {e.features["typed_shape"] for e in explained if e.source == "fuzzy"}
    assert len(shapes) == 1 and shapes.pop() < 0
    assert all(e.features["typed_shape"] == 0 for e in explained if e.source != "fuzzy")
    assert all(e.features["typed_shape"] == 0 for e in c.explain("", "google"))
    # Typed right: the exact answers, unchanged; short prefixes are never corrected.
    assert all(f.source != "fuzzy" for f in c.complete("", "google", 10))
    assert all(f.source != "fuzzy" for f in c.complete("", "gogl", 10))
    # Off when asked.
    off = c.model.complete("", "goolge", 5, fuzzy_one=0, fuzzy_two=0)
    assert all(src != "fuzzy" for _, _, src, _ in off)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.sampled_from([q for q in QUERIES if len(q) >= 6]),
    cut=st.integers(5, 30),
    seed=st.integers(0, 2**32),
)
def test_fuzzy_answers_match_a_prefix_within_the_edits(
    sample_model: tuple[Completer, Path], query: str, cut: int, seed: int
) -> None:
    c = sample_model[0]
    typed = inject(query[:cut], random.Random(seed)).lstrip()
    if not typed:
        return
    found = c.complete("", typed, 10)
    # Corrections add candidates to one ranking; the typed prefix's own, and what the ranker
    # sees of them, stay as they are.
    off = {"fuzzy_one": 0, "fuzzy_two": 0}
    alone = {(q, tuple(x)) for q, _, _, _, x in c.model.explain("", typed, 10, **off)}
    pooled = c.model.explain("", typed, 10)
    assert {(q, tuple(x)) for q, _, src, _, x in pooled if src != "fuzzy"} == alone
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    assert len({f.query for f in found}) == len(found)
    budget = 2 if len(typed) >= 9 else 1 if len(typed) >= 5 else 0
    for f in found:
        if f.source == "fuzzy":
            assert f.query.startswith(f.matched) and not f.query.startswith(typed)
            assert f.matched[:1] == typed[:1]
        else:
            assert f.query.startswith(typed)
    # A corrected prefix of the log's queries is within the edit budget of what was typed.
    for f in found:
        if f.source == "fuzzy" and f.query in QUERIES and len(f.matched) <= len(typed) + budget:
            assert osa(f.matched, typed) <= budget or " " in typed, (typed, f)


def test_the_server_highlights_the_corrected_prefix(sample_model: tuple[Completer, Path]) -> None:
    import http.client
    import json

    with start(sample_model[1], port=0, workers=1) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.request("GET", "/v1/complete?prefix=goolge&k=3")
        got = json.loads(conn.getresponse().read())
        conn.close()
    for s in got["suggestions"]:
        assert s["source"] == "fuzzy"
        start_, end = s["highlight"]
        assert s["text"][start_:end] == "google"[: end - start_]
        assert end - start_ >= 5
