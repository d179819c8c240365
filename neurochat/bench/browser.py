"""What a person waits for in a real browser: a β change and an ablation, timed in headless Chromium
on a running app, from the change made in the page to the new picture shown (the network, Gradio's
queue and the picture's decoding included). `python -m neurochat.bench app --browser` uses it.

Needs the `playwright` package (its driver ships in the wheel; no browser download) and Debian's
/usr/bin/chromium, as the browser test does.
"""

from __future__ import annotations

import time
from pathlib import Path

from neurochat.errors import ConfigError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 720}  # a projector
LOCATE_PLACEHOLDER = "locate a concept, e.g. dog"


def check_browser() -> None:
    """Refuse early, naming what to install, when the browser timings cannot run here."""
    if not CHROMIUM.exists():
        raise ConfigError(f"--browser needs Chromium at {CHROMIUM}: apt-get install chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        raise ConfigError("--browser needs the playwright package: pip install -r requirements-dev.txt") from error


def browser_timings(url: str, betas: list[float], concepts: list[str], timeout_s: float = 180.0,
                    browser=None) -> dict[str, list[float]]:  # fmt: skip
    """Seconds per β change (each β not rendered before) and per ablation (each a concept unticked
    after locating it), in one page of the app at `url`; in `browser` (a Playwright browser) if given,
    else in a headless Chromium started for it."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                return browser_timings(url, betas, concepts, timeout_s, chromium)
            finally:
                chromium.close()
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.set_default_timeout(timeout_s * 1000)
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("Now exploring").wait_for()
        page.get_by_role("button", name="Reconstruct", exact=True).click()  # a prompt, then a picture
        shown = wait_for_new_image(page, "#nc-final", None)
        beta_s = []
        for beta in betas:
            number = page.locator("#nc-beta input[type=number]")
            number.fill(f"{beta:.2f}")
            started = time.perf_counter()
            number.press("Tab")  # the number box's release: what a slider drag's end sends
            page.locator("#nc-shown-beta").get_by_text(f"β = {beta:.2f}").wait_for()
            shown = wait_for_new_image(page, "#nc-final", shown)
            beta_s.append(time.perf_counter() - started)
        ablate_s, ablated = [], None
        for concept in concepts:
            page.get_by_placeholder(LOCATE_PLACEHOLDER).fill(concept)
            page.get_by_role("button", name="Locate", exact=True).click()
            chip = page.locator("#nc-concepts label", has_text=concept).first
            chip.wait_for()
            started = time.perf_counter()
            chip.click()  # untick: its voxels are zeroed and the picture drawn again
            ablated = wait_for_new_image(page, "#nc-ablated", ablated)
            page.locator("#nc-ablated").get_by_text(concept).first.wait_for()
            ablate_s.append(time.perf_counter() - started)
        return {"beta_s": beta_s, "ablate_s": ablate_s}
    finally:
        page.close()


def wait_for_new_image(page, selector: str, old: str | None) -> str:
    """Wait until the image under `selector` is another one than `old`, loaded; its src."""
    page.wait_for_function(
        "([sel, old]) => { const img = document.querySelector(sel + ' img');"
        " return img && img.complete && img.naturalWidth > 0 && img.getAttribute('src') !== old; }",
        arg=[selector, old],
    )
    return page.locator(f"{selector} img").first.get_attribute("src")
