"""XR-Linear through the Python API: learning, predicting, threads, saving, bad input."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import run_in_threads

from xrcomplete import ModelFormatError, NotFittedError, TfidfVectorizer, XRLinear


def identity_problem(n_labels: int = 60, copies: int = 3) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Row features name their label (plus a noise feature): a problem with a known answer."""
    rows, cols, vals, labels = [], [], [], []
    r = 0
    for copy in range(copies):
        for j in range(n_labels):
            rows += [r, r]
            cols += [j, n_labels + (j + copy) % 4]
            vals += [0.9, 0.3]
            labels.append(j)
            r += 1
    x = sp.csr_matrix((vals, (rows, cols)), shape=(r, n_labels + 4), dtype=np.float32)
    y = sp.csr_matrix((np.ones(r), (np.arange(r), labels)), shape=(r, n_labels))
    return x, y


@pytest.fixture(scope="module")
def trained() -> tuple[XRLinear, sp.csr_matrix, sp.csr_matrix]:
    x, y = identity_problem()
    return XRLinear(branching=4, max_leaf_size=5, progress=False).fit(x, y), x, y


def test_a_known_answer_is_learned(trained: tuple[XRLinear, sp.csr_matrix, sp.csr_matrix]) -> None:
    model, x, y = trained
    assert model.n_labels_ == 60 and model.n_features_ == 64
    assert len(model.level_sizes_) >= 2 and model.level_sizes_[-1] == 60
    p = model.predict(x, beam_size=5, topk=1)
    assert p.shape == y.shape
    np.testing.assert_array_equal(p.indices, y.indices)  # precision@1 = 1
    for j in range(60):
        labels, scores = model.predict_one(([j], [1.0]), beam_size=5, topk=3)
        assert labels[0] == j
        assert np.all(np.diff(scores) <= 0)


def test_predict_one_equals_the_rows_of_predict(
    trained: tuple[XRLinear, sp.csr_matrix, sp.csr_matrix],
) -> None:
    model, x, _ = trained
    batch = model.predict(x, beam_size=3, topk=4)
    for r in range(0, x.shape[0], 7):
        labels, scores = model.predict_one(x[r], beam_size=3, topk=4)
        order = np.argsort(labels)
        np.testing.assert_array_equal(labels[order], batch[r].indices)
        np.testing.assert_allclose(scores[order], batch[r].data)


def test_label_ranges_restrict_the_answers(
    trained: tuple[XRLinear, sp.csr_matrix, sp.csr_matrix],
) -> None:
    model, _, _ = trained
    labels, _ = model.predict_one(([3], [1.0]), beam_size=2, topk=5, label_range=(40, 45))
    assert len(labels) > 0 and all(40 <= label < 45 for label in labels)
    labels, _ = model.predict_one(([3], [1.0]), label_range=(10, 10))
    assert len(labels) == 0


def test_predictions_are_identical_from_eight_threads(
    trained: tuple[XRLinear, sp.csr_matrix, sp.csr_matrix],
) -> None:
    model, x, _ = trained
    serial = [model.predict_one(x[r]) for r in range(x.shape[0])]
    batch = model.predict(x)

    def work() -> bool:
        same: bool = (model.predict(x) != batch).nnz == 0
        for r in range(x.shape[0]):
            labels, scores = model.predict_one(x[r])
            same = same and np.array_equal(labels, serial[r][0])
            same = same and np.array_equal(scores, serial[r][1])
        return same

    assert all(run_in_threads(work))


def test_training_is_deterministic_and_saves(tmp_path: Path) -> None:
    x, y = identity_problem(30, 2)
    a = XRLinear(max_leaf_size=4, seed=3, progress=False).fit(x, y)
    b = XRLinear(max_leaf_size=4, seed=3, progress=False).fit(x, y)
    assert a.model.to_bytes() == b.model.to_bytes()
    a.save(tmp_path / "m.xrc")
    loaded = XRLinear.load(tmp_path / "m.xrc")
    assert (loaded.predict(x) != a.predict(x)).nnz == 0
    assert (pickle.loads(pickle.dumps(a)).predict(x) != a.predict(x)).nnz == 0
    (tmp_path / "bad.xrc").write_bytes(a.model.to_bytes()[:100])
    with pytest.raises(ModelFormatError):
        XRLinear.load(tmp_path / "bad.xrc")


