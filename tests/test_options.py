"""The completer's options: declared once in the core, saved with the model, read everywhere."""

from __future__ import annotations

import copy
import pickle
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_completer import synthetic_pairs

from xrcomplete import Completer, TfidfVectorizer, _core
from xrcomplete.cli import build_parser, main
from xrcomplete.completer import CompleterOptions
from xrcomplete.server import start

DECLARED = {d["name"]: d for d in Completer.options()}
CALLS = [("aol", "b"), ("", "b"), ("weather", "bing "), ("", "w"), ("bank of america", "")]


def _answers(c: Completer) -> list[Any]:
    return [c.complete(prev, prefix) for prev, prefix in CALLS]


def _same_params(a: Completer, b: Completer) -> None:
    pa, pb = a.get_params(), b.get_params()
    # The vectorizer objects differ; their parameters (prev_features__*) are compared.
    # Progress is how a fit reports, not how the model was made: it is not saved.
    for name in ("prev_features", "prefix_features", "progress"):
        pa.pop(name), pb.pop(name)
    assert pa == pb


def test_a_trained_model_gives_back_every_option_it_was_trained_with(tmp_path: Path) -> None:
    options: dict[str, Any] = {
        "index": "kmeans",
        "fuzzy_one": 6,
        "ranker": "additive",
        "copy": 0.25,
        "max_leaf_size": 4,
        "blocklist": ("yahoo",),
        "live_cap": 500,
        "live_min_clients": 2,
        "seed": 3,
    }
    prefix = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), prefix_weighting="harmonic")
    c = Completer(**options, prefix_features=prefix).fit(synthetic_pairs())
    assert repr(c).startswith("Completer(index='kmeans', max_leaf_size=4, seed=3, ranker=")
    want = _answers(c)
    path = c.save(tmp_path / "m.xrc")
    for other in (
        Completer.load(path),
        Completer.load(path, mmap=True),
        pickle.loads(pickle.dumps(c)),
        pickle.loads(pickle.dumps(Completer.load(path, mmap=True))),
    ):
        _same_params(c, other)
        assert other.get_params()["prefix_features__analyzer"] == "char"
        assert _answers(other) == want
        assert other.live_stats()["cap"] == 500
    # A completer that was never trained pickles with its options too.
    _same_params(Completer(**options), pickle.loads(pickle.dumps(Completer(**options))))


def test_compact_retrain_trains_with_the_model_s_options(tmp_path: Path) -> None:
    log = tmp_path / "log.tsv"
    rows = ["AnonID\tQuery\tQueryTime"]
    for i, (prev, nxt) in enumerate(synthetic_pairs()):
        for j, q in enumerate((prev, nxt)):
            if q:
                rows.append(f"{i}\t{q}\t2006-03-01 {i // 60 % 24:02d}:{i % 60:02d}:{j:02d}")
    log.write_text("\n".join(rows) + "\n")
    c = Completer(index="kmeans", fuzzy_one=6, ranker="additive", copy=0.25, progress=False)
    c.fit_log(log)
    model = c.save(tmp_path / "m.xrc")
    events = tmp_path / "events.log"
    with start(model, port=0, workers=1, events=events):
        pass  # an event log with no search yet
    out = tmp_path / "retrained.xrc"
    assert main(["compact", str(model), str(events), "-o", str(out), "--retrain", str(log)]) == 0
    again = Completer.load(out)
    _same_params(Completer.load(model), again)
    assert _answers(again) == _answers(c)


def test_the_command_line_reads_the_core_s_declarations() -> None:
    train = build_parser().parse_args(["train", "log.tsv", "-o", "m"])
    for name, d in DECLARED.items():
        # A list flag not given is None, read as the declared default (the empty list).
        want = None if isinstance(d["default"], tuple) else d["default"]
        assert getattr(train, name) == want, name
    flags = "--cp 2 --no-generate --features-off model --range-rows on --trie-depth 3"
    args = build_parser().parse_args(["train", "log", "-o", "m", *flags.split()])
    assert (args.Cp, args.generate, args.features_off) == (2.0, False, ["model"])
    assert (args.range_rows, args.trie_depth) == (True, 3)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "log", "-o", "m", "--copy", "1.5"])


