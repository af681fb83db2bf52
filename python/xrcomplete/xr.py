"""XR-Linear: extreme multi-label ranking with a label tree and per-level sparse linear models.

The PECOS recipe, in Rust: labels are clustered into a tree (hierarchical balanced spherical
k-means on PIFA embeddings), one L2-loss linear SVM is trained per tree node with negatives from
its siblings, small weights are pruned, and beam search walks the tree at prediction time.

>>> import scipy.sparse as sp
>>> X = sp.csr_matrix([[1.0, 0.0], [0.0, 1.0]] * 20)
>>> Y = sp.csr_matrix([[1.0, 0.0], [0.0, 1.0]] * 20)
>>> model = XRLinear(max_leaf_size=2, progress=False).fit(X, Y)
>>> labels, scores = model.predict_one(([0], [1.0]), topk=1)
>>> labels.tolist()
[0]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import scipy.sparse as sp

from xrcomplete import _core
from xrcomplete.progress import with_progress
from xrcomplete.text import NotFittedError, Row, _csr

PathLike = Union[str, "os.PathLike[str]"]
SparseRow = Union[tuple[Sequence[int], Sequence[float]], Any]


def _csr_arrays(matrix: Any, name: str) -> tuple[Any, Any, Any, int]:
    """scipy's CSR arrays of ``matrix`` in the dtypes the core reads, sorted and summed."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    if m.nnz and not np.all(np.isfinite(m.data)):
        raise ValueError(f"{name} holds values that are not finite")
    return (
        np.ascontiguousarray(m.indptr, dtype=np.int64),
        np.ascontiguousarray(m.indices, dtype=np.int32),
        np.ascontiguousarray(m.data, dtype=np.float32),
        int(m.shape[1]),
    )


