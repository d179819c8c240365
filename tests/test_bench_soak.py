"""The soak benchmark end to end: it starts `python app.py` on the micro bundle of `test_app.py` (or
$NEUROCHAT_MICRO_BUNDLE) and drives it with two users for a few seconds."""

from __future__ import annotations

import json

import pytest

from test_app import micro_bundle  # noqa: F401 — the fixture this module shares

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]
pytest.importorskip("gradio_client", reason="gradio_client ships with gradio")


def test_two_users_soak_the_app_without_errors(micro_bundle, tmp_path, capsys):  # noqa: F811
    from neurochat.bench.__main__ import main

    weights, nsd_root = micro_bundle
    out = tmp_path / "soak.json"
    argv = ["soak", "--users", "2", "--minutes", "0.1", "--think", "0.2", "--weights", str(weights), "--nsd-root", str(nsd_root),
            "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    numbers = json.loads(out.read_text())
    assert {"requests", "errors", "first_errors", "p50_s", "p95_s", "rss_mb_start", "rss_mb_end",
            "rss_growth"} <= set(numbers)  # fmt: skip
    assert numbers["errors"] == 0, numbers["first_errors"]
    assert numbers["requests"] > 0 and numbers["p95_s"]  # at least one request timed after warm-up
    assert numbers["rss_mb_start"] > 0 and numbers["rss_mb_end"] > 0  # the server it started, read from /proc
    assert "rss_growth" in capsys.readouterr().out
