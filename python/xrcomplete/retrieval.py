"""Product retrieval: a customer query -> the best products of a catalogue.

>>> catalogue = {"p1": "Leather Sofa in Brown", "p2": "Cordless Drill 18V", "p3": "Garden Hose"}
>>> retriever = ProductRetriever(max_leaf_size=2, progress=False)
>>> retriever = retriever.fit(["couch", "power drill"], ["p1", "p2"], catalogue)
>>> [product for product, score in retriever.retrieve("couch", k=1)]
['p1']

The same engine as the completer (PECOS's second use case), in its three stages: word 1-3 gram
TF-IDF beside character 3-gram TF-IDF of the query; three candidate sources (an XR-Linear model
trained on (query -> relevant products) and, by default, (title -> product), BM25 over the
titles, and the cosine of query and title); one learned ranking stage over every candidate's
features (BM25, cosines, the model's score, how often the product was relevant in training,
...), trained on the graded judgements only. All in Rust, the GIL released.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Union

from xrcomplete import _core
from xrcomplete.completer import _model_path
from xrcomplete.data import PathLike
from xrcomplete.progress import with_progress
from xrcomplete.text import NotFittedError, TfidfVectorizer

#: A product id: ``str``, or ``int`` for a catalogue keyed by numbers (returned as given).
ProductId = Union[str, int]
Hit = tuple[ProductId, float]

_I64 = (-(2**63), 2**63 - 1)
_END = object()


def _gain(value: object, where: str) -> float:
    """``value`` as a gain: a real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: relevance must be a number, got {value!r}")
    gain = float(value)
    if not (gain >= 0.0 and math.isfinite(gain)):
        raise ValueError(f"{where}: relevance must be a finite number >= 0, got {gain}")
    return gain


