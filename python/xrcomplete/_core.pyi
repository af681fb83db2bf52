import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar, final, overload, type_check_only

import numpy as np
import numpy.typing as npt

__all__ = [
    "CompleterModel",
    "FeatureConcatModel",
    "ModelFormatError",
    "Options",
    "ProductRetrieverModel",
    "ProgressCounter",
    "QueryIds",
    "Server",
    "TfidfModel",
    "TfidfOptions",
    "Trie",
    "TrieKeys",
    "XRLinearModel",
    "normalize_prefix",
    "normalize_query",
    "part_answer",
    "read_event_log",
    "shard_answer",
    "shard_pieces",
]

_CsrParts = tuple[npt.NDArray[np.float32], npt.NDArray[Any], npt.NDArray[Any], tuple[int, int]]
_Row = tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]
_Path = str | os.PathLike[str]
_Self = TypeVar("_Self")

class ModelFormatError(ValueError):
    """A model file (or bytes) that is not a valid xrcomplete model of the expected kind."""

_T = TypeVar("_T")

@type_check_only
class _PairShards(Protocol):
    """What ``CompleterModel.fit(shards=...)`` calls: the shards of the fit's pairs, elsewhere
    (``xrcomplete.distributed``)."""

    def sizes(self) -> list[int]: ...
    def timed(self) -> bool: ...
    def map(self, task: bytes) -> list[bytes]: ...
    def shuffle(self, task: bytes, n_parts: int) -> list[bytes]: ...
    def n_parts(self) -> int: ...

@final
class Trie:
    """A set of weighted strings with ranked prefix completions (see the Rust docs)."""

    def __new__(
        cls,
        items: Mapping[str, float] | Iterable[str | tuple[str, float]] | None = None,
    ) -> Trie: ...
    def completions(self, prefix: str, k: int = 10) -> list[tuple[str, float]]: ...
    def prefix_range(self, prefix: str) -> tuple[int, int] | None: ...
    @overload
    def get(self, key: str, default: None = None) -> float | None: ...
    @overload
    def get(self, key: str, default: _T) -> float | _T: ...
    def id_of(self, key: str) -> int | None: ...
    def key_of(self, id: int) -> str: ...
    def keys(self) -> list[str]: ...
    def items(self) -> list[tuple[str, float]]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def node_count(self) -> int: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls: type[_Self], data: bytes) -> _Self: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls: type[_Self], path: _Path, *, mmap: bool = False) -> _Self: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __getitem__(self, key: str, /) -> float: ...
    def __iter__(self) -> TrieKeys: ...

@final
class TrieKeys(Iterator[str]):
    def __iter__(self) -> TrieKeys: ...
    def __next__(self) -> str: ...

@final
class TfidfOptions:
    """Checked options of a TF-IDF vectorizer, before fitting."""

    def __new__(
        cls,
        *,
        analyzer: str = "char_wb",
        ngram_range: tuple[int, int] = (1, 4),
        lowercase: bool = True,
        nfkc: bool = False,
        prefix_weighting: str = "none",
        alpha: float = 1.0,
        decay: float = 0.5,
        position_scope: str = "string",
        min_df: int | float | None = None,
        max_df: int | float | None = None,
        max_features: int | None = None,
        sublinear_tf: bool = False,
        use_idf: bool = True,
        smooth_idf: bool = True,
        norm: str | None = "l2",
    ) -> TfidfOptions: ...

@final
class TfidfModel:
    """A fitted TF-IDF vectorizer (see xrcomplete.text.TfidfVectorizer)."""

    @staticmethod
    def fit(docs: Iterable[str], options: TfidfOptions) -> TfidfModel: ...
    def transform(self, docs: Iterable[str]) -> _CsrParts: ...
    def transform_one(self, doc: str) -> _Row: ...
    @property
    def n_features(self) -> int: ...
    def terms(self) -> list[str]: ...
    def idf(self) -> npt.NDArray[np.float64]: ...
    def column(self, term: str) -> int | None: ...
    def params(self) -> dict[str, Any]: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls: type[_Self], data: bytes) -> _Self: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls: type[_Self], path: _Path, *, mmap: bool = False) -> _Self: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...

