"""The app as a subprocess for the benchmarks that drive it from outside (`soak`, `app --browser`).

`python app.py --port P --device cpu` on a free port, with its temp files (Gradio's cache, the app's
downloads) in a folder of its own, so that a benchmark can measure them and remove them after.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 900  # the demo generates its SimNSD data on a fresh clone (about a minute) before serving


class AppServer:
    """`python app.py` on a free port, with its temp files (Gradio's cache, downloads) in a folder of its own."""

    def __init__(self, process: subprocess.Popen, url: str, folder: Path):
        self.process, self.url, self.folder = process, url, folder

    @classmethod
    def start(cls, args, folder: Path, name: str = "bench", env: dict[str, str] | None = None) -> "AppServer":
        """Start the app of `args.preset`, `args.weights`, `args.nsd_root` (and `args.threads` where set), with
        `env` added to its environment, and wait until it serves its page; its output goes to `folder`/app.log."""
        from neurochat.errors import ConfigError
        from neurochat.paths import REPO_ROOT

        tmp = folder / "tmp"
        tmp.mkdir(parents=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "app.py", "--port", str(port), "--device", "cpu", "--preset", args.preset]
        for option, value in (("--weights", args.weights), ("--nsd-root", args.nsd_root),
                              ("--threads", getattr(args, "threads", None))):
            if value:
                command += [option, str(value)]
        env = dict(os.environ, TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", **(env or {}))  # fmt: skip
        log_path = folder / "app.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = cls(process, f"http://127.0.0.1:{port}/", tmp)
        print(f"{name}: started `{' '.join(command[1:])}` (pid {process.pid}), waiting for {server.url}", flush=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise ConfigError(f"the app exited with code {process.returncode} before serving; its log ends:\n"
                                  f"{log_path.read_text()[-2000:]}")  # fmt: skip
            if _serves_page(port):
                return server
            if time.monotonic() > deadline:
                server.stop()
                raise ConfigError(f"the app did not serve {server.url} within {START_TIMEOUT_S} s; its log ends:\n"
                                  f"{log_path.read_text()[-2000:]}")  # fmt: skip
            time.sleep(0.5)

    def disk(self) -> tuple[float, int, dict[str, float]]:
        """(MB, file count) of the server's temp folder, and MB per folder in it: `gradio` (Gradio's cache of
        uploads and outputs) and `neurochat` (the app's downloads, `viz.download_dir`, named neurochat-<random>)."""
        files = [path for path in self.folder.rglob("*") if path.is_file()]
        folders: dict[str, float] = {}
        for path in files:
            name = path.relative_to(self.folder).parts[0].split("-")[0]
            folders[name] = folders.get(name, 0.0) + path.stat().st_size / 2**20
        total = round(sum(path.stat().st_size for path in files) / 2**20, 1)
        return total, len(files), {name: round(mb, 1) for name, mb in sorted(folders.items())}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _serves_page(port: int) -> bool:
    """Whether the app on this machine's `port` answers a GET of its page (a local check, nothing fetched from outside)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()