class XRLinear:
    """XR-Linear (PECOS defaults): ``fit(X, Y)``, ``predict(X)``, ``predict_one(x)``.

    Tree: ``branching`` children per node (a power of two, PECOS's ``nr_splits``),
    ``max_leaf_size`` labels per leaf cluster (for a trie tree: per group under a node of its last
    level), ``kmeans_max_iter``. Matchers: ``Cp`` / ``Cn``
    (penalties of errors on positives / negatives), ``bias`` (constant feature), ``threshold``
    (weights with a smaller magnitude are pruned; the rest are stored as half floats, 11
    significant bits), ``max_iter`` and ``eps`` of the solver,
    ``loss``: "squared_hinge" (L2-loss SVM, PECOS's default) or "logistic".
    ``seed`` makes training deterministic. ``progress``: draw a progress bar on stderr (True),
    not (False), or only when stderr is a terminal ("auto").
    """

    def __init__(
        self,
        *,
        branching: int = 16,
        max_leaf_size: int = 100,
        kmeans_max_iter: int = 20,
        Cp: float = 1.0,
        Cn: float = 1.0,
        bias: float = 1.0,
        threshold: float = 0.1,
        max_iter: int = 100,
        eps: float = 0.1,
        loss: str = "squared_hinge",
        seed: int = 0,
        progress: bool | str = "auto",
    ) -> None:
        self.branching = branching
        self.max_leaf_size = max_leaf_size
        self.kmeans_max_iter = kmeans_max_iter
        self.Cp = Cp
        self.Cn = Cn
        self.bias = bias
        self.threshold = threshold
        self.max_iter = max_iter
        self.eps = eps
        self.loss = loss
        self.seed = seed
        self.progress = progress
        self._model: _core.XRLinearModel | None = None

    def fit(
        self,
        X: Any,
        Y: Any,
        tree: str = "kmeans",
        labels: Sequence[str] | None = None,
        trie_depth: int | None = None,
    ) -> XRLinear:
        """Trains on ``X`` (rows x features) and ``Y`` (rows x labels; stored values > 0 are
        positives), both scipy sparse matrices (or dense arrays).

        ``tree``: "kmeans" (hierarchical k-means on PIFA label embeddings, PECOS's default),
        "trie" (the trie of the label strings ``labels[j]`` of column ``j``, at most
        ``trie_depth`` levels, default 8; a node of the last level with more than
        ``max_leaf_size`` labels is cut into runs of consecutive labels) or "hybrid"
        (``trie_depth`` trie levels, default 2, then k-means inside every trie node of more than
        ``max_leaf_size`` labels).
        """
        if trie_depth is None:
            trie_depth = 8 if tree == "trie" else 2
        if trie_depth < 0:
            raise ValueError(f"trie_depth must be >= 0, got {trie_depth}")
        x_parts = _csr_arrays(X, "X")
        y_parts = _csr_arrays(Y, "Y")
        self._model = with_progress(
            lambda counter: _core.XRLinearModel.fit(
                *x_parts,
                *y_parts,
                tree=tree,
                labels=None if labels is None else list(labels),
                trie_depth=trie_depth,
                branching=self.branching,
                max_leaf_size=self.max_leaf_size,
                kmeans_max_iter=self.kmeans_max_iter,
                seed=self.seed,
                cp=self.Cp,
                cn=self.Cn,
                bias=self.bias,
                threshold=self.threshold,
                max_iter=self.max_iter,
                eps=self.eps,
                loss=self.loss,
                progress=counter,
            ),
            self.progress,
        )
        return self

    def predict(
        self, X: Any, beam_size: int = 10, topk: int = 10, post_processor: str = "l3-hinge"
    ) -> sp.csr_matrix:
        """The best ``topk`` labels of every row, as a rows x labels CSR matrix of scores."""
        return _csr(self.model.predict(*_csr_arrays(X, "X"), beam_size, topk, post_processor))

    def predict_one(
        self,
        x: SparseRow,
        beam_size: int = 10,
        topk: int = 10,
        post_processor: str = "l3-hinge",
        label_range: tuple[int, int] | None = None,
    ) -> Row:
        """The best labels of one row, best first, as (labels, scores) arrays.

        ``x``: (sorted feature ids, values), e.g. ``TfidfVectorizer.transform_one``'s output,
        or a 1-row sparse matrix. ``label_range=(lo, hi)`` keeps labels with ids in lo..hi.
        """
        if sp.issparse(x):
            row = sp.csr_matrix(x, dtype=np.float32)
            if row.shape[0] != 1:
                raise ValueError(f"predict_one takes one row, got {row.shape[0]}")
            row.sort_indices()
            indices, values = row.indices, row.data
        else:
            indices, values = x
        return self.model.predict_one(
            np.ascontiguousarray(indices, dtype=np.int32),
            np.ascontiguousarray(values, dtype=np.float32),
            beam_size,
            topk,
            post_processor,
            label_range,
        )

    @property
    def n_labels_(self) -> int:
        """Number of labels."""
        return self.model.n_labels

    @property
    def n_features_(self) -> int:
        """Number of input features."""
        return self.model.n_features

    @property
    def level_sizes_(self) -> list[int]:
        """Nodes per level of the label tree, the labels last."""
        return self.model.level_sizes()

    @property
    def nnz_(self) -> int:
        """Stored weights after pruning."""
        return self.model.nnz

    @property
    def model(self) -> _core.XRLinearModel:
        """The trained Rust model; ``NotFittedError`` before ``fit``."""
        if self._model is None:
            raise NotFittedError("this XRLinear is not fitted yet; call fit first")
        return self._model

    def save(self, path: PathLike) -> None:
        """Saves the trained model in xrcomplete's model format."""
        self.model.save(path)

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = False) -> XRLinear:
        """Loads a model saved by ``save``; ``ModelFormatError`` for a bad file. ``mmap=True``
        maps the file (see ``Completer.load``)."""
        xr = cls()
        xr._model = _core.XRLinearModel.load(path, mmap=mmap)
        return xr