def _product_id(value: object, where: str) -> ProductId:
    """``value`` as a product id (``str``, or an integer such as numpy's as ``int``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        as_int = int(value)
        if not _I64[0] <= as_int <= _I64[1]:
            raise ValueError(f"{where}: product id {as_int} does not fit in 64 bits")
        return as_int
    raise TypeError(f"{where}: product ids must be str or int, got {value!r}")


#: The file a product retriever is saved to when ``save`` is given a directory.
RETRIEVER_FILE = "retriever.xrc"


class ProductRetriever:
    """Query -> products, trained on judged (query, product) pairs and a catalogue of titles.

    ``word_features`` and ``char_features``: unfitted ``TfidfVectorizer`` s giving the options
    of the two feature blocks (default word 1-3 grams and character 3-grams inside words).
    ``titles_as_queries``: also train on each product's title. ``threshold``: weights of smaller
    magnitude are pruned from the model. ``candidates``: products taken from each source (the
    model with beam ``beam_size``, BM25 with ``k1`` and ``b``, the title cosine, which scans
    only the query's features held by at most ``posting_limit`` titles); the three are
    defaults the model's ``retrieve`` may override. ``relevant_gain``: pairs with at least this
    gain train the model (all judged pairs teach the ranker). The ranker learns from the
    training queries split into ``rank_folds`` folds (each fold's candidates come from a model
    trained on the other folds), with ``ranker_bins`` bins per feature; ``features_off`` leaves
    ranking features out (for ablations; ``ranking_features()`` names them).
    """

    def __init__(
        self,
        *,
        word_features: TfidfVectorizer | None = None,
        char_features: TfidfVectorizer | None = None,
        titles_as_queries: bool = True,
        threshold: float = 0.1,
        branching: int = 16,
        max_leaf_size: int = 100,
        Cp: float = 1.0,
        Cn: float = 1.0,
        seed: int = 0,
        beam_size: int = 10,
        candidates: int = 100,
        posting_limit: int = 2000,
        k1: float = 0.6,
        b: float = 0.75,
        relevant_gain: float = 1.0,
        rank_folds: int = 2,
        ranker_bins: int = 8,
        features_off: Sequence[str] = (),
        progress: bool | str = "auto",
    ) -> None:
        self.word_features = word_features or TfidfVectorizer(analyzer="word", ngram_range=(1, 3))
        self.char_features = char_features or TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 3)
        )
        self.titles_as_queries = titles_as_queries
        self.threshold = threshold
        self.branching = branching
        self.max_leaf_size = max_leaf_size
        self.Cp = Cp
        self.Cn = Cn
        self.seed = seed
        self.beam_size = beam_size
        self.candidates = candidates
        self.posting_limit = posting_limit
        self.k1 = k1
        self.b = b
        self.relevant_gain = relevant_gain
        self.rank_folds = rank_folds
        self.ranker_bins = ranker_bins
        self.features_off = tuple(features_off)
        self.progress = progress
        self._model: _core.ProductRetrieverModel | None = None

    def fit(
        self,
        queries: Iterable[str],
        product_ids: Iterable[ProductId],
        catalogue: Mapping[str, str] | Mapping[int, str] | None = None,
        relevance: Iterable[float] | None = None,
    ) -> ProductRetriever:
        """Trains on ``product_ids[i]`` judged for ``queries[i]`` with the gain
        ``relevance[i]`` (a number >= 0; 0: judged not relevant; default 1 for every pair). A
        query comes once per judged product; a pair given twice keeps its larger gain.
        ``catalogue`` maps product ids to titles; every product in it can be retrieved, and its
        title is matched against queries (and, with ``titles_as_queries``, trained on). Every
        id of ``product_ids`` must then be in it.

        Product ids are all ``str`` or all ``int`` (numpy integers too); ``retrieve`` returns
        them as given. ``queries``, ``product_ids`` and ``relevance`` must have the same
        length."""
        if catalogue is not None and not isinstance(catalogue, Mapping):
            raise TypeError(
                "catalogue must be a mapping of product id -> title (a dict), "
                f"got {type(catalogue).__name__}"
            )
        kinds: set[type] = set()

        def product_id(value: object, where: str) -> ProductId:
            product = _product_id(value, where)
            kinds.add(type(product))
            if len(kinds) > 1:
                raise TypeError(f"{where}: product ids must be all str or all int, not a mix")
            return product

        titles: dict[ProductId, str] = {}
        for key, title in (catalogue or {}).items():
            product = product_id(key, "catalogue")
            if not isinstance(title, str):
                raise TypeError(f"catalogue: the title of {key!r} must be str, got {title!r}")
            titles[product] = title
        judged: dict[str, dict[ProductId, float]] = {}
        pairs = 0
        names: tuple[str, ...] = ("queries", "product_ids", "relevance")
        rows: Iterable[tuple[object, object, object]]
        if relevance is None:
            names = names[:2]
            rows = ((q, p, 1.0) for q, p in zip_longest(queries, product_ids, fillvalue=_END))
        else:
            rows = zip_longest(queries, product_ids, relevance, fillvalue=_END)
        for i, (query, given, gain) in enumerate(rows):
            ended = [name for name, v in zip(names, (query, given, gain)) if v is _END]
            if ended:
                longer = " and ".join(n for n in names if n not in ended)
                verb = "have" if " and " in longer else "has"
                raise ValueError(
                    f"{', '.join(names[:-1])} and {names[-1]} differ in length: "
                    f"{longer} {verb} more than {i} items"
                )
            if not isinstance(query, str):
                raise TypeError(f"pair {i}: queries must be str, got {query!r}")
            product = product_id(given, f"pair {i}")
            if catalogue is not None and product not in titles:
                raise ValueError(f"pair {i}: product {product!r} is not in the catalogue")
            value = _gain(gain, f"pair {i}")
            seen = judged.setdefault(query, {})
            seen[product] = max(value, seen.get(product, 0.0))
            pairs += 1
        if not pairs:
            raise ValueError("no (query, product) pair to train on")
        products = list(titles)
        for found in judged.values():
            for product in sorted(found, key=str):
                if product not in titles:
                    titles[product] = ""
                    products.append(product)
        label = {p: i for i, p in enumerate(products)}
        words = self.word_features.options()
        chars = self.char_features.options()
        self._model = with_progress(
            lambda counter: _core.ProductRetrieverModel.fit(
                list(judged),
                [[(label[p], g) for p, g in found.items()] for found in judged.values()],
                products,
                [titles[p] for p in products],
                words,
                chars,
                titles_as_queries=self.titles_as_queries,
                branching=self.branching,
                max_leaf_size=self.max_leaf_size,
                seed=self.seed,
                cp=self.Cp,
                cn=self.Cn,
                threshold=self.threshold,
                beam_size=self.beam_size,
                candidates=self.candidates,
                posting_limit=self.posting_limit,
                k1=self.k1,
                b=self.b,
                relevant_gain=self.relevant_gain,
                rank_folds=self.rank_folds,
                ranker_bins=self.ranker_bins,
                features_off=list(self.features_off),
                progress=counter,
            ),
            self.progress,
        )
        return self

    @property
    def model(self) -> _core.ProductRetrieverModel:
        """The trained core model (raises ``NotFittedError`` before ``fit``)."""
        if self._model is None:
            raise NotFittedError("this ProductRetriever is not trained yet: call fit()")
        return self._model

    def retrieve(self, query: str, k: int = 10) -> list[Hit]:
        """The best ``k`` products for ``query``: ``[(product id, score), ...]``, best first."""
        return self.model.retrieve(query, k)

    def retrieve_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """``retrieve`` for every query, in parallel."""
        return self.model.retrieve_batch(queries, k)

    def titles(self) -> dict[ProductId, str]:
        """The catalogue's titles, kept with the retriever (saved and loaded with it): product
        id -> title (``""`` for a product judged but not in the catalogue)."""
        return dict(zip(self.model.products(), self.model.titles()))

    def save(self, path: PathLike) -> Path:
        """Saves atomically to ``path`` (or ``path/retriever.xrc`` for a directory)."""
        target = _model_path(path, saving=True, name=RETRIEVER_FILE)
        self.model.save(target)
        return target

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = False) -> ProductRetriever:
        """Loads what ``save`` wrote; ``ModelFormatError`` for a bad file. ``mmap=True`` maps
        the file (see ``Completer.load``)."""
        retriever = cls(progress=False)
        retriever._model = _core.ProductRetrieverModel.load(
            _model_path(path, saving=False, name=RETRIEVER_FILE), mmap=mmap
        )
        rank = retriever._model.rank_params()
        retriever.beam_size = int(rank["beam_size"])
        retriever.candidates = int(rank["candidates"])
        retriever.posting_limit = int(rank["posting_limit"])
        return retriever

    @staticmethod
    def ranking_features() -> list[str]:
        """The names of the ranking features, in order (for ``features_off``)."""
        return _core.ProductRetrieverModel.ranking_features()
