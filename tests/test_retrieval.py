"""Product retrieval: titles and training queries both find products; persistence, threads,
the command line, and clear errors."""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from helpers import run_in_threads
from hypothesis import given, settings
from hypothesis import strategies as st

from xrcomplete import ModelFormatError, NotFittedError, ProductRetriever
from xrcomplete.cli import main
from xrcomplete.data import read_catalogue, read_judgments
from xrcomplete.metrics import ndcg_at_k, recall_at_k

CATALOGUE = {
    "100": "Leather Sofa in Brown",
    "101": "Cordless Drill 18V Lithium",
    "102": "Ceiling Fan with Light Kit",
    "103": "Garden Hose 50 ft.",
    "104": "Paint Roller Kit 9 in.",
    "105": "Outdoor Patio Sofa Set",
}
PAIRS = [("couch", "100"), ("brown couch", "100"), ("power screwdriver", "101"), ("hose", "103")]


@pytest.fixture(scope="module")
def retriever() -> ProductRetriever:
    r = ProductRetriever(max_leaf_size=2, progress=False)
    return r.fit([q for q, _ in PAIRS], [p for _, p in PAIRS], CATALOGUE)


def ids(hits: list[tuple[str, float]]) -> list[str]:
    return [p for p, _ in hits]


def test_titles_and_training_queries_both_find_products(retriever: ProductRetriever) -> None:
    assert ids(retriever.retrieve("paint roller", k=1)) == ["104"]  # title words only
    assert ids(retriever.retrieve("couch", k=1)) == ["100"]  # learned: no title says couch
    assert ids(retriever.retrieve("power screwdriver", k=1)) == ["101"]
    # Without the model's features in the ranking, the model proposes nothing: "couch" is lost.
    lexical = ProductRetriever(
        max_leaf_size=2, progress=False, features_off=["model", "model_rank"]
    ).fit([q for q, _ in PAIRS], [p for _, p in PAIRS], CATALOGUE)
    assert "100" not in ids(lexical.retrieve("couch", 6))
    hits = retriever.retrieve("sofa", k=10)
    assert set(ids(hits)[:2]) == {"100", "105"}
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


@settings(max_examples=100, deadline=None)
@given(query=st.text(max_size=40), k=st.integers(0, 30))
def test_any_query_gets_distinct_known_products(query: str, k: int) -> None:
    r = _shared()
    hits = r.retrieve(query, k)
    assert len(hits) <= min(k, len(CATALOGUE))
    assert len(set(ids(hits))) == len(hits)
    assert set(ids(hits)) <= set(CATALOGUE)


_SHARED: list[ProductRetriever] = []


def _shared() -> ProductRetriever:
    if not _SHARED:
        r = ProductRetriever(max_leaf_size=2, progress=False)
        _SHARED.append(r.fit([q for q, _ in PAIRS], [p for _, p in PAIRS], CATALOGUE))
    return _SHARED[0]


def test_batch_threads_and_persistence_agree(retriever: ProductRetriever, tmp_path: Path) -> None:
    queries = ["couch", "garden hose", "", "kit", "x" * 100_000, "ceiling fan light"]
    serial = [retriever.retrieve(q, 3) for q in queries]
    assert retriever.retrieve_batch(queries, 3) == serial
    assert all(
        r == serial for r in run_in_threads(lambda: [retriever.retrieve(q, 3) for q in queries])
    )
    path = retriever.save(tmp_path / "r.xrc")
    assert ProductRetriever.load(path).posting_limit == retriever.posting_limit == 2000
    for loaded in (ProductRetriever.load(path), pickle.loads(pickle.dumps(retriever.model))):
        model = loaded.model if isinstance(loaded, ProductRetriever) else loaded
        assert [model.retrieve(q, 3) for q in queries] == serial
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ModelFormatError):
        ProductRetriever.load(path)


def test_bad_input_is_refused(retriever: ProductRetriever) -> None:
    with pytest.raises(NotFittedError):
        ProductRetriever().retrieve("a")
    with pytest.raises(ValueError, match="no \\(query, product\\) pair"):
        ProductRetriever(progress=False).fit([], [], CATALOGUE)
    with pytest.raises(TypeError, match="must be str or int"):
        ProductRetriever(progress=False).fit(["a"], [1.5], CATALOGUE)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be str or int, got True"):
        ProductRetriever(progress=False).fit(["a"], [True])
    with pytest.raises(TypeError, match="queries must be str"):
        ProductRetriever(progress=False).fit([b"a"], ["100"], CATALOGUE)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="k must be >= 0"):
        retriever.retrieve("a", -1)
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        retriever.model.retrieve("a", 3, candidates=0)
    with pytest.raises(ValueError, match='unknown ranking feature "popular"'):
        ProductRetriever(progress=False, features_off=["popular"]).fit(["a"], ["100"], CATALOGUE)
    with pytest.raises(ValueError, match="bm25 needs k1 > 0"):
        ProductRetriever(progress=False, k1=0.0).fit(["a"], ["100"], CATALOGUE)
    with pytest.raises(ValueError, match="rank_folds must be >= 2"):
        ProductRetriever(progress=False, rank_folds=1).fit(["a"], ["100"], CATALOGUE)
    # Without a catalogue, products are known from the judgments alone (no titles).
    r = ProductRetriever(max_leaf_size=2, progress=False).fit(
        ["cordless vacuum", "stick vacuum", "couch"], ["999", "999", "100"]
    )
    assert ids(r.retrieve("vacuum", 1)) == ["999"]


