"""Products as you type: ``xrcomplete serve MODEL --products RETRIEVER`` answers
``GET /v1/products`` with exactly ``ProductRetriever.retrieve``'s products (ids of either type,
as given) and their catalogue titles; bad input is a JSON 4xx; without a retriever, 404."""

from __future__ import annotations

import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import get_json as get
from helpers import serve_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrcomplete import Completer, ProductRetriever
from xrcomplete.cli import main
from xrcomplete.server import Server, start

CATALOGUE = {
    "100": "Leather Sofa in Brown",
    "101": "Cordless Drill 18V Lithium",
    "102": "Ceiling Fan with Light Kit",
    "103": "Garden Hose 50 ft.",
    "104": "Paint Roller Kit 9 in.",
    "105": "Brown Leather Recliner",
}
PAIRS = [
    ("couch", "100"),
    ("brown couch", "100"),
    ("leather chair", "105"),
    ("power screwdriver", "101"),
    ("hose", "103"),
    ("fan", "102"),
]
WORDS = ["couch", "brown", "leather", "drill", "fan", "light", "hose", "paint", "kit", "x"]


def fitted(integer_ids: bool) -> ProductRetriever:
    key = int if integer_ids else str
    catalogue: dict[Any, str] = {key(p): t for p, t in CATALOGUE.items()}
    return ProductRetriever(max_leaf_size=2, progress=False).fit(
        [q for q, _ in PAIRS], [key(p) for _, p in PAIRS], catalogue
    )


@pytest.fixture(scope="module", params=[False, True], ids=["str ids", "int ids"])
def served(
    request: pytest.FixtureRequest,
    sample_model: tuple[Completer, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, ProductRetriever]]:
    retriever = fitted(request.param)
    path = retriever.save(tmp_path_factory.mktemp("products") / "retriever.xrc")
    with start(sample_model[1], port=0, workers=2, products=path) as server:
        yield server, retriever
    assert server.finished


def products_url(q: str, k: int | None = None) -> str:
    query = {"q": q} if k is None else {"q": q, "k": str(k)}
    return "/v1/products?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    q=st.one_of(
        st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join),
        st.text(max_size=30),
    ),
    k=st.one_of(st.none(), st.integers(0, 20)),
)
def test_products_over_http_are_the_retrievers(
    served: tuple[Server, ProductRetriever], q: str, k: int | None
) -> None:
    server, retriever = served
    status, body = get(server.port, products_url(q, k))
    assert status == 200, body
    titles = retriever.titles()
    want = [
        {"id": p, "title": titles[p], "score": s}
        for p, s in retriever.retrieve(q, 10 if k is None else k)
    ]
    assert body["products"] == want
    # The ids come back as the catalogue gave them, str or int (not as True == 1 would).
    assert [type(p["id"]) for p in body["products"]] == [type(w["id"]) for w in want]
    assert isinstance(body["took_us"], int) and len(body["model"]) == 16


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("/v1/products", 400, "missing_q"),
        ("/v1/products?k=2", 400, "missing_q"),
        ("/v1/products?q=" + "a" * 1025, 400, "too_long"),
        ("/v1/products?q=couch&k=x", 400, "bad_k"),
        ("/v1/products?q=couch&k=101", 400, "bad_k"),
        ("/v1/products?q=couch&q=sofa", 400, "repeated_parameter"),
        ("/v1/products?q=couch&prefix=c", 400, "unknown_parameter"),
        ("/v1/products?q=%C3%28", 400, "bad_encoding"),
    ],
)
def test_bad_product_requests_are_4xx_with_a_json_error(
    served: tuple[Server, ProductRetriever], target: str, status: int, code: str
) -> None:
    got_status, got = get(served[0].port, target)
    assert (got_status, got["error"]["code"]) == (status, code), got
    assert got["error"]["message"]


def test_without_a_retriever_the_route_is_a_404(server: Server) -> None:
    status, got = get(server.port, products_url("couch"))
    assert (status, got["error"]["code"]) == (404, "no_products"), got


def test_cli_serves_products(sample_model: tuple[Completer, Path], tmp_path: Path) -> None:
    retriever = fitted(integer_ids=True)
    path = retriever.save(f"{tmp_path}/products/")  # a folder: retriever.xrc in it
    assert path.name == "retriever.xrc"
    proc, port = serve_cli(sample_model[1], "--products", str(path.parent))
    try:
        status, body = get(port, products_url("brown couch", 2))
        assert status == 200 and body["products"][0]["id"] == 100, body
        assert body["products"][0]["title"] == CATALOGUE["100"]
        assert get(port, "/v1/complete?prefix=ho")[0] == 200
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert path.exists()


def test_cli_refuses_a_bad_retriever_in_one_line(
    sample_model: tuple[Completer, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A completer where the retriever should be, then no file at all.
    for bad in (sample_model[1], tmp_path / "none.xrc"):
        assert main(["serve", str(sample_model[1]), "--port", "0", "--products", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("xrcomplete: error:") and len(err.splitlines()) == 1, err
        assert str(bad) in err, err


def test_the_shop_quickstart_trains_both_and_says_how_to_serve_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = tmp_path / "data"
    shop.mkdir()
    (shop / "homedepot_products.tsv").write_text(
        "product_uid\tproduct_title\n" + "".join(f"{p}\t{t}\n" for p, t in CATALOGUE.items()),
        encoding="utf-8",
    )
    judged = [(q, p, 3.0) for q, p in PAIRS] + [("leather couch", "100", 2.67)]
    (shop / "homedepot_train.tsv").write_text(
        "search_term\tproduct_uid\trelevance\n" + "".join(f"{q}\t{p}\t{r}\n" for q, p, r in judged),
        encoding="utf-8",
    )
    out = tmp_path / "shop"
    assert main(["quickstart", "--products", str(shop), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "typing" in printed and f"--products {out / 'retriever.xrc'}" in printed, printed
    retriever = ProductRetriever.load(out / "retriever.xrc")
    assert retriever.titles() == {p: CATALOGUE[p] for _, p, _ in judged}
    completer = Completer.load(out / "completer.xrc")
    assert completer.complete("", "brown c", 1)[0].query == "brown couch"
    # Without the data: one line, no traceback.
    assert main(["quickstart", "--products", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xrcomplete: error:") and "homedepot_products.tsv" in err, err
