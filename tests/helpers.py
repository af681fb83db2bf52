"""Shared test helpers."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

T = TypeVar("T")

# The keys of the servers that tests start with keys (at least 16 characters).
ADMIN_KEY = "admin-key-of-the-tests"
RECORD_KEY = "record-key-of-the-tests"


def bearer(key: str) -> dict[str, str]:
    """The header that sends ``key``."""
    return {"Authorization": f"Bearer {key}"}


def run_in_threads(work: Callable[[], T], n: int = 8, timeout: float = 120.0) -> list[T]:
    """Runs ``work`` on ``n`` threads released together; returns each thread's result.

    An exception in a thread is raised here; a thread still running after ``timeout`` seconds
    fails the test (a deadlock must not pass as a success).
    """
    barrier = threading.Barrier(n)
    results: list[T | None] = [None] * n
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            barrier.wait()
            results[slot] = work()
        except BaseException as err:  # reported on the test's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if any(t.is_alive() for t in threads):
        raise AssertionError(f"threads still running after {timeout} s")
    if errors:
        raise errors[0]
    return cast(list[T], results)  # every slot was filled: no thread failed or hung


def get_json(port: int, target: str) -> tuple[int, Any]:
    """GET ``target`` from the server on this machine's ``port``: (status, decoded JSON)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def serve_cli(model: object, *options: str) -> tuple[subprocess.Popen[str], int]:
    """`xrcomplete serve MODEL --port 0 OPTIONS` in a process of its own, once it listens: the
    process (the caller stops it) and its port."""
    # The CLI as `xrcomplete serve` runs it, with Ctrl-C (SIGINT) raising KeyboardInterrupt even
    # when the tests themselves run with SIGINT ignored (started in the background by a
    # script: an ignored signal stays ignored across exec, and Python then keeps it so).
    script = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from xrcomplete.cli import main; sys.exit(main())"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "serve", str(model), "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if found is None:
        proc.kill()
        raise AssertionError(f"no address in {line!r}: {proc.communicate()}")
    return proc, int(found.group(1))


@contextmanager
def headless_chromium(*flags: str) -> Iterator[Any]:
    """Debian's Chromium (chromium and chromium-driver), headless, driven by selenium, with
    ``flags`` added; quit when the block ends. Without it the test is skipped, or fails when
    XRCOMPLETE_REQUIRE_BROWSER is set (as in CI)."""
    import pytest

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        message = "needs Debian's chromium and chromium-driver (apt-get install -y ...)"
        if os.environ.get("XRCOMPLETE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", *flags]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