def test_a_progress_bar_is_drawn_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = identity_problem(20, 1)
    XRLinear(max_leaf_size=4, progress=True).fit(x, y)
    err = capsys.readouterr().err
    assert "xrcomplete: training [" in err and "nodes" in err
    XRLinear(max_leaf_size=4, progress=False).fit(x, y)
    assert capsys.readouterr().err == ""


def test_logistic_loss_learns_the_known_answer() -> None:
    x, y = identity_problem(40, 3)
    model = XRLinear(max_leaf_size=5, loss="logistic", progress=False).fit(x, y)
    p = model.predict(x, beam_size=5, topk=1, post_processor="sigmoid")
    np.testing.assert_array_equal(p.indices, y.indices)


@pytest.mark.parametrize("tree", ["trie", "hybrid"])
def test_trie_and_hybrid_trees_learn_the_known_answer(tree: str) -> None:
    x, y = identity_problem(60, 3)
    names = [f"{'abc'[j % 3]}{j:03d}" for j in range(60)]
    model = XRLinear(max_leaf_size=5, progress=False).fit(x, y, tree=tree, labels=names)
    p = model.predict(x, beam_size=10, topk=1)
    assert (p.indices == y.indices).mean() > 0.95
    # The top level splits by first character: three trie nodes.
    assert model.level_sizes_[0] == 3


def test_it_works_on_text_features() -> None:
    queries = ["cheap flights", "cheap hotels", "hotels paris", "weather boston", "weather com"]
    labels = [0, 1, 1, 2, 2]
    v = TfidfVectorizer(prefix_weighting="harmonic").fit(queries)
    x = v.transform(queries * 4)
    y = sp.csr_matrix((np.ones(20), (np.arange(20), labels * 4)), shape=(20, 3))
    model = XRLinear(max_leaf_size=2, progress=False).fit(x, y)
    top, _ = model.predict_one(v.transform_one("weath"), topk=1)
    assert top.tolist() == [2]


def test_bad_input_raises_clear_errors(
    trained: tuple[XRLinear, sp.csr_matrix, sp.csr_matrix],
) -> None:
    model, x, y = trained
    with pytest.raises(ValueError, match="X has 180 rows but Y has 179"):
        XRLinear(progress=False).fit(x, y[:-1])
    with pytest.raises(ValueError, match="training needs at least one row"):
        XRLinear(progress=False).fit(x[:0], y[:0])
    bad = x.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        XRLinear(progress=False).fit(bad, y)
    with pytest.raises(ValueError, match="branching must be a power of two"):
        XRLinear(branching=3, progress=False).fit(x, y)
    with pytest.raises(ValueError, match="loss must be 'squared_hinge' or 'logistic'"):
        XRLinear(loss="hinge", progress=False).fit(x, y)
    with pytest.raises(ValueError, match="Cp, Cn and eps"):
        XRLinear(Cp=0.0, progress=False).fit(x, y)
    with pytest.raises(ValueError, match="tree must be 'kmeans', 'trie' or 'hybrid'"):
        XRLinear(progress=False).fit(x, y, tree="forest")
    with pytest.raises(ValueError, match="needs the label strings"):
        XRLinear(progress=False).fit(x, y, tree="trie")
    with pytest.raises(ValueError, match="2 label strings for 60 label columns"):
        XRLinear(progress=False).fit(x, y, tree="hybrid", labels=["a", "b"])
    with pytest.raises(ValueError, match="labels must be distinct"):
        XRLinear(progress=False).fit(x, y, tree="trie", labels=["same"] * 60)
    with pytest.raises(ValueError, match="X has 3 columns, the model 64 features"):
        model.predict(sp.csr_matrix((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        model.predict(x, beam_size=0)
    with pytest.raises(ValueError, match="topk must be >= 0"):
        model.predict_one(([1], [1.0]), topk=-1)
    with pytest.raises(ValueError, match="out of range"):
        model.predict_one(([999], [1.0]))
    with pytest.raises(ValueError, match="sorted and distinct"):
        model.predict_one(([2, 1], [1.0, 1.0]))
    with pytest.raises(ValueError, match="post_processor"):
        model.predict(x, post_processor="softmax")
    with pytest.raises(NotFittedError):
        XRLinear().predict(x)
    assert len(model.predict_one(([1], [1.0]), topk=0)[0]) == 0
