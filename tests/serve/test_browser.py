"""`segue serve` in a real browser: headless Chromium (Debian's `chromium`), driven by Selenium
through Debian's `chromium-driver` (scripts/setup.sh installs both; without them these tests
skip). A screenshot of the page after a continuation is saved in $SEGUE_TEST_ARTIFACTS (default:
the test's temporary folder), never in the repository."""

from __future__ import annotations

import io
import os
import shutil
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

from tests.serve.conftest import PROMPT, needs_serve_extra, serve_command

needs_serve_extra()
pytest.importorskip("selenium", reason="the browser extra (selenium) is not installed")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="no chromium + chromedriver (apt-get install chromium-driver)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve_command(log=log) as (_, url):
        yield url, log


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,1900",
        "--use-fake-ui-for-media-stream",  # grant the microphone without asking...
        "--use-fake-device-for-media-stream",  # ...and make it a test tone
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SEGUE_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait(browser, condition, timeout: float = 90.0):
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(lambda _: condition())


def element(browser, css: str):
    return browser.find_element(By.CSS_SELECTOR, css)


def test_continue_the_bundled_prompt_in_the_browser(server, browser, tmp_path):
    url, log = server
    browser.get(url)
    wait(browser, lambda: "speech-tiny" in element(browser, "#model").text)

    # A text file: a one-line error in the page, and the page goes on working.
    notes = tmp_path / "notes.txt"
    notes.write_text("minutes of the meeting\n" * 20)
    element(browser, "#continue-file").send_keys(str(notes))
    element(browser, "#continue-run").click()
    error = element(browser, "#continue-error")
    wait(browser, error.is_displayed, 30)
    assert "notes.txt: not a readable audio file" in error.text
    assert "Traceback" not in browser.page_source

    element(browser, "#continue-file").send_keys(str(PROMPT))
    seconds = element(browser, "#continue-seconds")
    seconds.clear()
    seconds.send_keys("2")
    element(browser, "#continue-run").click()
    result = element(browser, "#continue-result")
    wait(browser, result.is_displayed)
    assert not error.is_displayed()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#continue-progress li.done")) == 5

    # The player holds the prompt (3 s) + 2 s, as the server's WAV says and as the browser reads.
    player = element(browser, "#continue-output")
    wait(browser, lambda: browser.execute_script("return arguments[0].readyState", player) >= 1)
    assert browser.execute_script("return arguments[0].duration", player) == pytest.approx(5.0)
    data = urllib.request.urlopen(player.get_attribute("src"), timeout=30).read()
    assert sf.info(io.BytesIO(data)).duration == pytest.approx(5.0)
    assert "3.00 s prompt + 2 s continuation" in element(browser, "#continue-result").text
    assert element(browser, "#continue-download").get_attribute("download").endswith(".wav")

    image = element(browser, "#continue-spectrogram")
    wait(browser, lambda: browser.execute_script("return arguments[0].naturalWidth", image) > 0)
    assert image.is_displayed()
    shot = artifacts(tmp_path) / "segue-serve-continue.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")
    assert "Traceback" not in log.read_text()


def test_examples_the_microphone_and_the_other_tabs(server, browser, tmp_path):
    url, _ = server
    browser.get(url)
    wait(browser, lambda: browser.find_elements(By.ID, "continue-example-prompt-speech"))
    element(browser, "#continue-example-prompt-speech").click()
    info = element(browser, "#continue-input-info")
    wait(browser, lambda: "prompt-speech.wav: 3.00 s" in info.text, 30)

    record = element(browser, "#continue-record")  # the fake microphone plays a tone
    record.click()
    wait(browser, lambda: "Stop" in record.text, 30)
    wait(browser, lambda: "(1 s)" in record.text, 30)
    record.click()
    wait(browser, lambda: info.text.startswith("recording.wav: "), 30)
    assert float(info.text.split(": ")[1].split(" s")[0]) >= 0.8

    element(browser, "#tab-generate").click()
    assert element(browser, "#panel-generate").is_displayed()
    assert not element(browser, "#panel-continue").is_displayed()
    seconds = element(browser, "#generate-seconds")
    seconds.clear()
    seconds.send_keys("1")
    element(browser, "#generate-run").click()
    wait(browser, element(browser, "#generate-result").is_displayed)
    assert "1 s from nothing" in element(browser, "#generate-result").text

    element(browser, "#tab-resynth").click()
    element(browser, "#resynth-run").click()  # nothing given yet: said in the page, not sent
    error = element(browser, "#resynth-error")
    wait(browser, error.is_displayed, 10)
    assert "give the audio to resynthesize" in error.text
    element(browser, "#resynth-example-prompt-speech").click()
    wait(browser, lambda: "prompt-speech.wav" in element(browser, "#resynth-input-info").text)
    element(browser, "#resynth-run").click()
    wait(browser, element(browser, "#resynth-result").is_displayed)
    assert not error.is_displayed()
    browser.save_screenshot(str(artifacts(tmp_path) / "segue-serve-resynth.png"))