def test_careless_training_input_is_refused_with_a_clear_message() -> None:
    fit = ProductRetriever(progress=False).fit
    # 3 queries, 2 ids: zip() used to drop the third query silently.
    with pytest.raises(ValueError, match="differ in length: queries has more than 2"):
        fit(["couch", "power drill", "hose"], ["100", "101"], CATALOGUE)
    with pytest.raises(ValueError, match="differ in length: product_ids has more than 1"):
        fit(["couch"], ["100", "101"], CATALOGUE)
    # An id missing from the catalogue used to come back as a top hit with no title.
    with pytest.raises(ValueError, match="pair 1: product '999' is not in the catalogue"):
        fit(["couch", "vacuum"], ["100", "999"], CATALOGUE)
    # A list as the catalogue used to fail inside dict() with "dictionary update sequence".
    with pytest.raises(TypeError, match=r"catalogue must be a mapping .* got list"):
        fit(["couch"], ["100"], list(CATALOGUE))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="title of '100' must be str"):
        fit(["couch"], ["100"], {"100": None})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="all str or all int"):
        fit(["couch", "drill"], ["100", 101], {"100": "sofa"})
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        fit(["couch"], [2**64], {2**64: "sofa"})
    # Graded judgments: one gain per pair, a finite number >= 0.
    with pytest.raises(ValueError, match="relevance differ in length: queries and product_ids"):
        fit(["couch", "hose"], ["100", "103"], CATALOGUE, relevance=[1.0])
    with pytest.raises(ValueError, match="relevance differ in length: relevance has more than 1"):
        fit(["couch"], ["100"], CATALOGUE, relevance=[1.0, 2.0])
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="pair 0: relevance must be a finite number >= 0"):
            fit(["couch"], ["100"], CATALOGUE, relevance=[bad])
    for wrong in (True, "1", None):
        with pytest.raises(TypeError, match="pair 0: relevance must be a number"):
            fit(["couch"], ["100"], CATALOGUE, relevance=[wrong])  # type: ignore[list-item]
    # Judged, but nothing reaches relevant_gain: nothing to train the model on.
    with pytest.raises(ValueError, match="no training query has a relevant product"):
        fit(["couch"], ["100"], CATALOGUE, relevance=[0.5])


def _ambiguous(seed: int, n: int) -> tuple[dict[str, str], list[str], list[str], list[float]]:
    """A catalogue where a query's two words fit several titles: customers mean the product
    that others judged relevant before (drawn with weight 1 / (1 + rank)), and the products
    shown beside it were judged not relevant (gain 0)."""
    words = [f"w{i}" for i in range(8)]
    layout = random.Random(7)
    catalogue = {f"p{j}": " ".join(layout.sample(words, 3)) + f" model{j}" for j in range(200)}
    rng = random.Random(seed)
    # Popularity in an order unrelated to the ids (ties are broken by id).
    order = list(range(200))
    layout.shuffle(order)
    weights = [1.0 / (1 + order[j]) for j in range(200)]
    queries, products, gains = [], [], []
    for _ in range(n):
        j = rng.choices(range(200), weights)[0]
        query = " ".join(rng.sample(catalogue[f"p{j}"].split()[:3], 2))
        queries.append(query)
        products.append(f"p{j}")
        gains.append(2.0)
        for decoy in rng.sample(range(200), 2):
            if decoy != j:
                queries.append(query)
                products.append(f"p{decoy}")
                gains.append(0.0)
    return catalogue, queries, products, gains


