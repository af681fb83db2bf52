"""Loading by memory map: every class loads with ``mmap=True`` to the same object (its bytes and its
answers), bad files give the same clear errors as a normal load (the corruptions themselves are
in test_persist.py, run both ways), and a mapped model keeps serving while a new model is saved
over its file or the file is deleted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_completer import synthetic_pairs
from test_retrieval import CATALOGUE, PAIRS
from test_xr import identity_problem

from xrcomplete import (
    Completer,
    FeatureConcat,
    ModelFormatError,
    ProductRetriever,
    TfidfVectorizer,
    Trie,
    XRLinear,
)

PREFIXES = [("", ""), ("", "b"), ("apple store", "b"), ("aol", "ba"), ("x", "bing m"), ("", "zz")]


def model_bytes(obj: Any) -> bytes:
    """The object's saved form: the model files are the one representation of every class."""
    model = getattr(obj, "model", obj)
    data = model.to_bytes()
    assert isinstance(data, bytes)
    return data


def make_objects() -> dict[str, tuple[Any, Callable[[Any], object]]]:
    """One trained object per class, with a function giving answers to compare."""
    x, y = identity_problem()
    docs = ["cheap flights", "hotels in paris", "cheap hotels", "ünïcode"]
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), prefix_weighting="harmonic")
    both = FeatureConcat([TfidfVectorizer(analyzer="word"), TfidfVectorizer(analyzer="char")])
    retriever = ProductRetriever(max_leaf_size=2, progress=False)
    return {
        "trie": (
            Trie({"hotels": 3, "hotwire": 2, "house": 5, "é中": 1}),
            lambda t: [t.completions(p, 3) for p in ("", "h", "ho", "é", "x")],
        ),
        "vectorizer": (vec.fit(docs), lambda v: v.transform([*docs, "ch", ""]).toarray().tolist()),
        "concat": (
            both.fit(docs, docs),
            lambda c: c.transform(docs, ["ch", "ho", "ü", ""]).toarray().tolist(),
        ),
        "xrlinear": (
            XRLinear(branching=4, max_leaf_size=5, progress=False).fit(x, y),
            lambda m: m.predict(x, beam_size=5, topk=3).toarray().tolist(),
        ),
        "completer": (
            Completer(index="hybrid", max_leaf_size=4, progress=False).fit(synthetic_pairs()),
            lambda c: [c.complete(p, x, 5) for p, x in PREFIXES],
        ),
        "retriever": (
            retriever.fit([q for q, _ in PAIRS], [p for _, p in PAIRS], CATALOGUE),
            lambda r: [r.retrieve(q, 3) for q in ("couch", "brown", "drill", "")],
        ),
    }


OBJECTS = make_objects()


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_a_mapped_load_is_the_same_object(name: str, tmp_path: Path) -> None:
    obj, answers = OBJECTS[name]
    path = tmp_path / f"{name}.xrc"
    obj.save(path)
    mapped = type(obj).load(path, mmap=True)
    read = type(obj).load(path)
    # Arrays used in place write back to the very bytes of the file.
    assert model_bytes(mapped) == model_bytes(read) == model_bytes(obj) == path.read_bytes()
    assert answers(mapped) == answers(read) == answers(obj)


def test_a_file_of_another_kind_missing_paths_and_folders_when_mapped(tmp_path: Path) -> None:
    path = tmp_path / "trie.xrc"
    Trie({"a": 1}).save(path)
    with pytest.raises(ModelFormatError, match="holds a Trie, not a Completer"):
        Completer.load(path, mmap=True)
    with pytest.raises(FileNotFoundError):
        Completer.load(tmp_path / "missing.xrc", mmap=True)
    with pytest.raises(OSError):
        Trie.load(tmp_path, mmap=True)


def test_a_mapped_model_serves_while_a_new_one_is_saved_over_it(tmp_path: Path) -> None:
    old, answers = OBJECTS["completer"]
    path = old.save(tmp_path / "c.xrc")
    mapped = Completer.load(path, mmap=True)
    expected = answers(old)
    other = Completer(index="trie", progress=False).fit(
        [("news", "bingo night"), ("weather", "bing")] * 3
    )
    other.save(path)  # a new file renamed over the mapped one
    assert answers(mapped) == expected
    assert Completer.load(path, mmap=True).complete("", "bingo", 1)[0][0] == "bingo night"
    path.unlink()  # the map outlives the file's name
    assert answers(mapped) == expected
