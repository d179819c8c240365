"""The real app in a real browser: `python app.py` as a subprocess, driven by Playwright in headless
Debian Chromium at a projector's 1280×720.

    pytest tests/test_app_browser.py                          # micro bundle, trained once per session
    NEUROCHAT_BROWSER_DEMO=1 pytest tests/test_app_browser.py  # the committed demo (`python app.py`)
    NEUROCHAT_SCREENSHOTS=shots/ pytest tests/test_app_browser.py   # keep the screenshots there

Needs the `playwright` Python package (its driver ships in the wheel; no browser download) and
/usr/bin/chromium (Debian's `chromium`). Waits use `domcontentloaded` and locators: `networkidle`
never fires on a Gradio page.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest

from neurochat.bench.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, browser_timings, wait_for_new_image
from neurochat.bench.server import AppServer

DEMO = os.environ.get("NEUROCHAT_BROWSER_DEMO") == "1"
STEP_TIMEOUT_MS = (180 if DEMO else 60) * 1000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    """The app on a free port: the demo (NEUROCHAT_BROWSER_DEMO=1) or the session's micro bundle."""
    weights = nsd_root = None
    if not DEMO:
        from test_app import micro_bundle_paths

        weights, nsd_root = micro_bundle_paths(request)
    folder = tmp_path_factory.mktemp("server")
    app = AppServer.start(argparse.Namespace(preset="demo", weights=weights, nsd_root=nsd_root), folder,
                          name="browser test", env={"NILEARN_DATA": str(tmp_path_factory.mktemp("nilearn"))})  # fmt: skip
    yield app.url
    app.stop()
    log_text = (folder / "app.log").read_text()
    assert "Traceback" not in log_text, f"the server logged an error:\n{log_text[-3000:]}"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("NEUROCHAT_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(browser, url):
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Now exploring").wait_for()
    return page


def _snap(page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"))


def _src(page, selector: str) -> str | None:
    image = page.locator(f"{selector} img")
    return image.first.get_attribute("src") if image.count() else None


def _watch_stream(answer, quiet_s: float = 1.5) -> list[int]:
    """The answer's lengths as it streams in, until it has not changed for `quiet_s` seconds."""
    lengths, changed = [], time.monotonic()
    deadline = changed + STEP_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        length = len(answer.inner_text())
        if not lengths or length != lengths[-1]:
            lengths.append(length)
            changed = time.monotonic()
        elif length and time.monotonic() - changed > quiet_s:
            break
        time.sleep(0.02)
    return lengths


def test_explore_a_trial_in_the_browser(server, browser, shots):
    page = _open(browser, server)
    _snap(page, shots, "01-start")
    assert page.evaluate("document.documentElement.scrollHeight") <= VIEWPORT["height"] + 4, "the page scrolls"

    # 1. Pick a subject and a trial
    page.locator("#nc-subject input").click()
    page.get_by_role("option", name="subj02", exact=True).click()
    page.get_by_text("Now exploring subj02").wait_for()
    page.locator("#nc-trial input").click()
    # the trial list's own options (the subject list may still be closing: its options name no image)
    trial = page.get_by_role("option").filter(has_text="image").nth(1)
    label = trial.inner_text()
    trial.click()
    image_id = label.split("image")[-1].strip()
    page.get_by_text(f"Now exploring subj02, image {image_id} ").wait_for()
    page.locator("#nc-chat").get_by_text("Ask about this trial").wait_for()  # the chat starts empty
    _snap(page, shots, "02-trial")

    # 2. A brief description, streamed into the chat
    page.get_by_role("button", name="Describe", exact=True).click()
    page.locator('#nc-chat [data-testid="user"]').get_by_text("Describe the image concisely.").wait_for()
    answer = page.locator('#nc-chat [data-testid="bot"]').last
    answer.wait_for()
    lengths = _watch_stream(answer)
    assert answer.inner_text().strip()
    _snap(page, shots, "03-answer")

    # 3. A reconstruction with the LLM's prompt
    assert _src(page, "#nc-final") is None
    page.get_by_role("button", name="Reconstruct", exact=True).click()
    first = wait_for_new_image(page, "#nc-final", None)
    page.get_by_text("prompt:").wait_for()
    _snap(page, shots, "04-reconstruction")

    # 4. Move β (typing in its number box fires `release` on blur): a different picture
    prior = _src(page, "#nc-prior")
    beta = page.locator("#nc-beta input[type=number]")
    beta.fill("0.5")
    beta.press("Tab")
    second = wait_for_new_image(page, "#nc-final", first)
    assert second != first and _src(page, "#nc-prior") == prior
    page.locator("#nc-shown-beta").get_by_text("β = 0.50").wait_for()
    _snap(page, shots, "05-beta")

    # 5. Locate a concept this picture shows: the 3D brain (WebGL) and a chip
    locate = page.get_by_role("button", name="Locate \"")
    concept = locate.inner_text().split('"')[1]
    locate.click()
    page.locator("#nc-brain3d .js-plotly-plot").wait_for()
    page.locator("#nc-brain3d canvas").first.wait_for()
    page.get_by_text(f'Where is "{concept}"?').wait_for()
    page.get_by_text("subj02's encoding map, not this trial's").wait_for()  # the subject's map
    chip = page.locator("#nc-concepts label", has_text=concept).first
    chip.wait_for()
    assert chip.locator("input").is_checked()
    _snap(page, shots, "06-brain")

    # 6. Untick the concept: the ablated reconstruction appears beside the original
    assert _src(page, "#nc-ablated") is None
    chip.click()
    wait_for_new_image(page, "#nc-ablated", None)
    page.locator("#nc-ablated").get_by_text(f"without {concept}").wait_for()
    assert not chip.locator("input").is_checked()
    ablation = page.locator("#nc-ablation")  # what the ablated picture was drawn from, under it
    ablation.get_by_text("voxels zeroed").wait_for()
    assert "prompt:" in ablation.inner_text() and concept in ablation.inner_text()
    _snap(page, shots, "07-ablated")

    # 7. The static glass brain, and nothing on the page reports an error
    page.get_by_role("tab", name="glass brain").click()
    wait_for_new_image(page, "#nc-glass", None)
    _snap(page, shots, "08-glass-brain")
    assert page.get_by_text("Error", exact=True).count() == 0

    # 8. The slices: a click on the picture reads out the coordinate and the value under the crosshair
    page.get_by_role("tab", name="slices").click()
    slices = wait_for_new_image(page, "#nc-slices", None)
    picture = page.locator("#nc-slices img").first
    box = picture.bounding_box()
    picture.click(position={"x": box["width"] * 0.17, "y": box["height"] * 0.45})  # inside the sagittal panel
    wait_for_new_image(page, "#nc-slices", slices)
    readout = page.locator("#nc-readout")
    readout.get_by_text("mm").wait_for()
    assert "MNI (" in readout.inner_text() and "voxel (" in readout.inner_text()
    _snap(page, shots, "09-slices")
    page.get_by_role("tab", name="3D brain").click()  # the taller view, with the ablation's line showing
    page.locator("#nc-brain3d canvas").first.wait_for()
    assert page.evaluate("document.documentElement.scrollHeight") <= VIEWPORT["height"] + 4, "the page scrolls"

    # 9. Another tab is a separate session: its own trial and an empty chat
    other = _open(browser, server)
    assert "subj01" in other.locator("#nc-status").inner_text()
    assert other.locator('#nc-chat [data-testid="bot"]').count() == 0
    assert "subj02" in page.locator("#nc-subject input").input_value()
    other.close()
    page.close()
    print(f"screenshots in {shots}; streamed answer lengths seen: {sorted(lengths)}")


def test_friendly_sentences_instead_of_tracebacks(server, browser, shots):
    page = _open(browser, server)
    page.locator("#nc-chat").get_by_text("Ask about this trial").wait_for()
    page.get_by_role("button", name="➤").click()  # an empty message
    page.locator("#nc-status").get_by_text("Type a question about this trial").wait_for()
    page.get_by_test_id("toast-body").filter(has_text="Type a question about this trial").first.wait_for()  # a toast too
    maxlength = page.locator("#nc-message textarea").get_attribute("maxlength")
    assert 0 < int(maxlength) < 2000  # what the LLM reads with room for its answer (test_app checks the number)
    page.get_by_placeholder("locate a concept").fill("unicorm")
    page.get_by_role("button", name="Locate", exact=True).click()
    page.get_by_text("is not a concept this model knows").first.wait_for()
    _snap(page, shots, "09-friendly-errors")
    assert page.get_by_text("Traceback").count() == 0 and page.get_by_text("Error", exact=True).count() == 0
    page.close()


def _assert_status_clear_of_title(page) -> None:
    title, status = page.locator("#nc-title").bounding_box(), page.locator("#nc-status").bounding_box()
    assert status["x"] >= title["x"] + title["width"], "the status covers the title"


def _reconstruct(page) -> str:
    page.get_by_role("button", name="Reconstruct", exact=True).click()
    page.locator("#nc-shown-beta").get_by_text("β = 0.90").wait_for()  # the default β's 9 of 10 steps
    return wait_for_new_image(page, "#nc-final", None)


def test_the_latest_beta_wins_and_is_shown(server, browser, shots):
    page = _open(browser, server)
    first = _reconstruct(page)
    beta = page.locator("#nc-beta input[type=number]")
    beta.fill("0.3")
    beta.press("Tab")  # the first change starts rendering ...
    beta.fill("0.7")
    beta.press("Tab")  # ... and the second, made while it runs, must be the one shown in the end
    page.locator("#nc-shown-beta").get_by_text("β = 0.70").wait_for()
    last = wait_for_new_image(page, "#nc-final", first)
    time.sleep(2)  # nothing older may arrive after it
    assert "β = 0.70" in page.locator("#nc-shown-beta").inner_text() and _src(page, "#nc-final") == last
    slider = page.locator("#nc-beta input[type=range]")
    assert slider.get_attribute("step") == "0.1"  # only the β of whole denoising steps exist
    slider.focus()
    slider.press("ArrowLeft")  # the keyboard re-renders too
    page.locator("#nc-shown-beta").get_by_text("β = 0.60").wait_for()
    assert wait_for_new_image(page, "#nc-final", last) != last
    _snap(page, shots, "10-latest-beta")
    page.close()


def test_clear_starts_a_new_conversation_and_the_chat_follows_the_answers(server, browser, shots):
    page = _open(browser, server)
    bots = page.locator('#nc-chat [data-testid="bot"]')
    for turn in range(3):  # long answers, until the chat must scroll
        page.get_by_role("button", name="Detailed", exact=True).click()
        bots.nth(turn).wait_for()
        _watch_stream(bots.nth(turn))
    scroll = "(() => { const w = document.querySelector('#nc-chat .bubble-wrap');" \
             " return [w.scrollTop + w.clientHeight, w.scrollHeight]; })()"
    seen, height = page.evaluate(scroll)
    assert seen >= height - 4, "the chat does not show its newest answer"
    page.locator("#nc-chat").get_by_role("button", name="Clear").click()
    page.get_by_text("The conversation was cleared").wait_for()
    page.get_by_role("button", name="Describe", exact=True).click()
    _watch_stream(bots.first)
    assert bots.count() == 1
    with page.expect_download() as download:
        page.get_by_role("button", name="⤓ chat JSON").click()
    conversation = json.loads(Path(download.value.path()).read_text())
    assert len(conversation["conversation"]) == 2 and len(conversation["sent_to_model"]) == 2  # the model forgot too
    _snap(page, shots, "11-cleared")
    page.close()


def test_help_shows_in_the_page(server, browser, shots):
    page = _open(browser, server)
    page.get_by_role("button", name="? help").click()
    help_panel = page.locator("#nc-help")
    help_panel.get_by_text("How to use.").wait_for()
    _assert_status_clear_of_title(page)
    _snap(page, shots, "12-help")
    help_panel.get_by_role("button", name="close").click()
    help_panel.wait_for(state="hidden")
    page.close()


def test_a_shared_link_reopens_the_view_and_a_bad_one_is_refused(server, browser, shots):
    page = _open(browser, server)
    page.locator("#nc-trial input").click()
    trial = page.get_by_role("option").filter(has_text="image").nth(2)
    image_id = trial.inner_text().split("image")[-1].strip()
    trial.click()
    page.get_by_text(f"Now exploring subj01, image {image_id} ").wait_for()
    beta = page.locator("#nc-beta input[type=number]")
    beta.fill("0.5")
    beta.press("Tab")
    page.get_by_role("button", name="↗ share").click()
    page.wait_for_function("() => document.querySelector('#nc-share-link textarea').value.includes('beta=0.5')")
    link = page.locator("#nc-share-link textarea").input_value()
    assert link.startswith(server + "?") and f"trial={image_id}&" in link  # the page's own address, from the browser
    _snap(page, shots, "15-share")
    page.close()

    shared = _open(browser, link + "&remove=dog")  # with a concept removed, as an unticked chip
    shared.get_by_text(f"Now exploring subj01, image {image_id} ").wait_for()
    assert shared.locator("#nc-trial input").input_value().endswith(f"image {image_id}")
    assert shared.locator("#nc-beta input[type=number]").input_value() == "0.5"
    wait_for_new_image(shared, "#nc-ablated", None)
    shared.locator("#nc-ablated").get_by_text("without dog").wait_for()
    assert not shared.locator("#nc-concepts label", has_text="dog").first.locator("input").is_checked()
    _snap(shared, shots, "16-shared")
    shared.close()

    bad = browser.new_page(viewport=VIEWPORT)
    bad.set_default_timeout(STEP_TIMEOUT_MS)
    bad.goto(server + "?trial=abc", wait_until="domcontentloaded")
    bad.locator("#nc-status").get_by_text("The link's trial 'abc' is not an NSD image number").wait_for()
    assert bad.locator("#nc-subject input").input_value() == "subj01"  # the first trial opened all the same
    _snap(bad, shots, "17-bad-link")
    bad.close()


@pytest.fixture(scope="module")
def native_shape(request) -> tuple[int, int, int]:
    """subj01's grid in the data the server explores (uploads on it are read like its own trials)."""
    from neurochat.nsd import NSDDataset
    from neurochat.paths import ensure_simnsd

    if DEMO:
        return NSDDataset(ensure_simnsd("demo")).native_shape("subj01")
    from test_app import micro_bundle_paths

    return NSDDataset(micro_bundle_paths(request)[1]).native_shape("subj01")


def test_uploads_an_empty_volume_is_refused_and_a_4d_file_gets_a_volume_picker(server, browser, shots, native_shape,
                                                                               tmp_path):  # fmt: skip
    import nibabel as nib
    import numpy as np

    zeros, run = tmp_path / "zeros.nii.gz", tmp_path / "run.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(native_shape, np.float32), np.eye(4)), zeros)
    volumes = np.random.default_rng(0).normal(size=(*native_shape, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(volumes, np.eye(4)), run)
    page = _open(browser, server)
    upload = page.locator("input[type=file]")
    upload.set_input_files(str(zeros))
    page.get_by_text("zeros.nii.gz holds the same value (0)").first.wait_for()  # a warning, no answer
    assert page.locator("#nc-subject input").input_value() == "subj01"  # the tab still explores its trial
    _assert_status_clear_of_title(page)  # a long sentence wraps beside the title
    _snap(page, shots, "13-empty-upload")

    upload.set_input_files(str(run))
    page.get_by_text("Volume 0 of the file's 3").wait_for()
    assert page.locator("#nc-subject input").input_value() == ""  # no dataset trial is shown any more
    volume = page.locator("#nc-volume input")
    volume.fill("2")
    volume.press("Tab")
    page.get_by_text("Volume 2 of the file's 3").wait_for()
    page.get_by_text("run.nii.gz[2]").first.wait_for()
    _snap(page, shots, "14-4d-upload")
    page.close()


def test_the_app_benchmark_times_a_beta_change_and_an_ablation_in_the_browser(server, browser):
    """`python -m neurochat.bench app --browser` drives the page this way (its numbers are printed, not asserted)."""
    seconds = browser_timings(server, betas=[0.6, 0.8], concepts=["dog", "cat"], browser=browser)
    assert len(seconds["beta_s"]) == 2 and len(seconds["ablate_s"]) == 2
    assert all(0 < s < STEP_TIMEOUT_MS / 1000 for s in seconds["beta_s"] + seconds["ablate_s"])
