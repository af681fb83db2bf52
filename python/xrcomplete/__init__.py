"""xrcomplete: session-aware query autocompletion as extreme multi-label ranking.

The hot paths live in Rust (``xrcomplete._core``); this package re-exports them with a Python API.
"""

from importlib.metadata import PackageNotFoundError, version

from xrcomplete._core import ModelFormatError, Trie
from xrcomplete.completer import Candidate, Completer, Completion
from xrcomplete.data import LogFormatError, ReadReport, SkippedRowsWarning
from xrcomplete.retrieval import Hit, ProductId, ProductRetriever
from xrcomplete.server import Server, serve
from xrcomplete.text import FeatureConcat, NotFittedError, TfidfVectorizer
from xrcomplete.xr import XRLinear

try:
    __version__ = version("xrcomplete")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "Candidate",
    "Completer",
    "Completion",
    "FeatureConcat",
    "Hit",
    "LogFormatError",
    "ModelFormatError",
    "NotFittedError",
    "ProductId",
    "ProductRetriever",
    "ReadReport",
    "Server",
    "SkippedRowsWarning",
    "TfidfVectorizer",
    "Trie",
    "XRLinear",
    "__version__",
    "serve",
]
