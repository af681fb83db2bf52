"""Text features: character and word n-gram TF-IDF with prefix weighting, computed in Rust.

``TfidfVectorizer`` follows scikit-learn's API and, with prefix weighting off, its results
(``analyzer`` "word", "char" or "char_wb"). Prefix weighting discounts each n-gram occurrence by
its position, so that the features of a typed prefix ("ip") resemble those of the queries it
completes to ("iphone") rather than those that merely contain it ("zip"):

- ``"harmonic"``: the i-th n-gram of its length counts ``1 / (i + 1)`` (PECOS's qp2q form);
- ``"exponential"``: it counts ``1 + alpha * decay**i`` (``alpha=0`` is plain TF-IDF);

with positions counted in the whole string (``position_scope="string"``) or in each word
(``"word"``). ``FeatureConcat`` puts fitted vectorizers side by side in one row (e.g. the
previous query's words | the prefix's characters), as PECOS builds its QAC input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Union

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xrcomplete import _core

Row = tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]
PathLike = Union[str, "os.PathLike[str]"]


class NotFittedError(ValueError, AttributeError):
    """A model was used before ``fit`` (a ValueError and an AttributeError, as scikit-learn's)."""


def _csr(parts: tuple[Any, Any, Any, tuple[int, int]]) -> sp.csr_matrix:
    data, indices, indptr, shape = parts
    # The arrays already have scipy's dtypes, so no copy is made; rows come out sorted.
    matrix = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    matrix.has_sorted_indices = True
    return matrix


class TfidfVectorizer:
    """TF-IDF of word or character n-grams, with optional prefix weighting.

    Parameters are scikit-learn's where they share a name: ``analyzer`` ("char_wb", "char",
    "word"), ``ngram_range``, ``lowercase``, ``min_df`` / ``max_df`` (int: documents, float:
    proportion), ``max_features`` (most frequent terms; ties by term order), ``sublinear_tf``,
    ``use_idf``, ``smooth_idf``, ``norm`` ("l2", "l1" or None). Added: ``nfkc`` (Unicode NFKC
    before lower-casing) and prefix weighting: ``prefix_weighting`` ("none", "harmonic",
    "exponential"), ``alpha``, ``decay``, ``position_scope`` ("string", "word"). With
    ``sublinear_tf``, tf becomes ``1 + ln(tf)`` where ``tf >= 1``; a prefix-weighted tf below 1
    is kept as it is.

    >>> v = TfidfVectorizer(analyzer="word", ngram_range=(1, 1))
    >>> v = v.fit(["cheap flights", "cheap hotels"])
    >>> v.get_feature_names_out().tolist()
    ['cheap', 'flights', 'hotels']
    >>> v.transform(["cheap cheap flights", "unknown words"]).shape
    (2, 3)
    """

    def __init__(
        self,
        *,
        analyzer: str = "char_wb",
        ngram_range: tuple[int, int] = (1, 4),
        lowercase: bool = True,
        nfkc: bool = False,
        prefix_weighting: str = "none",
        alpha: float = 1.0,
        decay: float = 0.5,
        position_scope: str = "string",
        min_df: int | float = 1,
        max_df: int | float = 1.0,
        max_features: int | None = None,
        sublinear_tf: bool = False,
        use_idf: bool = True,
        smooth_idf: bool = True,
        norm: str | None = "l2",
    ) -> None:
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.lowercase = lowercase
        self.nfkc = nfkc
        self.prefix_weighting = prefix_weighting
        self.alpha = alpha
        self.decay = decay
        self.position_scope = position_scope
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.use_idf = use_idf
        self.smooth_idf = smooth_idf
        self.norm = norm
        self._model: _core.TfidfModel | None = None

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters, as scikit-learn's ``get_params`` (none is an
        estimator, so ``deep`` changes nothing)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def options(self) -> _core.TfidfOptions:
        """The parameters, checked, as the compiled core takes them (raises ValueError)."""
        return _core.TfidfOptions(**self.get_params())

    def fit(self, docs: Iterable[str]) -> TfidfVectorizer:
        """Learns the vocabulary and idf from ``docs`` (in parallel, the GIL released)."""
        self._model = _core.TfidfModel.fit(docs, self.options())
        return self

    def transform(self, docs: Iterable[str]) -> sp.csr_matrix:
        """The TF-IDF rows of ``docs`` (float32 CSR, sorted indices); unknown terms ignored."""
        return _csr(self.model.transform(docs))

    def fit_transform(self, docs: Iterable[str]) -> sp.csr_matrix:
        """``fit`` then ``transform`` on the same documents."""
        docs = docs if isinstance(docs, Sequence) else list(docs)
        return self.fit(docs).transform(docs)

    def transform_one(self, doc: str) -> Row:
        """One document's row as (column indices, values): the cheap per-keystroke path."""
        return self.model.transform_one(doc)

    def get_feature_names_out(self) -> npt.NDArray[np.object_]:
        """The terms, in column order."""
        return np.array(self.model.terms(), dtype=object)

    @property
    def idf_(self) -> npt.NDArray[np.float64]:
        """The idf of each column (read-only)."""
        return self.model.idf()

    @property
    def vocabulary_(self) -> dict[str, int]:
        """Term to column, as scikit-learn's ``vocabulary_``."""
        return {term: i for i, term in enumerate(self.model.terms())}

    @property
    def n_features_(self) -> int:
        """Number of columns."""
        return self.model.n_features

    @property
    def model(self) -> _core.TfidfModel:
        """The fitted Rust model; ``NotFittedError`` before ``fit``."""
        if self._model is None:
            raise NotFittedError("this TfidfVectorizer is not fitted yet; call fit first")
        return self._model

    def save(self, path: PathLike) -> None:
        """Saves the fitted vectorizer (options, vocabulary, idf) in xrcomplete's model format."""
        self.model.save(path)

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = False) -> TfidfVectorizer:
        """Loads a vectorizer saved by ``save``; ``ModelFormatError`` for a bad file.
        ``mmap=True`` maps the file (see ``Completer.load``)."""
        return cls._from_model(_core.TfidfModel.load(path, mmap=mmap))

    @classmethod
    def _from_model(cls, model: _core.TfidfModel) -> TfidfVectorizer:
        vectorizer = cls(**model.params())
        vectorizer._model = model
        return vectorizer

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"TfidfVectorizer({params})"


