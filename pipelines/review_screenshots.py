"""The README's screenshots of the review page and the archive index (docs/review-*.png).

Captions the demo clip (Big Buck Bunny, (c) Blender Foundation, CC-BY 3.0; see
pipelines/demo.py) and two pieces cut from it with the shipped model through the real
CLI (``batch -f all``, beside a broken file, so the index shows a failure too), opens
the pages in headless Chromium (Debian's ``chromium`` and ``chromium-driver``) and saves
two PNGs. Only CC-BY footage goes into the repository's images.

    python -m pipelines.review_screenshots [--out docs]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from .common import CACHE, out_folder
from .demo import sample_video

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1")


def cut(src: Path, dst: Path, start: float, end: float) -> None:
    """Frames [start, end) s of ``src`` as an H.264-free VP8 WebM (OpenCV writes it; Chromium plays it)."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"VP80"), fps, size)
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if start <= index / fps < end:
            out.write(frame)
        index += 1
    out.release()
    cap.release()


def browser(width: int, height: int, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def save(driver, path: Path) -> None:
    """A PNG of the window, reduced to 256 colours (a fraction of the size, no visible loss on a UI)."""
    from PIL import Image

    raw = path.with_suffix(".raw.png")
    driver.save_screenshot(str(raw))
    Image.open(raw).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    raw.unlink()
    print(f"{path}  ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=out_folder, default=Path("docs"))
    args = parser.parse_args()
    clip = sample_video()
    work = CACHE / "review-shots"
    shutil.rmtree(work, ignore_errors=True)
    films = work / "films"
    films.mkdir(parents=True)
    shutil.copy(clip, films / "bigbuckbunny.mp4")
    cut(clip, films / "pieces" / "opening.webm", 0.0, 2.6)
    cut(clip, films / "pieces" / "meadow.webm", 2.6, 5.4)
    (films / "pieces" / "damaged.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(4000))
    out = work / "review"
    cmd = [sys.executable, "-m", "captioner.cli", "batch", str(films), "-o", str(out), "-f", "all",
           "--max-segment", "1.5", "--fps", "2"]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd)
    args.out.mkdir(parents=True, exist_ok=True)

    profile = tempfile.TemporaryDirectory(prefix="captioner-shots-")  # 2.7 MB a run was left in /tmp
    driver = browser(1200, 740, profile.name)
    try:
        driver.get((out / "bigbuckbunny.html").as_uri())
        time.sleep(1.0)
        rows = driver.find_elements("css selector", "li.cue")
        target = rows[min(1, len(rows) - 1)]
        target.find_element("css selector", ".time").click()  # seek: the row is highlighted, the frame shown
        time.sleep(1.0)
        save(driver, args.out / "review-page.png")
        driver.set_window_size(1200, 520)
        driver.get((out / "index.html").as_uri())
        time.sleep(0.5)
        driver.find_element("id", "filter").send_keys("dog")
        time.sleep(0.3)
        save(driver, args.out / "review-index.png")
    finally:
        driver.quit()
        profile.cleanup()


if __name__ == "__main__":
    main()