@final
class FeatureConcatModel:
    """Fitted vectorizers side by side (see xrcomplete.text.FeatureConcat)."""

    def __new__(
        cls, blocks: Sequence[TfidfModel], norm: str | None = "l2"
    ) -> FeatureConcatModel: ...
    def transform(self, columns: Sequence[Iterable[str]]) -> _CsrParts: ...
    def transform_one(self, texts: Sequence[str]) -> _Row: ...
    @property
    def n_features(self) -> int: ...
    def offsets(self) -> list[int]: ...
    def blocks(self) -> list[TfidfModel]: ...
    @property
    def norm(self) -> str | None: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls: type[_Self], data: bytes) -> _Self: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls: type[_Self], path: _Path, *, mmap: bool = False) -> _Self: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...

@final
class ProgressCounter:
    """Training progress, readable while XRLinearModel.fit runs in another thread."""

    def __new__(cls) -> ProgressCounter: ...
    @property
    def done(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def stage(self) -> str: ...

@final
class XRLinearModel:
    """A trained XR-Linear model (see xrcomplete.xr.XRLinear)."""

    @staticmethod
    def fit(
        x_indptr: npt.NDArray[np.int64],
        x_indices: npt.NDArray[np.int32],
        x_data: npt.NDArray[np.float32],
        x_cols: int,
        y_indptr: npt.NDArray[np.int64],
        y_indices: npt.NDArray[np.int32],
        y_data: npt.NDArray[np.float32],
        y_cols: int,
        *,
        tree: str = "kmeans",
        labels: Sequence[str] | None = None,
        trie_depth: int = 2,
        branching: int = 16,
        max_leaf_size: int = 100,
        kmeans_max_iter: int = 20,
        seed: int = 0,
        cp: float = 1.0,
        cn: float = 1.0,
        bias: float = 1.0,
        threshold: float = 0.1,
        max_iter: int = 100,
        eps: float = 0.1,
        loss: str = "squared_hinge",
        progress: ProgressCounter | None = None,
    ) -> XRLinearModel: ...
    def predict(
        self,
        x_indptr: npt.NDArray[np.int64],
        x_indices: npt.NDArray[np.int32],
        x_data: npt.NDArray[np.float32],
        x_cols: int,
        beam_size: int = 10,
        topk: int = 10,
        post_processor: str = "l3-hinge",
    ) -> _CsrParts: ...
    def predict_one(
        self,
        indices: npt.NDArray[np.int32],
        data: npt.NDArray[np.float32],
        beam_size: int = 10,
        topk: int = 10,
        post_processor: str = "l3-hinge",
        label_range: tuple[int, int] | None = None,
    ) -> _Row: ...
    @property
    def n_labels(self) -> int: ...
    @property
    def n_features(self) -> int: ...
    def level_sizes(self) -> list[int]: ...
    @property
    def nnz(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls: type[_Self], data: bytes) -> _Self: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls: type[_Self], path: _Path, *, mmap: bool = False) -> _Self: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...

_Suggestion = tuple[str, float, str, int]

@final
class QueryIds:
    """The distinct queries of a fit, numbered in order of first use
    (``CompleterModel.fit`` takes them out)."""

    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def id_of(self, query: str) -> int: ...
    def get(self, query: str) -> int | None: ...

@final
class Options:
    """Every option of a Completer with a value, checked (see xrcomplete.Completer)."""

    def __new__(cls, **options: Any) -> Options: ...
    def replace(self, **options: Any) -> Options: ...
    @staticmethod
    def check_value(name: str, value: Any) -> Any: ...
    def __getitem__(self, name: str, /) -> Any: ...
    def to_dict(self) -> dict[str, Any]: ...
    def changed(self) -> list[str]: ...
    @staticmethod
    def declarations() -> list[dict[str, Any]]: ...

