"""Browser tests: real Chromium (Debian's `chromium` package) driven by Playwright.

Without Chromium they are skipped, saying so; under CI=true (where scripts/test installs it)
they are required and fail instead. Playwright's synchronous API runs an event loop in the test's
thread, which Django takes for async code: the ORM calls of these tests' own fixtures are allowed
there (DJANGO_ALLOW_ASYNC_UNSAFE, set for these tests only); the server under test runs in its
own thread as always.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


# Per module: Playwright's event loop must be gone when the session's tear-down (the test
# databases') runs after the last test.
@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        message = (
            "Browser tests: no Chromium (apt install chromium; scripts/test does under CI=true)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true requires them.")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@contextlib.contextmanager
def _orm_beside_playwright():
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


# Only while a browser test runs (its fixtures' set-up and tear-down included; these hooks of a
# folder's conftest are called for its own tests only): the other tests, and the processes they
# start, keep the check.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _orm_beside_playwright():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _orm_beside_playwright():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _orm_beside_playwright():
        yield


@pytest.fixture
def page(browser):
    """A fresh page that records what its Content-Security-Policy blocked and the script
    errors it raised: `page.violations()` answers them for the page shown."""
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(CSP_RECORDER)
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.violations = lambda: [*page.evaluate("window.__cspViolations"), *script_errors]
    page.set_default_timeout(10_000)
    yield page
    context.close()
