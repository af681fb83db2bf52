"""The benches find their data with --data DIR, and without it say in one line what they need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parent.parent / "benches"


@pytest.mark.parametrize(
    ("bench", "needs"),
    [
        ("qac.py", "aol_train.tsv, aol_valid.tsv"),
        ("vs_pecos.py", "aol_train.tsv, aol_valid.tsv"),
        ("load.py", "aol_train.tsv"),
        ("serve.py", "aol_train.tsv, aol_valid.tsv"),
        ("retrieval.py", "homedepot_products.tsv, homedepot_train.tsv, homedepot_valid.tsv"),
    ],
)
def test_a_bench_without_its_data_says_what_it_needs_in_one_line(
    bench: str, needs: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHES / bench), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{bench}: needs {needs} in {tmp_path} (give --data DIR)")
    assert "shared data folder" in lines[0] and "Traceback" not in result.stderr
