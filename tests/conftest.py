"""Fixtures shared by the server tests: a completer trained on the bundled AOL slice, and
servers on free loopback ports that are always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from xrcomplete import Completer
from xrcomplete.data import sample_path
from xrcomplete.server import Server, start


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Completer, Path]:
    """A completer trained on the bundled slice, and the file it is saved in."""
    completer = Completer(progress=False).fit_log(sample_path())
    path = completer.save(tmp_path_factory.mktemp("served") / "completer.xrc")
    return completer, path


@pytest.fixture
def server(sample_model: tuple[Completer, Path]) -> Iterator[Server]:
    """The sample model served on a free loopback port; stopped after the test."""
    with start(sample_model[1], port=0, workers=2) as running:
        yield running
    assert running.finished