@final
class CompleterModel:
    """A trained session-aware completer (see xrcomplete.completer.Completer)."""

    @staticmethod
    def fit(
        queries: Iterable[str] | QueryIds,
        counts: npt.NDArray[np.float64],
        prev_ids: npt.NDArray[np.int64] | None,
        next_ids: npt.NDArray[np.int64] | None,
        prev_features: TfidfOptions,
        prefix_features: TfidfOptions,
        options: Options,
        *,
        times: npt.NDArray[np.float64] | None = None,
        users: npt.NDArray[np.float64] | None = None,
        user_offsets: npt.NDArray[np.uint64] | None = None,
        user_ids: npt.NDArray[np.uint32] | None = None,
        progress: ProgressCounter | None = None,
        shards: _PairShards | None = None,
        min_subtrees: int = 64,
    ) -> CompleterModel: ...
    def complete(
        self,
        prev: str | Sequence[str],
        prefix: str,
        k: int = 10,
        **overrides: Any,
    ) -> list[_Suggestion]: ...
    def complete_batch(
        self,
        prevs: Iterable[str | Sequence[str]],
        prefixes: Iterable[str],
        k: int = 10,
        **overrides: Any,
    ) -> list[list[_Suggestion]]: ...
    def explain(
        self,
        prev: str | Sequence[str],
        prefix: str,
        k: int = 10,
        **overrides: Any,
    ) -> list[tuple[str, float, str, int, list[float]]]: ...
    def record(
        self,
        query: str,
        prev: str = "",
        count: float = 1.0,
        time: float | None = None,
        client: str | None = None,
    ) -> bool: ...
    def record_batch(
        self,
        queries: Iterable[str],
        prevs: Iterable[str] | None = None,
        counts: Sequence[float] | None = None,
        times: Sequence[float] | None = None,
        clients: Iterable[str] | None = None,
    ) -> int: ...
    def reset_live(
        self, half_life: float = 86400.0, cap: int = 100000, min_clients: int = 3
    ) -> None: ...
    def live_stats(self) -> dict[str, float]: ...
    def live_count(self, query: str, prev: str = "") -> float: ...
    @staticmethod
    def compact(
        model: _Path, events: _Path, min_clients: int | None = None
    ) -> tuple[CompleterModel, dict[str, int]]: ...
    def options(self) -> Options: ...
    def vectorizers(self) -> tuple[TfidfModel, TfidfModel]: ...
    def block(self, terms: Iterable[str]) -> int: ...
    def unblock(self, terms: Iterable[str]) -> int: ...
    def blocked(self) -> list[str]: ...
    @property
    def ranker_learned(self) -> bool: ...
    @property
    def ranker_kind(self) -> str: ...
    @staticmethod
    def ranking_features() -> list[str]: ...
    @staticmethod
    def ranking_feature_groups() -> dict[str, list[str]]: ...
    @property
    def n_queries(self) -> int: ...
    @property
    def n_words(self) -> int: ...
    def level_sizes(self) -> list[int]: ...
    @property
    def nbytes(self) -> int: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls: type[_Self], data: bytes) -> _Self: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls: type[_Self], path: _Path, *, mmap: bool = False) -> _Self: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...