class FeatureConcat:
    """Vectorizers side by side: one text per block, one row, renormalised by ``norm``.

    >>> prev = TfidfVectorizer(analyzer="word")
    >>> prefix = TfidfVectorizer(analyzer="char_wb", prefix_weighting="harmonic")
    >>> both = FeatureConcat([prev, prefix]).fit(["cheap flights", ""], ["hotels", "hotwire"])
    >>> both.transform(["cheap flights"], ["ho"]).shape == (1, both.n_features_)
    True
    """

    def __init__(self, blocks: Sequence[TfidfVectorizer], norm: str | None = "l2") -> None:
        if not blocks:
            raise ValueError("FeatureConcat needs at least one vectorizer")
        self.blocks = list(blocks)
        self.norm = norm
        self._model: _core.FeatureConcatModel | None = None
        if all(b._model is not None for b in self.blocks):
            self._build()

    def _build(self) -> None:
        self._model = _core.FeatureConcatModel([b.model for b in self.blocks], self.norm)

    def fit(self, *columns: Iterable[str]) -> FeatureConcat:
        """Fits block ``b`` on ``columns[b]``."""
        if len(columns) != len(self.blocks):
            raise ValueError(
                f"expected {len(self.blocks)} columns of texts (one per block), got {len(columns)}"
            )
        for block, column in zip(self.blocks, columns):
            block.fit(column)
        self._build()
        return self

    def transform(self, *columns: Iterable[str]) -> sp.csr_matrix:
        """Rows from one column of texts per block (equally long)."""
        return _csr(self.model.transform(list(columns)))

    def transform_one(self, *texts: str) -> Row:
        """One row, ``texts[b]`` for block ``b``, as (column indices, values)."""
        return self.model.transform_one(list(texts))

    @property
    def n_features_(self) -> int:
        """Total number of columns."""
        return self.model.n_features

    @property
    def offsets_(self) -> list[int]:
        """The first column of each block."""
        return self.model.offsets()

    @property
    def model(self) -> _core.FeatureConcatModel:
        """The Rust model; ``NotFittedError`` until every block is fitted."""
        if self._model is None:
            raise NotFittedError("FeatureConcat is not fitted yet; call fit first")
        return self._model

    def save(self, path: PathLike) -> None:
        """Saves every block and the norm in xrcomplete's model format."""
        self.model.save(path)

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = False) -> FeatureConcat:
        """Loads a concatenation saved by ``save``; ``ModelFormatError`` for a bad file.
        ``mmap=True`` maps the file (see ``Completer.load``)."""
        model = _core.FeatureConcatModel.load(path, mmap=mmap)
        concat = cls([TfidfVectorizer._from_model(b) for b in model.blocks()], model.norm)
        concat._model = model
        return concat
