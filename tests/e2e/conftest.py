"""Browser tests: the real stack (API, Celery worker, consumer, scheduler on the private Redis,
with the LLM stand-in), the dashboard's build served by utils/frontend_server.py, and Debian's
Chromium (else Playwright's own, installed on first use) driven by Playwright. Skipped, with the
reason, when no Chromium can be had or Node.js is missing.

`ATF_SCREENSHOTS=docs/screenshots` (`make screenshots`) also saves the README's screenshots."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.stack import ROOT, STARTUP_TIMEOUT, Stack, wait_until
from tests.stub_llm import StubLLM
from utils.frontend_build import FrontendUnavailable, ensure_build
from utils.redis_server import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def dist() -> Path:
    try:
        return ensure_build()
    except FrontendUnavailable as exc:
        pytest.skip(f"dashboard not built: {exc}")


def playwright_chromium_problem() -> str | None:
    """Where Debian's Chromium is missing, Playwright's own, downloaded once into its cache by
    `playwright install chromium` (no root needed); why it cannot be had, or None."""
    install = [sys.executable, "-m", "playwright", "install", "chromium"]
    try:
        done = subprocess.run(install, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return "`playwright install chromium` took over 10 minutes"
    if done.returncode:
        lines = (done.stderr + done.stdout).splitlines()
        error = next((line for line in lines if line.startswith("Error")), lines[-1] if lines else "no output")
        return f"`playwright install chromium` failed ({error[:200]})"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    executable = str(CHROMIUM) if CHROMIUM.exists() else None  # None: Playwright's own
    if executable is None and (problem := playwright_chromium_problem()):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it) and {problem}")
    # Assertions retry for up to 15 s: the machine may be busy with the rest of the suite.
    sync_api.expect.set_options(timeout=15_000)
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            if executable:
                raise
            # Playwright's own build needs system libraries a bare server may lack (it names them).
            pytest.skip(f"Playwright's Chromium does not start here: {str(exc).strip().splitlines()[0][:300]}")
        yield chromium
        chromium.close()


class Dashboard:
    """The dashboard server for one stack, as a process (restartable, like the stack's own)."""

    def __init__(self, stack: Stack, dist: Path, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "utils.frontend_server", "--port", str(self.port),
               "--api", f"http://127.0.0.1:{stack.api_port}", "--dist", str(dist)]  # fmt: skip
        log = open(workdir / "frontend.log", "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=log)
        wait_until(self._up, STARTUP_TIMEOUT, what="the dashboard server",
                   alive=lambda: None if self.proc.poll() is None else f"exited with {self.proc.returncode}")

    def _up(self) -> bool:
        try:
            return httpx.get(self.url + "/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _make_stack(redis_url: str, llm: StubLLM, workdir: Path) -> Stack:
    # A short breaker reset timeout would let a probe close it by itself; the UI test must do it.
    return Stack(redis_url, llm.url, workdir, CIRCUIT_BREAKER_RESET_TIMEOUT="600").start_all()


@pytest.fixture(scope="module")
def llm() -> Iterator[StubLLM]:
    stub = StubLLM(delay=0.05)
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def stack(redis_url: str, llm: StubLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack for the tests of a module (they use their own tasks, so they do not collide)."""
    running = _make_stack(redis_url, llm, tmp_path_factory.mktemp("e2e-stack"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dashboard(stack: Stack, dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    server = Dashboard(stack, dist, tmp_path_factory.mktemp("e2e-frontend"))
    yield server
    server.stop()


@pytest.fixture
def open_page(browser: object, dashboard: Dashboard) -> Iterator[Callable[..., object]]:
    """Open a dashboard path in a fresh browser context (desktop size unless told otherwise)."""
    contexts: list[object] = []

    def open_(path: str = "/", viewport: dict[str, int] = DESKTOP) -> object:
        context = browser.new_context(viewport=viewport, base_url=dashboard.url)  # type: ignore[attr-defined]
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(path)
        return page

    yield open_
    for context in contexts:
        context.close()  # type: ignore[attr-defined]


def screenshot(page: object, name: str, full_page: bool = False) -> None:
    """Save a README screenshot when ATF_SCREENSHOTS names a folder (`make screenshots`): the
    viewport, cut at the end of the content (or the whole page), so the PNGs stay small."""
    folder = os.environ.get("ATF_SCREENSHOTS")
    if not folder:
        return
    target = Path(folder) if Path(folder).is_absolute() else ROOT / folder
    target.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(400)  # type: ignore[attr-defined]  # let the last batch of live figures render
    width, height, viewport = page.evaluate(  # type: ignore[attr-defined]
        "[document.documentElement.clientWidth,"
        " Math.ceil(document.querySelector('main').getBoundingClientRect().bottom) + 8, window.innerHeight]"
    )
    clip = None if full_page else {"x": 0, "y": 0, "width": width, "height": min(height, viewport)}
    page.screenshot(path=str(target / f"{name}.png"), full_page=full_page, clip=clip)  # type: ignore[attr-defined]
