"""Product retrieval: a customer query -> the best products of a catalogue.

>>> catalogue = {"p1": "Leather Sofa in Brown", "p2": "Cordless Drill 18V", "p3": "Garden Hose"}
>>> retriever = ProductRetriever(max_leaf_size=2, progress=False)
>>> retriever = retriever.fit(["couch", "power drill"], ["p1", "p2"], catalogue)
>>> [product for product, score in retriever.retrieve("couch", k=1)]
['p1']

The same engine as the completer (PECOS's second use case): word 1-3 gram TF-IDF beside
character 3-gram TF-IDF of the query; an XR-Linear model (k-means label tree) trained on (query
-> relevant products) and, by default, (title -> product) for every product of the catalogue; at
query time the model's best products and every product whose title shares a feature with the
query, scored ``title_weight * cosine(query, title) + model_weight * model score``. All in Rust,
the GIL released.
"""

from __future__ import annotations

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


class ProductRetriever:
    """Query -> products, trained on (query, relevant product) pairs and a catalogue of titles.

    ``word_features`` and ``char_features``: unfitted ``TfidfVectorizer`` s giving the options
    of the two feature blocks (default word 1-3 grams and character 3-grams inside words).
    ``titles_as_queries``: also train on each product's title. ``threshold``: weights of smaller
    magnitude are pruned from the model. The ranking options (``beam_size``, ``candidates``,
    ``model_weight``, ``title_weight``) are defaults that the model's ``retrieve`` may override.
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
        model_weight: float = 0.5,
        title_weight: float = 1.0,
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
        self.model_weight = model_weight
        self.title_weight = title_weight
        self.progress = progress
        self._model: _core.ProductRetrieverModel | None = None

    def fit(
        self,
        queries: Iterable[str],
        product_ids: Iterable[ProductId],
        catalogue: Mapping[str, str] | Mapping[int, str] | None = None,
    ) -> ProductRetriever:
        """Trains on ``queries[i]`` relevant to ``product_ids[i]`` (a query may come several
        times, once per relevant product). ``catalogue`` maps product ids to titles; every
        product in it can be retrieved, and its title is matched against queries (and, with
        ``titles_as_queries``, trained on). Every id of ``product_ids`` must then be in it.

        Product ids are all ``str`` or all ``int`` (numpy integers too); ``retrieve`` returns
        them as given. ``queries`` and ``product_ids`` must have the same length."""
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
        relevant: dict[str, set[ProductId]] = {}
        pairs = 0
        for i, (query, given) in enumerate(zip_longest(queries, product_ids, fillvalue=_END)):
            if query is _END or given is _END:
                longer = "product_ids" if query is _END else "queries"
                raise ValueError(
                    f"queries and product_ids differ in length: {longer} has more than {i} items"
                )
            if not isinstance(query, str):
                raise TypeError(f"pair {i}: queries must be str, got {query!r}")
            product = product_id(given, f"pair {i}")
            if catalogue is not None and product not in titles:
                raise ValueError(f"pair {i}: product {product!r} is not in the catalogue")
            relevant.setdefault(query, set()).add(product)
            pairs += 1
        if not pairs:
            raise ValueError("no (query, product) pair to train on")
        products = list(titles)
        for found in relevant.values():
            for product in sorted(found, key=str):
                if product not in titles:
                    titles[product] = ""
                    products.append(product)
        label = {p: i for i, p in enumerate(products)}
        words = self.word_features.options()
        chars = self.char_features.options()
        self._model = with_progress(
            lambda counter: _core.ProductRetrieverModel.fit(
                list(relevant),
                [sorted(label[p] for p in found) for found in relevant.values()],
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
                model_weight=self.model_weight,
                title_weight=self.title_weight,
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

    def save(self, path: PathLike) -> Path:
        """Saves atomically to ``path`` (or ``path/retriever.xrc`` for a directory)."""
        target = _model_path(path, saving=True, name="retriever.xrc")
        self.model.save(target)
        return target

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = False) -> ProductRetriever:
        """Loads what ``save`` wrote; ``ModelFormatError`` for a bad file. ``mmap=True`` maps
        the file (see ``Completer.load``)."""
        retriever = cls(progress=False)
        retriever._model = _core.ProductRetrieverModel.load(
            _model_path(path, saving=False, name="retriever.xrc"), mmap=mmap
        )
        rank = retriever._model.rank_params()
        retriever.beam_size = int(rank["beam_size"])
        retriever.candidates = int(rank["candidates"])
        retriever.model_weight = rank["model_weight"]
        retriever.title_weight = rank["title_weight"]
        return retriever