def test_the_typed_keywords_are_the_declared_options() -> None:
    hints = typing.get_type_hints(CompleterOptions)
    assert set(hints) == set(DECLARED) - {"index"}
    for name, hint in hints.items():
        kind = DECLARED[name]["type"]
        if kind == "True or False":
            assert hint is bool, name
        elif kind.startswith("a whole number"):
            assert hint in (int, typing.Optional[int]), name
        elif kind.startswith("a number"):
            assert hint is float, name


def test_set_params_checks_everything_before_it_sets_anything() -> None:
    c = Completer()
    with pytest.raises(ValueError, match="copy must be"):
        c.set_params(beam_size=20, copy=2.0)
    assert c.beam_size == 10
    with pytest.raises(ValueError, match="invalid parameter"):
        c.set_params(prev_featurs__ngram_range=(1, 1))
    c.set_params(beam_size=20, prev_features__ngram_range=(1, 1), progress=False)
    assert c.get_params()["prev_features__ngram_range"] == (1, 1)
    assert (c.beam_size, c.progress) == (20, False)
    c.copy = 0.3
    with pytest.raises(ValueError, match="follow"):
        c.follow = 0.7  # copy + follow must be below 1
    assert repr(c) == (
        "Completer(beam_size=20, copy=0.3, prev_features=TfidfVectorizer(analyzer='word', "
        "ngram_range=(1, 1), lowercase=True, nfkc=False, prefix_weighting='none', alpha=1.0, "
        "decay=0.5, position_scope='string', min_df=1, max_df=1.0, max_features=None, "
        "sublinear_tf=False, use_idf=True, smooth_idf=True, norm='l2'), progress=False)"
    )


