"""Headless Chromium for the review page tests (``from browser import ...``).

Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; ``.ci/run`` installs them) driven by Selenium. Where
they are missing the browser tests are skipped with the reason, except in CI
(``CI=true``), where a missing browser is an error: those tests must run there.

* ``chrome(download_dir)``: a fresh headless browser (its own profile folder,
  downloads saved to ``download_dir`` without asking, console messages logged);
* ``console_errors(driver)``: the SEVERE messages of the browser console so far;
* ``wait_for(predicate)``: poll until true (Selenium's WebDriverWait, 10 s);
* ``shot(driver, name)``: a PNG of the window into ``$CAPTIONER_SCREENSHOTS``
  (a folder) when that is set, else into pytest's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CAPTIONER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CAPTIONER_CHROMEDRIVER", "/usr/bin/chromedriver")

#: Flags that keep headless Chromium quiet and offline on a CI machine.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,760")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found (apt-get install -y chromium chromium-driver)"
    return None


def require_browser() -> None:
    """Skip (locally) or fail (CI=true) when the browser is missing."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


def chrome(download_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="captioner-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option("prefs", {
        "download.default_directory": str(download_dir), "download.prompt_for_download": False,
        "download.directory_upgrade": True, "safebrowsing.enabled": False,
    })
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver._captioner_profile = profile  # removed by close()
    return driver


def close(driver) -> None:
    profile = getattr(driver, "_captioner_profile", None)
    driver.quit()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def wait_for(driver, predicate, timeout: float = 10.0, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d), message)


def shot(driver, name: str, fallback: Path) -> Path:
    folder = Path(os.environ.get("CAPTIONER_SCREENSHOTS") or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    driver.save_screenshot(str(path))
    return path
