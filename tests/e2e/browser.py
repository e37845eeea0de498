"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver (scripts/setup installs both).

Selenium blocks, and the server under test runs on the test's reactor, so
every browser step runs in a thread (``deferToThread``) while the reactor
serves.  Nothing is downloaded: the browser and the driver are the system's.
Screenshots go to ``$FMSPY_TEST_ARTIFACTS`` (default: a folder under the
system's temporary directory), never into the work tree.
"""
import os
import shutil
import tempfile

import pytest

from ..conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,2200"]


def require_browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = f"{', '.join(missing)} not installed (scripts/setup installs them)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def artifacts_dir() -> str:
    path = os.environ.get("FMSPY_TEST_ARTIFACTS") or os.path.join(tempfile.gettempdir(), "fmspy-test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path


class Browser:
    """One headless Chromium with a fresh profile; ``close()`` ends it and removes the profile."""

    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        self.profile = tempfile.mkdtemp(prefix="fmspy-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + [f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)

    def console_errors(self):
        """Console messages of level SEVERE (errors, failed loads) since the last call."""
        return [entry for entry in self.driver.get_log("browser") if entry.get("level") == "SEVERE"]

    def wait(self, condition, timeout=20, message=""):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(condition, message)

    def screenshot(self, name: str) -> str:
        path = os.path.join(artifacts_dir(), name)
        self.driver.save_screenshot(path)
        return path

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, True)
