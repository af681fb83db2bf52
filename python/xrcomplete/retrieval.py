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

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from xrcomplete import _core
from xrcomplete.completer import _model_path
from xrcomplete.data import PathLike
from xrcomplete.text import NotFittedError, TfidfVectorizer
from xrcomplete.xr import with_progress

Hit = tuple[str, float]


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
        product_ids: Iterable[str],
        catalogue: Mapping[str, str] | None = None,
    ) -> ProductRetriever:
        """Trains on ``queries[i]`` relevant to ``product_ids[i]`` (a query may come several
        times, once per relevant product). ``catalogue`` maps product ids to titles; every
        product in it can be retrieved, and its title is matched against queries (and, with
        ``titles_as_queries``, trained on)."""
        relevant: dict[str, set[str]] = {}
        pairs = 0
        for query, product in zip(queries, product_ids):
            if not isinstance(query, str) or not isinstance(product, str):
                raise TypeError(f"queries and product ids must be str, got {query!r}, {product!r}")
            relevant.setdefault(query, set()).add(product)
            pairs += 1
        if not pairs:
            raise ValueError("no (query, product) pair to train on")
        titles = dict(catalogue or {})
        products = list(titles)
        for found in relevant.values():
            for product in sorted(found):
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
