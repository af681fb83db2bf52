"""Fixtures shared by the server tests: a completer trained on the bundled AOL slice, and
servers on free loopback ports that are always stopped."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from xrcomplete import Completer
from xrcomplete.data import sample_path
from xrcomplete.server import Server, start


def pytest_sessionstart(session: pytest.Session) -> None:
    """With XRCOMPLETE_TEST_INSTALLED set (CI's run against the built wheel), the tests must
    import the installed package, not the checkout's python/ folder."""
    if not os.environ.get("XRCOMPLETE_TEST_INSTALLED"):
        return
    import xrcomplete
    from xrcomplete import _core

    prefix = Path(sys.prefix).resolve()
    for module in (xrcomplete, _core):
        where = Path(str(module.__file__)).resolve()
        if not where.is_relative_to(prefix):
            raise pytest.UsageError(f"{module.__name__} was imported from {where}, not {prefix}")


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
