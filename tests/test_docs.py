"""The README's Python examples run, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
PRINT_WITH_EXPECTATION = re.compile(r"^print\(.*\)\s+# (?P<expected>.+)$")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert python_blocks()


def test_readme_examples_print_what_their_comments_say() -> None:
    for block in python_blocks():
        expected = [
            m.group("expected").strip()
            for line in block.splitlines()
            if (m := PRINT_WITH_EXPECTATION.match(line.strip()))
        ]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), {})
        printed = out.getvalue().splitlines()
        assert len(printed) == len(expected), (printed, expected)
        for line, comment in zip(printed, expected):
            # "..." in a comment stands for what varies between runs (a temporary folder).
            pattern = ".*".join(re.escape(part) for part in comment.split("..."))
            assert re.fullmatch(pattern, line), (line, comment)


def test_docstring_examples_of_the_package_run() -> None:
    import doctest

    import xrcomplete.completer
    import xrcomplete.metrics
    import xrcomplete.retrieval
    import xrcomplete.text
    import xrcomplete.xr

    for module in (
        xrcomplete.metrics,
        xrcomplete.completer,
        xrcomplete.retrieval,
        xrcomplete.text,
        xrcomplete.xr,
    ):
        result = doctest.testmod(module)
        assert result.attempted > 0, module
        assert result.failed == 0, module