def _value(d: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value the declaration allows (the rank and live options: the fit stays small)."""
    kind = d["type"]
    if kind == "True or False":
        return st.booleans()
    if "choices" in d:
        return st.sampled_from(d["choices"])
    if kind.startswith("a whole number"):
        return st.integers(d["min"], d["max"] if d.get("max") is not None else d["min"] + 50)
    high = d["max"] if d.get("max") not in (None, float("inf")) else 1e9
    return st.floats(d["min"], high, exclude_min=not d["min_inclusive"], allow_nan=False)


_SERVING = [n for n, d in DECLARED.items() if d["kind"] in ("rank", "live")]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.fixed_dictionaries({}, optional={n: _value(DECLARED[n]) for n in _SERVING}).filter(
        lambda o: _checks(o)
    ),
    st.sampled_from(["trie", "hybrid"]),
)
def test_every_option_round_trips_through_save_load_and_pickle(
    tmp_path: Path, options: dict[str, Any], index: str
) -> None:
    c = Completer(index=index, max_leaf_size=8, progress=False, **options).fit(synthetic_pairs())
    path = c.save(tmp_path / "m.xrc")
    want = _answers(c)
    for other in (
        Completer.load(path),
        Completer.load(path, mmap=True),
        pickle.loads(pickle.dumps(c)),
    ):
        _same_params(c, other)
        assert _answers(other) == want


def _checks(options: dict[str, Any]) -> bool:
    try:
        _core.Options(**options)
    except ValueError:
        return False  # options that disagree (fuzzy_two below fuzzy_one)
    return True


def test_a_call_overrides_ranking_options_only() -> None:
    c = Completer(index="trie", max_leaf_size=8, progress=False).fit(synthetic_pairs())
    assert c.model.complete("", "b", 3, beam_size=10) == c.model.complete("", "b", 3)
    wide = c.model.complete("", "b", 50, generate=False)
    assert all(source != "composed" for _, _, source, _ in wide)
    with pytest.raises(TypeError, match="index is a fit option"):
        c.model.complete("", "b", 3, index="kmeans")
    with pytest.raises(TypeError, match="unknown option"):
        c.model.complete_batch([""], ["b"], 3, beam=3)
    with pytest.raises(ValueError, match="fuzzy_two"):
        c.model.explain("", "b", 3, fuzzy_one=12)


def test_options_that_depend_on_each_other_are_checked_together_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        "train log -o m --fuzzy-one 12 --fuzzy-two 15 --copy 0.8 --follow 0.1".split()
    )
    assert (args.fuzzy_one, args.fuzzy_two, args.copy, args.follow) == (12, 15, 0.8, 0.1)
    log = tmp_path / "log.tsv"
    log.write_text("AnonID\tQuery\tQueryTime\n1\ta b\t2006-03-01 00:00:00\n")
    out = str(tmp_path / "m.xrc")
    assert main(["train", str(log), "-o", out, "--fuzzy-one", "12"]) == 2
    assert "fuzzy_two (9) must be 0 or at least fuzzy_one (12)" in capsys.readouterr().err
    # List flags, one term each, leave the positionals alone.
    args = build_parser().parse_args(["train", "-o", "m", "--blocklist", "a b", "log"])
    assert (args.blocklist, args.logs) == (["a b"], ["log"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "log", "-o", "m", "--ra", "on"])  # no abbreviations


def test_numbers_of_numpy_are_taken_and_numbers_too_large_are_refused() -> None:
    np = pytest.importorskip("numpy")
    c = Completer(beam_size=np.int64(3), copy=np.float32(0.25), generate=np.bool_(False))
    assert (c.beam_size, c.copy, c.generate) == (3, 0.25, False)
    with pytest.raises(ValueError, match="seed must be"):
        Completer(seed=2**64)
    with pytest.raises(TypeError, match="beam_size must be"):
        Completer(beam_size=3.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generate must be"):
        Completer(generate=1)  # type: ignore[arg-type]


def test_get_params_gives_back_the_objects_given_as_scikit_learn_s_clone_checks() -> None:
    blocked = ("a b",)
    c = Completer(index="hybrid", copy=0.25, blocklist=blocked)
    params = c.get_params(deep=False)
    again = Completer(**params).get_params(deep=False)
    assert all(again[k] is v for k, v in params.items())
    assert c.get_params()["blocklist"] is blocked


class _Named(Completer):
    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(**options)
        self.name = name


def test_pickle_and_copy_keep_a_subclass_and_its_attributes(tmp_path: Path) -> None:
    c = _Named("mine", index="trie", max_leaf_size=8, progress=False).fit(synthetic_pairs())
    c.block(["bing"])
    c.note = "kept"
    for other in (pickle.loads(pickle.dumps(c)), copy.copy(c), copy.deepcopy(c)):
        assert type(other) is _Named
        assert (other.name, other.note, other.max_leaf_size) == ("mine", "kept", 8)
        assert _answers(other) == _answers(c)
    # Terms blocked after training are among the options the file keeps.
    loaded = Completer.load(c.save(tmp_path / "m.xrc"))
    assert loaded.get_params()["blocklist"] == ("bing",) == tuple(loaded.blocked)


def test_a_server_counts_live_searches_as_the_model_was_trained_to(tmp_path: Path) -> None:
    import json
    import urllib.request

    def seen_after_one_search(model: Path) -> bool:
        with start(model, port=0, workers=1) as server:
            post = urllib.request.Request(
                f"{server.url}/v1/searches",
                data=json.dumps({"query": "zzyzx road"}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(post, timeout=10) as answer:
                assert answer.status == 200
            url = f"{server.url}/v1/complete?prefix=zzyzx"
            with urllib.request.urlopen(url, timeout=10) as answer:
                found = json.load(answer)["suggestions"]
        return any(s["text"] == "zzyzx road" for s in found)

    pairs = synthetic_pairs()
    one = Completer(live_min_clients=1, progress=False).fit(pairs).save(tmp_path / "one.xrc")
    three = Completer(progress=False).fit(pairs).save(tmp_path / "three.xrc")
    # One client is enough under the model's floor of 1; the default floor of 3 waits for more.
    assert seen_after_one_search(one)
    assert not seen_after_one_search(three)


def test_the_server_s_options_are_listed_once_with_their_defaults_in_the_server() -> None:
    import inspect

    from xrcomplete.server import ServerOptions, serve

    server = inspect.signature(_core.Server)
    assert set(server.parameters) - {"path"} == set(typing.get_type_hints(ServerOptions))
    with pytest.raises(TypeError, match="max_kk"):
        start("no-model.xrc", max_kk=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_kk"):
        serve("no-model.xrc", max_kk=3)  # type: ignore[call-arg]
