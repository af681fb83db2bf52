"""The type stubs of the compiled module match what it exports (mypy's stubtest)."""

from __future__ import annotations

import subprocess
import sys


def test_stubs_match_the_compiled_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "xrcomplete._core"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
