"""Saving and loading: one checksummed format for every object; bad files give clear errors."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xrcomplete import FeatureConcat, ModelFormatError, TfidfVectorizer, Trie, _core

DOCS = ["cheap flights", "hotels in paris", "Ünïcode wörds", "cheap hotels"]


def fitted_vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 4),
        prefix_weighting="exponential",
        alpha=2.0,
        decay=0.25,
        position_scope="word",
        min_df=1,
        max_df=0.9,
        sublinear_tf=True,
        norm="l1",
    ).fit(DOCS)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), st.floats(-1e9, 1e9)), max_size=40))
def test_a_trie_round_trips_through_bytes_and_pickle(items: list[tuple[str, float]]) -> None:
    trie = Trie(items)
    for again in (Trie.from_bytes(trie.to_bytes()), pickle.loads(pickle.dumps(trie))):
        assert again.items() == trie.items()
        assert again.completions("", 5) == trie.completions("", 5)


def test_a_trie_saves_and_loads(tmp_path: Path) -> None:
    trie = Trie({"hotels": 3, "hotwire": 2})
    path = tmp_path / "queries.xrc"
    trie.save(path)
    trie.save(str(path))  # over the old file; str paths work too
    assert Trie.load(path).completions("hot") == trie.completions("hot")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["queries.xrc"]  # no temporary left


def test_a_vectorizer_saves_and_loads_with_its_options(tmp_path: Path) -> None:
    v = fitted_vectorizer()
    path = tmp_path / "v.xrc"
    v.save(path)
    loaded = TfidfVectorizer.load(path)
    assert loaded.get_params() == v.get_params()
    assert loaded.get_feature_names_out().tolist() == v.get_feature_names_out().tolist()
    np.testing.assert_array_equal(loaded.idf_, v.idf_)
    probes = [*DOCS, "ho", ""]
    assert (loaded.transform(probes) != v.transform(probes)).nnz == 0
    unpickled = pickle.loads(pickle.dumps(v))
    assert (unpickled.transform(probes) != v.transform(probes)).nnz == 0
    assert unpickled.get_params() == v.get_params()


def test_a_feature_concat_saves_and_loads(tmp_path: Path) -> None:
    both = FeatureConcat(
        [TfidfVectorizer(analyzer="word", ngram_range=(1, 2)), fitted_vectorizer()], norm=None
    ).fit(DOCS, DOCS)
    path = tmp_path / "both.xrc"
    both.save(path)
    loaded = FeatureConcat.load(path)
    assert loaded.norm is None
    assert loaded.blocks[1].get_params() == both.blocks[1].get_params()
    x, y = (
        both.transform(DOCS, ["ch", "ho", "ü", ""]),
        loaded.transform(DOCS, ["ch", "ho", "ü", ""]),
    )
    assert (x != y).nnz == 0


def set_version(data: bytes, version: int) -> bytes:
    import zlib

    body = data[:8] + struct.pack("<I", version) + data[12:-4]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda b: b[: len(b) // 2], "checksum mismatch"),
        (lambda b: b[:10], "too short"),
        (lambda b: b"", "too short"),
        (lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:], "checksum mismatch"),
        (lambda b: b"PK\x03\x04" + b[4:], "magic"),
        (lambda b: set_version(b, 99), "version 99; this build reads version 2"),
        # Files written before memory mapping.
        (lambda b: set_version(b, 1), "version 1; this build reads version 2"),
    ],
)
@pytest.mark.parametrize("mmap", [False, True])
def test_bad_files_raise_model_format_error(
    tmp_path: Path, corrupt: object, message: str, mmap: bool
) -> None:
    good = fitted_vectorizer().model.to_bytes()
    path = tmp_path / "bad.xrc"
    path.write_bytes(corrupt(good))  # type: ignore[operator]
    with pytest.raises(ModelFormatError, match=message):
        TfidfVectorizer.load(path, mmap=mmap)
    assert issubclass(ModelFormatError, ValueError)


def test_a_file_of_another_kind_is_named(tmp_path: Path) -> None:
    path = tmp_path / "trie.xrc"
    Trie({"a": 1}).save(path)
    with pytest.raises(ModelFormatError, match="holds a Trie, not a TfidfVectorizer"):
        TfidfVectorizer.load(path)
    with pytest.raises(ModelFormatError, match="not a FeatureConcat"):
        FeatureConcat.load(path)


def test_missing_paths_and_folders_raise_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.xrc"):
        Trie.load(tmp_path / "missing.xrc")
    with pytest.raises(OSError):
        Trie.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        Trie({"a": 1}).save(tmp_path / "no" / "such" / "dir" / "t.xrc")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_a_loader(data: bytes) -> None:
    for model_type in (Trie, _core.TfidfModel, _core.FeatureConcatModel):
        with pytest.raises(ModelFormatError):
            model_type.from_bytes(data)


SAVED_VECTORIZER = fitted_vectorizer().model.to_bytes()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SAVED_VECTORIZER) - 1), st.integers(0, 7))
def test_every_flipped_bit_of_a_saved_vectorizer_is_detected(position: int, bit: int) -> None:
    bad = bytearray(SAVED_VECTORIZER)
    bad[position] ^= 1 << bit
    with pytest.raises(ModelFormatError):
        _core.TfidfModel.from_bytes(bytes(bad))
