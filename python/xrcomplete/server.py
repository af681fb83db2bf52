"""The typeahead service: a saved completer served over HTTP by the Rust server.

``start`` returns a running :class:`Server` (stop it with ``shutdown()`` or ``with``);
``serve`` serves until SIGTERM or Ctrl-C, as ``xrcomplete serve`` does. Requests never enter
Python: they are answered by the server's own Rust threads, the model read into
the server's own memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from xrcomplete._core import CompleterModel, Server, read_event_log
from xrcomplete.completer import Completer, _model_path
from xrcomplete.data import PathLike
from xrcomplete.retrieval import RETRIEVER_FILE

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Server", "ServerOptions", "compact", "serve", "start"]


class ServerOptions(TypedDict, total=False):
    """The options of :func:`start` and :func:`serve`, with their types; their defaults are
    the server's own (``xrcomplete._core.Server``), given once there."""

    host: str
    port: int
    workers: int
    max_k: int
    max_text_bytes: int
    max_body_bytes: int
    session_ttl: float
    max_sessions: int
    session_history: int
    drain_timeout: float
    watch: float | None
    events: PathLike | None
    fsync: str
    live_half_life: float | None
    live_cap: int | None
    signals: bool
    blocklist: PathLike | None
    admin_key: str | None
    record_keys: Sequence[str]
    search_keys: Sequence[str]
    trusted_proxies: Sequence[str]
    cors_origins: Sequence[str]
    live_min_clients: int | None
    record_rate: float | None
    record_burst: int
    complete_rate: float | None
    complete_burst: int
    header_timeout: float
    max_connections: int
    products: PathLike | None


def start(model: PathLike, **options: Unpack[ServerOptions]) -> Server:
    """Starts serving the completer saved at ``model`` (a file, or a folder holding
    ``completer.xrc``) on ``host:port`` (port 0: a free one, see ``Server.port``) and returns
    once requests are accepted.

    ``workers`` threads answer (0: one per core). A request may ask ``k`` up to ``max_k`` and
    send texts up to ``max_text_bytes`` and bodies up to ``max_body_bytes``. A session's last
    ``session_history`` searches are remembered ``session_ttl`` seconds after its last one,
    for at most ``max_sessions`` sessions.
    ``watch`` (seconds) checks the model file that often and reloads it when it changes.
    Searches posted to ``/v1/searches`` are recorded as live counts (halved every
    ``live_half_life`` seconds, at most ``live_cap`` distinct queries; not given: the model's
    options of those names, as ``live_min_clients``) that ``complete`` consults; with
    ``events`` (a file), each is first appended to that write-ahead log (``fsync="always"``:
    synced before the answer; ``"never"``: left to the system), which is replayed at start.
    ``blocklist`` (a file): terms blocked and unblocked at run time through
    ``POST /admin/blocklist`` are kept there (written before the answer) and applied to every
    model served, also after a reload or a restart; one term per line, ``!term`` unblocks a
    term the model file blocks.
    ``signals=True`` handles SIGTERM (drain, then stop) and SIGHUP (reload) for the process.

    Facing strangers (README § Deploying): ``admin_key`` is needed (``Authorization: Bearer
    KEY``) by every ``/admin/*`` route, which are off without one; ``record_keys`` let the
    site's backend record searches with ``count``, ``time`` and ``user``; with
    ``search_keys`` completions and searches need a key too. Keys are at least 16
    characters. A client is its address, or behind ``trusted_proxies`` (addresses or CIDR
    blocks) the rightmost address of ``X-Forwarded-For`` that is no proxy. A client's search
    without a record key counts once, now; it adds at most one count to a query per
    half-life, and a query only strangers searched is suggested once ``live_min_clients``
    distinct clients searched it. Each client may record ``record_rate`` searches a minute
    (bursts of ``record_burst``; ``None``: no limit) and ask ``complete_rate`` completions a
    minute (default ``None``: no limit); past it, 429 with ``Retry-After``.
    ``cors_origins`` (``scheme://host[:port]``, or ``"*"``) may call ``/v1/*`` from a
    browser. A client that has not sent a whole request ``header_timeout`` seconds after
    connecting (or after its last answer) is dropped; ``max_connections`` are open at most.

    ``products`` (a file, or a folder holding ``retriever.xrc``): a saved ``ProductRetriever``
    served at ``GET /v1/products?q=&k=10`` (``retrieve(q, k)``'s products, exactly, with their
    titles), read, watched and reloaded with the completer, under the same keys, CORS and
    completion rate; without it that route answers 404.

    >>> import xrcomplete.server
    >>> with xrcomplete.server.start("model.xrc", port=0) as server:  # doctest: +SKIP
    ...     print(server.url)
    """
    # Sequences as the server takes them (lists); every default is the server's.
    given: dict[str, Any] = dict(options)
    for name in _LISTS:
        if name in given:
            given[name] = list(given[name])
    if given.get("products") is not None:
        given["products"] = _model_path(given["products"], saving=False, name=RETRIEVER_FILE)
    return Server(_model_path(model, saving=False), **given)


_LISTS = ("record_keys", "search_keys", "trusted_proxies", "cors_origins")


def serve(
    model: PathLike,
    *,
    on_start: Callable[[Server], object] | None = None,
    **options: Unpack[ServerOptions],
) -> None:
    """Serves the completer saved at ``model`` until SIGTERM or Ctrl-C, then lets requests in
    flight finish and returns. SIGHUP reloads the model file. ``on_start`` is called with the
    running server (e.g. to print its address). Options as :func:`start`."""
    with_signals: ServerOptions = {**options, "signals": True}
    server = start(model, **with_signals)
    try:
        if on_start is not None:
            on_start(server)
        server.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.join()


def compact(
    model: PathLike,
    events: PathLike,
    output: PathLike,
    *,
    retrain: PathLike | None = None,
    min_clients: int | None = None,
) -> dict[str, int]:
    """Folds the searches of a server's event log (``--events``) into the completer saved at
    ``model`` and saves the result to ``output``: each search of a query the completer can
    suggest adds to its popularity and to its transitions after the previous query; searches
    of queries it does not know are left out (they need training) and counted. Returns
    ``{"searches", "folded", "unknown", "damaged"}``. A server serving ``output`` then reloads
    it with ``{"events_folded": searches}``, which drops the folded searches from its log.
    Searches of queries that fewer than ``min_clients`` distinct clients searched (the
    server's floor, ``--live-min-clients``; default: the model's ``live_min_clients``) are left
    out too (``below_floor``): what one
    stranger searched must not become everybody's suggestion through compaction.

    ``retrain``: a log in AOL's layout; a new completer, with the options ``model`` was trained
    with (its file keeps them), is trained on it and the searches instead, so that every query
    becomes one it can suggest (``unknown`` is then 0)."""
    if retrain is None:
        folded, report = CompleterModel.compact(
            _model_path(model, saving=False), events, min_clients
        )
        folded.save(_model_path(output, saving=True))
        return report
    trained = Completer.load(model, mmap=True)  # the model must be one, as without retrain
    floor = trained.live_min_clients if min_clients is None else min_clients
    searches, damaged, below = read_event_log(events, floor)
    params = {**trained.get_params(deep=False), "progress": "auto"}
    completer = Completer(**params).fit_log(retrain, searches=searches)
    completer.save(output)
    return {
        "searches": len(searches) + below,
        "folded": len(searches),
        "unknown": 0,
        "below_floor": below,
        "damaged": damaged,
    }
