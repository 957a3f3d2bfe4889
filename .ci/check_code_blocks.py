"""Fail if a code block of the built docs scrolls sideways in a 1280 px browser.

    python .ci/check_code_blocks.py docs/_build/html getting_started tutorial \
        [--screenshots DIR]

Each page is opened in headless Chromium at 1280x900 with a small script
appended that measures every ``<pre>`` (``scrollWidth > clientWidth`` means
a horizontal scroll bar) and writes the result into the page; Chromium's
``--dump-dom`` hands it back.  The copies with the script are deleted again.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH, HEIGHT = 1280, 900
PROBE = """
<script>
(function () {
  var blocks = Array.prototype.slice.call(document.querySelectorAll("pre"));
  var wide = blocks
    .filter(function (b) { return b.scrollWidth > b.clientWidth; })
    .map(function (b) {
      return {line: b.textContent.split("\\n")[0].slice(0, 72),
              scroll: b.scrollWidth, client: b.clientWidth};
    });
  var out = document.createElement("div");
  out.id = "code-block-probe";
  out.hidden = true;
  out.textContent = JSON.stringify(
    {viewport: window.innerWidth, blocks: blocks.length, wide: wide});
  document.body.appendChild(out);
})();
</script>
"""
RESULT = re.compile(r'<div id="code-block-probe" hidden="">(.*?)</div>', re.S)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check_code_blocks: no chromium on PATH (apt-get install chromium)")


def run_chromium(profile: str, *args: str) -> str:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        sys.exit(f"check_code_blocks: chromium failed:\n{result.stderr[-2000:]}")
    return result.stdout


def measure(page: Path, profile: str) -> dict:
    probe = page.with_name(f"_probe_{page.name}")  # same folder: same relative links
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = run_chromium(profile, "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = RESULT.search(dom)
    if not found:
        sys.exit(f"check_code_blocks: no measurement came back for {page.name}")
    return json.loads(html.unescape(found.group(1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path)
    parser.add_argument("pages", nargs="+", help="page names, without .html")
    parser.add_argument("--screenshots", type=Path, help="save a PNG of each page")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        for name in args.pages:
            page = (args.html_dir / f"{name}.html").resolve()
            result = measure(page, profile)
            if result["viewport"] != WIDTH:
                sys.exit(f"check_code_blocks: viewport {result['viewport']} px")
            print(
                f"{name}: {result['blocks']} code blocks at {WIDTH} px, "
                f"{len(result['wide'])} scroll sideways"
            )
            for block in result["wide"]:
                failed = True
                print(f"  {block['scroll']} > {block['client']} px: {block['line']!r}")
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                png = (args.screenshots / f"{name}.png").resolve()
                run_chromium(profile, f"--screenshot={png}", page.as_uri())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
