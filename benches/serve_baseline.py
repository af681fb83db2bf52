"""The server a user would otherwise write around ``Completer.complete``: starlette on uvicorn.

Run by ``benches/serve.py`` as ``uvicorn serve_baseline:app --workers 2`` with the model file in
``XRCOMPLETE_MODEL``. It answers ``GET /v1/complete?prefix=..&prev=..&k=..`` with the same JSON
as ``xrcomplete serve`` (so the two can be compared answer for answer), calling
``complete`` directly in the async handler (a thread pool would only add a hop per request).
With a saved product retriever in ``XRCOMPLETE_PRODUCTS``, also ``GET /v1/products?q=..&k=..``
around ``ProductRetriever.retrieve``, with its titles, as ``xrcomplete serve --products``.
"""

from __future__ import annotations

import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from xrcomplete import Completer, ProductRetriever
from xrcomplete._core import normalize_query

completer = Completer.load(os.environ["XRCOMPLETE_MODEL"], mmap=True)
retriever = None
titles: dict[object, str] = {}
if os.environ.get("XRCOMPLETE_PRODUCTS"):
    retriever = ProductRetriever.load(os.environ["XRCOMPLETE_PRODUCTS"], mmap=True)
    titles = retriever.titles()


def parse_k(text: str) -> int | None:
    """``k`` from 0 to 100, as xrcomplete serve's default ``max_k``; None when it is not."""
    try:
        k = int(text)
    except ValueError:
        return None
    return k if 0 <= k <= 100 else None


async def complete(request: Request) -> JSONResponse:
    params = request.query_params
    prefix = params.get("prefix")
    if prefix is None:
        return JSONResponse({"error": {"code": "missing_prefix"}}, status_code=400)
    prev = params.get("prev", "")
    k = parse_k(params.get("k", "10"))
    if k is None:
        return JSONResponse({"error": {"code": "bad_k"}}, status_code=400)
    start = time.perf_counter()
    found = completer.complete(prev, prefix, k)
    took_us = int((time.perf_counter() - start) * 1e6)
    return JSONResponse(
        {
            "suggestions": [
                # The part of the suggestion the typed prefix (for a fuzzy one, the corrected
                # prefix) covers, in code points: what xrcomplete serve highlights.
                {
                    "text": c.query,
                    "score": c.score,
                    "highlight": [0, len(c.matched)],
                    "source": c.source,
                }
                for c in found
            ],
            "prev": normalize_query(prev),
            "took_us": took_us,
            "model": "baseline",
        }
    )


async def products(request: Request) -> JSONResponse:
    params = request.query_params
    q = params.get("q")
    if retriever is None:
        return JSONResponse({"error": {"code": "no_products"}}, status_code=404)
    if q is None:
        return JSONResponse({"error": {"code": "missing_q"}}, status_code=400)
    k = parse_k(params.get("k", "10"))
    if k is None:
        return JSONResponse({"error": {"code": "bad_k"}}, status_code=400)
    start = time.perf_counter()
    found = retriever.retrieve(q, k)
    took_us = int((time.perf_counter() - start) * 1e6)
    return JSONResponse(
        {
            "products": [{"id": p, "title": titles[p], "score": s} for p, s in found],
            "took_us": took_us,
            "model": "baseline",
        }
    )


app = Starlette(routes=[Route("/v1/complete", complete), Route("/v1/products", products)])