def test_the_ranking_stage_is_learned_from_graded_judgments_and_deterministic() -> None:
    catalogue, queries, products, gains = _ambiguous(1, 500)

    def fit(**options: Any) -> ProductRetriever:
        r = ProductRetriever(max_leaf_size=8, progress=False, **options)
        return r.fit(queries, products, catalogue, relevance=gains)

    learned = fit()
    assert learned.model.ranker_learned
    assert learned.model.to_bytes() == fit().model.to_bytes()
    _, test_queries, truth, test_gains = _ambiguous(2, 200)
    wanted = {q: p for q, p, g in zip(test_queries, truth, test_gains) if g > 0}

    def mrr(r: ProductRetriever) -> float:
        found = r.retrieve_batch(list(wanted), 10)
        return sum(
            1.0 / (ids(hits).index(p) + 1) if p in ids(hits) else 0.0
            for hits, p in zip(found, wanted.values())
        ) / len(wanted)

    # What others judged relevant before tells the ambiguous queries apart: the model and the
    # product counts know it, the title words do not.
    lexical = fit(features_off=["model", "model_rank", "relevant", "mean_gain", "judged"])
    assert mrr(learned) > mrr(lexical) + 0.2
    names = ProductRetriever.ranking_features()
    for query in list(wanted)[:20]:
        candidates = learned.model.candidates(query)
        assert all(len(x) == len(names) for _, x in candidates)
        hits = learned.retrieve(query, 10)
        assert set(ids(hits)) <= {p for p, _ in candidates}
        assert len(hits) == min(10, len(candidates))


def test_integer_product_ids_come_back_as_integers(tmp_path: Path) -> None:
    import numpy as np

    catalogue = {int(p): t for p, t in CATALOGUE.items()}
    r = ProductRetriever(max_leaf_size=2, progress=False).fit(
        [q for q, _ in PAIRS], [np.int64(p) for _, p in PAIRS], catalogue
    )
    hits = r.retrieve("couch", 3)
    assert hits[0][0] == 100 and all(type(p) is int for p, _ in hits)
    assert ids(r.retrieve("paint roller", 1)) == [104]  # type: ignore[list-item]
    assert sorted(r.model.products()) == sorted(catalogue)  # type: ignore[type-var]
    saved = r.save(tmp_path / "r.xrc")
    for loaded in (
        ProductRetriever.load(saved),
        ProductRetriever.load(saved, mmap=True),
        pickle.loads(pickle.dumps(r)),
    ):
        assert loaded.retrieve_batch(["couch", "hose"], 2) == r.retrieve_batch(["couch", "hose"], 2)
        # The catalogue's titles are kept with it, by the ids as given.
        assert loaded.titles() == catalogue
    # String ids that look like numbers stay strings.
    assert all(isinstance(p, str) for p, _ in _shared().retrieve("couch", 3))


def test_metrics_of_retrieval() -> None:
    assert recall_at_k(["a", "b"], {"b", "c"}, 10) == 0.5
    assert recall_at_k(["a"], set(), 10) == 0.0
    assert ndcg_at_k(["a", "b"], {"a": 2.0, "b": 1.0}, 10) == 1.0
    assert ndcg_at_k(["x"], {"a": 2.0}, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0


def test_cli_trains_saves_and_retrieves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    judgments = tmp_path / "judgments.tsv"
    judgments.write_text(
        "search_term\tproduct_uid\trelevance\n"
        + "".join(f"{q}\t{p}\t3.0\n" for q, p in PAIRS)
        + "couch\t104\t1.0\n",
        encoding="utf-8",
    )
    catalogue = tmp_path / "products.tsv"
    catalogue.write_text(
        "product_uid\tproduct_title\n" + "".join(f"{p}\t{t}\n" for p, t in CATALOGUE.items()),
        encoding="utf-8",
    )
    assert list(read_judgments(judgments))[-1] == ("couch", "104", 1.0)
    assert read_catalogue(catalogue) == CATALOGUE
    model = tmp_path / "model"
    args = ["retrieve", "--judgments", str(judgments), "--catalogue", str(catalogue)]
    assert main([*args, "-o", str(model) + "/", "couch", "-k", "1"]) == 0
    assert "100  Leather Sofa in Brown" in capsys.readouterr().out
    assert main(["retrieve", "--model", str(model), "paint roller", "-k", "1"]) == 0
    # The saved retriever shows its catalogue's titles without the catalogue.
    assert f"104  {CATALOGUE['104']}" in capsys.readouterr().out
    assert main(["retrieve", "couch"]) == 2
    assert "give --model" in capsys.readouterr().err
    (tmp_path / "bad.tsv").write_text("a\tb\n", encoding="utf-8")
    assert (
        main(
            [
                "retrieve",
                "--judgments",
                str(tmp_path / "bad.tsv"),
                "--catalogue",
                str(catalogue),
                "x",
            ]
        )
        == 2
    )
    assert "bad.tsv:1: expected 'query<TAB>product id<TAB>relevance'" in capsys.readouterr().err
    assert main([*args, "--min-relevance", "1", "x"]) == 2
    assert "--min-relevance (1.0) must be above --zero-relevance (1.0)" in capsys.readouterr().err
    assert main([*args, "--min-relevance", "3.5", "x"]) == 2
    assert "no judgment reaches --min-relevance 3.5" in capsys.readouterr().err


def test_products_outside_the_catalogue_have_empty_titles() -> None:
    r = ProductRetriever(max_leaf_size=2, progress=False).fit(
        [q for q, _ in PAIRS], [p for _, p in PAIRS]
    )
    assert r.titles() == {p: "" for _, p in PAIRS}
