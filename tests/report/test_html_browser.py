"""The review page in a real headless Chromium: the NiiVue viewers draw, the sliders act, no errors.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages
ending in NUL on fds 3 and 4), so no Python package beyond the standard library is needed and
one browser launch gives the console messages, the page's own status attributes and a
screenshot. The page is opened from disk (``file://``) with networking left to the page's
Content-Security-Policy, which forbids any fetch: a page that tried one would log an error.
Skipped only where no ``chromium`` is installed (``.ci/run`` installs Debian's).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe"]


class DevTools:
    """A minimal Chrome DevTools protocol client over the pipe (flattened sessions)."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        script = f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, "bash", CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._next_id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            os.close(fd)


def _scan_and_map(folder: Path, name: str, affine: np.ndarray, blob_mm) -> tuple[Path, Path]:
    """A 'head' ellipsoid and a Gaussian saliency blob at a world position, on one grid."""
    shape = (40, 48, 40)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    centre, radii = (np.array(shape) - 1) / 2, np.array(shape) * 0.42
    head = (((ijk - centre) / radii) ** 2).sum(-1) < 1
    image = np.where(head, 80.0 + 40.0 * np.cos(ijk[..., 0] / 3.0) ** 2, 0.0).astype(np.float32)
    blob = np.exp(-((xyz - np.asarray(blob_mm)) ** 2).sum(-1) / (2 * 10.0 ** 2)).astype(np.float32)
    scan, saliency = folder / f"{name}_T1w.nii.gz", folder / "maps" / f"{name}_saliency.nii.gz"
    saliency.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), str(scan))
    nib.save(nib.Nifti1Image(blob, affine), str(saliency))
    return scan, saliency


def _page(tmp_path: Path) -> Path:
    from neuro_ssl.data.io import load_volume
    from neuro_ssl.report.html import write_review_page
    from neuro_ssl.report.montage import write_montage

    las = np.diag([-4.0, 4.0, 4.0, 1.0])
    las[:3, 3] = (78.0, -94.0, -60.0)
    ras = np.diag([3.5, 3.5, 4.0, 1.0])
    ras[:3, 3] = (-70.0, -84.0, -80.0)
    rows = []
    for name, affine, blob in (("sub-01", las, (-30.0, -10.0, 0.0)), ("sub-02", ras, (25.0, 10.0, -5.0))):
        scan, saliency = _scan_and_map(tmp_path, name, affine, blob)
        (image, _), (blob_map, _) = load_volume(scan), load_volume(saliency)
        montage = write_montage(image, blob_map, affine, tmp_path / "montages" / f"{name}.png", title=name)
        rows.append({"subject_id": name, "session_id": "bl", "image": str(scan), "saliency": str(saliency),
                     "predicted": "AD", "confidence": 0.8, "coverage_pct": 5.0, "peak_x_mm": blob[0],
                     "peak_y_mm": blob[1], "peak_z_mm": blob[2], "montage": str(montage),
                     "true_label": "CN" if name == "sub-01" else "AD", "correct": name != "sub-01"})
    checks = {"n_scans": 2, "method": "gradcam", "layer": "encoder.net.layer3", "seed": 0,
              "randomization": [{"stage": "head", "spearman": 0.5, "ssim": 0.4, "constant_maps": 0},
                                {"stage": "stem", "spearman": 0.05, "ssim": 0.1, "constant_maps": 0}],
              "deletion": {"5": {"salient_drop": 0.1, "random_drop": 0.01}},
              "readings": {"randomization": "Randomization reading.", "deletion": "Deletion reading."}}
    return write_review_page(tmp_path, rows, load_volume, notes=["browser test page"], checks=checks)


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(json.dumps(params.get("exceptionDetails", {}))[:300])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", ""))
    return errors


def test_review_page_draws_viewers_without_errors(tmp_path):
    page = _page(tmp_path)
    size_mb = page.stat().st_size / 1e6
    assert size_mb < 4.0, f"page is {size_mb:.1f} MB"
    browser = DevTools(tmp_path / "profile")
    try:
        target = next(t for t in browser.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        session = browser.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            browser.send(domain, session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1400, "height": 1800, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri() + "#selftest"}, session=session)
        status, deadline = None, time.monotonic() + 60
        while status not in ("ready", "partial") and time.monotonic() < deadline:
            time.sleep(0.25)
            status = browser.send("Runtime.evaluate", {"expression": "document.body && document.body.dataset.status",
                                                       "returnByValue": True}, session=session)["result"].get("value")
        probe = ("JSON.stringify({body: Object.assign({}, document.body.dataset), viewers: "
                 "Array.from(document.querySelectorAll('.viewer')).map(v => Object.assign({}, v.dataset)), "
                 "checks: [document.getElementById('checks').getBoundingClientRect().height, "
                 "document.getElementById('checks').innerText], "
                 "wrong: getComputedStyle(document.querySelector('tr.wrong td')).backgroundColor})")
        state = json.loads(browser.send("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                                        session=session)["result"]["value"])
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        (tmp_path / "screenshot.png").write_bytes(base64.b64decode(shot))
        events = list(browser.events)
    finally:
        browser.close()

    assert status == "ready", f"page status {status!r}: {state}"
    assert _console_errors(events) == [] and json.loads(state["body"]["errors"]) == []
    assert len(state["viewers"]) == 2
    for viewer in state["viewers"]:
        lit, hot = int(viewer["lit"]), int(viewer["hot"])
        assert viewer["status"] == "drawn" and lit > 20_000, viewer  # the scan is drawn
        assert hot > 100, viewer  # the red-yellow overlay is visible
        assert int(viewer["hotOpacity0"]) == 0, viewer  # opacity slider hides it
        assert int(viewer["hotThreshold99"]) < hot / 4, viewer  # threshold slider trims it
        assert int(viewer["hotRestored"]) == hot, viewer
    assert (tmp_path / "screenshot.png").stat().st_size > 50_000
    height, text = state["checks"]
    assert height > 100 and "Randomization reading." in text and "Deletion reading." in text, state["checks"]
    assert state["wrong"] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), state["wrong"]  # wrong rows are tinted
