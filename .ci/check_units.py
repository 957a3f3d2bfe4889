"""Check the systemd units that docs/edge.rst shows with ``systemd-analyze verify``.

The units are taken from the page itself (each ``.. code-block:: ini`` whose
first line is ``# /etc/systemd/system/NAME``), so the page and this check
cannot drift.  The page's install prefix ``/opt/agg`` is replaced by the venv
given with ``--venv``, so ``ExecStart`` points at a real installed command.

Usage: python .ci/check_units.py docs/edge.rst --venv .ci-venv-wheel

Exit status 0 when every unit verifies, or when ``systemd-analyze`` cannot run
here (missing, or no systemd to talk to in a container: a line says so); 1
when a unit has a problem systemd reports.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PREFIX = "/opt/agg"
HEADER = re.compile(r"#\s*/etc/systemd/system/(?P<name>[\w@.-]+\.service)\s*$")


def units(page: str) -> dict[str, str]:
    """Return ``{file name: unit text}`` for every ini block that names its file."""
    found: dict[str, str] = {}
    lines = page.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != ".. code-block:: ini":
            continue
        body: list[str] = []
        for text in lines[i + 1 :]:
            if text and not text.startswith(" "):
                break
            body.append(text)
        block = "\n".join(body).strip("\n")
        indent = min(len(t) - len(t.lstrip()) for t in body if t.strip())
        block = "\n".join(t[indent:] for t in block.splitlines()) + "\n"
        match = HEADER.match(block.splitlines()[0])
        if match:
            found[match["name"]] = block
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--venv", type=Path, required=True)
    args = parser.parse_args()
    found = units(args.page.read_text(encoding="utf-8"))
    if len(found) < 2:
        print(f"error: expected two units in {args.page}, found {sorted(found)}")
        return 1
    venv = args.venv.resolve()
    tool = shutil.which("systemd-analyze")
    if tool is None:
        print("skipped: systemd-analyze is not installed (apt-get install systemd)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, text in found.items():
            text = text.replace(PREFIX + "/", f"{venv}/")
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        # --man=no: the units name no man pages worth fetching.
        run = subprocess.run(
            [tool, "verify", "--man=no", *paths],
            capture_output=True,
            text=True,
            timeout=120,
        )
    report = (run.stdout + run.stderr).strip()
    # verify exits 0 after some warnings about the units themselves (an
    # unknown key is "ignoring"): any line about our files is a failure.
    mentioned = tmp in report or any(name in report for name in found)
    if run.returncode == 0 and not mentioned:
        print(f"systemd-analyze verify: {', '.join(sorted(found))}: ok")
        if report:
            print(report)
        return 0
    # Without a running systemd (most containers) verify cannot even load a
    # unit; that is this machine's limit, not the units' problem.
    cannot_run = (
        "Failed to initialize manager",
        "Failed to setup working directory",
        "Failed to allocate manager",
        "System has not been booted with systemd",
    )
    if any(text in report for text in cannot_run):
        print(f"skipped: systemd-analyze cannot run here:\n{report}")
        return 0
    print(f"error: systemd-analyze verify reports problems:\n{report}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