@final
class ProductRetrieverModel:
    """A trained product retriever (see xrcomplete.retrieval.ProductRetriever)."""

    @staticmethod
    def fit(
        queries: Iterable[str],
        judged: Sequence[Sequence[tuple[int, float]]],
        products: Sequence[str | int],
        titles: Iterable[str],
        words: TfidfOptions,
        chars: TfidfOptions,
        *,
        titles_as_queries: bool = True,
        branching: int = 16,
        max_leaf_size: int = 100,
        kmeans_max_iter: int = 20,
        seed: int = 0,
        cp: float = 1.0,
        cn: float = 1.0,
        bias: float = 1.0,
        threshold: float = 0.1,
        max_iter: int = 100,
        eps: float = 0.1,
        loss: str = "squared_hinge",
        beam_size: int = 10,
        candidates: int = 100,
        posting_limit: int = 2000,
        k1: float = 0.6,
        b: float = 0.75,
        relevant_gain: float = 1.0,
        rank_folds: int = 2,
        ranker_bins: int = 8,
        features_off: Sequence[str] = ...,
        progress: ProgressCounter | None = None,
    ) -> ProductRetrieverModel: ...
    def retrieve(
        self,
        query: str,
        k: int = 10,
        *,
        beam_size: int | None = None,
        candidates: int | None = None,
        posting_limit: int | None = None,
    ) -> list[tuple[str | int, float]]: ...
    def retrieve_batch(
        self,
        queries: Iterable[str],
        k: int = 10,
        *,
        beam_size: int | None = None,
        candidates: int | None = None,
        posting_limit: int | None = None,
    ) -> list[list[tuple[str | int, float]]]: ...
    def products(self) -> list[str | int]: ...
    def titles(self) -> list[str]: ...
    def rank_params(self) -> dict[str, int]: ...
    def candidates(
        self,
        query: str,
        *,
        beam_size: int | None = None,
        candidates: int | None = None,
        posting_limit: int | None = None,
    ) -> list[tuple[str | int, list[float]]]: ...
    @property
    def ranker_learned(self) -> bool: ...
    @staticmethod
    def ranking_features() -> list[str]: ...
    @staticmethod
    def ranking_feature_groups() -> dict[str, list[str]]: ...
    @property
    def nnz(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls: type[_Self], data: bytes) -> _Self: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls: type[_Self], path: _Path, *, mmap: bool = False) -> _Self: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...

@final
class Server:
    def __new__(
        cls,
        path: _Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        workers: int = 0,
        max_k: int = 100,
        max_text_bytes: int = 1024,
        max_body_bytes: int = 65536,
        session_ttl: float = 1800.0,
        max_sessions: int = 100_000,
        session_history: int = 5,
        drain_timeout: float = 10.0,
        watch: float | None = None,
        events: _Path | None = None,
        fsync: str = "always",
        live_half_life: float | None = None,
        live_cap: int | None = None,
        signals: bool = False,
        blocklist: _Path | None = None,
        admin_key: str | None = None,
        record_keys: list[str] = ...,
        search_keys: list[str] = ...,
        trusted_proxies: list[str] = ...,
        cors_origins: list[str] = ...,
        live_min_clients: int | None = None,
        record_rate: float | None = ...,
        record_burst: int = 10,
        complete_rate: float | None = None,
        complete_burst: int = 10,
        header_timeout: float = 30.0,
        max_connections: int = 10000,
        products: _Path | None = None,
    ) -> Server: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def url(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    def reload(self) -> str: ...
    def live_stats(self) -> dict[str, float]: ...
    def shutdown(self) -> None: ...
    @property
    def finished(self) -> bool: ...
    def join(self, timeout: float | None = None) -> bool: ...
    def __enter__(self) -> Server: ...
    def __exit__(self, *_exc: object) -> bool: ...

def read_event_log(
    path: _Path, min_clients: int = 3
) -> tuple[list[tuple[str, str, float, float]], int, int]: ...
def shard_answer(
    task: bytes,
    shard: int,
    prev_ids: npt.NDArray[np.int64],
    next_ids: npt.NDArray[np.int64],
    times: npt.NDArray[np.float64] | None = None,
) -> bytes: ...
def shard_pieces(
    task: bytes,
    shard: int,
    prev_ids: npt.NDArray[np.int64],
    next_ids: npt.NDArray[np.int64],
    times: npt.NDArray[np.float64] | None = None,
) -> list[list[bytes]]: ...
def part_answer(pieces: list[list[bytes]]) -> list[bytes]: ...
def normalize_query(query: str) -> str: ...
def normalize_prefix(prefix: str) -> str: ...
