"""The chat page at "/" in a real headless browser (Debian's chromium and
chromium-driver through selenium): send a message, see the answer stream in,
the live panel filled from /metrics; a screenshot is saved as
build/artifacts/chat-page.png."""
from __future__ import annotations

import os
import shutil

import pytest

import serverproc

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "",
                             shutil.which("chromium-browser") or "") if p and os.path.exists(p)), None)
DRIVER = next((p for p in ("/usr/bin/chromedriver", shutil.which("chromedriver") or "")
               if p and os.path.exists(p)), None)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM or not DRIVER:
        pytest.skip("chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("missing fixture: python3-selenium (run scripts/setup.sh)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--no-first-run", "--disable-extensions",
                "--disable-background-networking"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_chat_page_streams_an_answer(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.base_url + "/")
    wait = WebDriverWait(browser, 120, poll_frequency=0.1)
    wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "idle")
    assert browser.find_element(By.ID, "model").text == server.model_name

    max_tokens = browser.find_element(By.ID, "max_tokens")
    max_tokens.clear()
    max_tokens.send_keys("48")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys("Write two sentences about the ocean.")
    prompt.send_keys(Keys.ENTER)

    # The answer streams: text appears while the message is still marked streaming.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
    saw_partial = wait.until(lambda d: any(
        el.text.strip() for el in d.find_elements(By.CSS_SELECTOR, ".msg.assistant .text")))
    assert saw_partial
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".msg.assistant").get_attribute("data-finish"))
    msg = browser.find_element(By.CSS_SELECTOR, ".msg.assistant")
    assert msg.get_attribute("data-finish") in ("stop", "length"), msg.text
    answer = msg.find_element(By.CLASS_NAME, "text").text
    assert answer.strip()
    assert "tokens" in msg.find_element(By.CLASS_NAME, "meta").text
    assert browser.find_element(By.CSS_SELECTOR, ".msg.user .text").text == \
        "Write two sentences about the ocean."
    # The live panel: tokens/s and the KV cache, polled from /metrics.
    wait.until(lambda d: d.find_element(By.ID, "kvblocks").text != "–")
    assert "/" in browser.find_element(By.ID, "kvblocks").text
    assert browser.find_element(By.ID, "ntok").text.isdigit()
    serverproc.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = serverproc.ARTIFACTS / "chat-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0


def test_chat_page_stop_button(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.base_url + "/")
    wait = WebDriverWait(browser, 120, poll_frequency=0.05)
    wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "idle")
    max_tokens = browser.find_element(By.ID, "max_tokens")
    max_tokens.clear()
    max_tokens.send_keys("2000")
    browser.find_element(By.ID, "prompt").send_keys("Tell me a very long story about a dragon.")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".msg.assistant .text").text.strip())
    browser.find_element(By.ID, "stop").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".msg.assistant").get_attribute("data-finish"))
    assert browser.find_element(By.CSS_SELECTOR, ".msg.assistant").get_attribute("data-finish") in (
        "stopped", "stop", "length")
    assert browser.find_element(By.ID, "send").is_enabled()
    # The server drops the abandoned request: nothing left running.
    assert serverproc.wait_for(lambda: serverproc.metric(
        server.metrics(), "kvinfer:num_requests_running") == 0, 30)
