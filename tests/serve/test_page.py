"""The page at / in a real headless Chromium (Debian's chromium and chromium-driver, driven by selenium):
a 7 drawn with pointer events is read as 7; an uploaded photo of a digit is read as its label."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.conftest import DIGITS

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.is_file() and DRIVER.is_file()):
    pytest.skip(
        f"no {CHROMIUM} or {DRIVER}: install Debian's browser (apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason='selenium is not installed: pip install -e ".[dev]"')
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.browser
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1000,900",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    profile = tempfile.mkdtemp(prefix="cnnx-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(DRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(browser, server) -> None:
    browser.get(server.url + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "yes")


def _answer(browser) -> tuple[str, str]:
    """(label shown, error shown), once the page has an answer and no request is in flight."""

    def settled(d) -> bool:
        body = d.find_element(By.TAG_NAME, "body")
        return body.get_attribute("data-answered") == "yes" and body.get_attribute("data-busy") == "0"

    WebDriverWait(browser, 30).until(settled)
    return browser.find_element(By.ID, "label").text, browser.find_element(By.ID, "error").text


def test_a_7_drawn_on_the_canvas_is_read_as_7(browser, server):
    from selenium.webdriver.common.action_chains import ActionChains

    _open(browser, server)
    pad = browser.find_element(By.ID, "pad")
    # offsets from the canvas's centre (280 x 280 CSS pixels): the bar of the 7, then its stem
    ActionChains(browser).move_to_element_with_offset(pad, -75, -95).click_and_hold().move_by_offset(
        50, 0
    ).move_by_offset(50, 0).move_by_offset(50, 0).move_by_offset(-25, 45).move_by_offset(-25, 50).move_by_offset(
        -25, 50
    ).move_by_offset(-20, 45).release().perform()
    label, error = _answer(browser)
    assert (label, error) == ("7", "")
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(bars) == 10 and bars[0].find_element(By.CLASS_NAME, "name").text == "7"
    seen = browser.find_element(By.ID, "seen").get_attribute("src")
    assert seen.startswith("data:image/png;base64,")  # the 28x28 input the model was given


def test_an_uploaded_photo_is_read_as_its_digit(browser, server):
    _open(browser, server)
    for photo in sorted(DIGITS.glob("photo-*.jpg")):
        browser.find_element(By.ID, "file").send_keys(str(photo))
        label, error = _answer(browser)
        assert (label, error) == (photo.stem[-1], ""), photo.name
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "picture").is_displayed())


def test_a_blank_picture_shows_the_servers_reason_and_clear_empties_the_answer(browser, server, tmp_path):
    from PIL import Image

    _open(browser, server)
    Image.new("L", (64, 48), 255).save(tmp_path / "white.png")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "white.png"))
    label, error = _answer(browser)
    assert label == "" and "no digit found" in error
    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "error").text == "" and not browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
