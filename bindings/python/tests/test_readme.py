"""Every Python snippet of the package's README, run verbatim in a fresh interpreter against a
local edge serving the repository's examples/catalog.json (ENTITLE_EDGE), from bindings/python:
each exits cleanly, and prints what its comments say."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

from conftest import REPO, Edge

PACKAGE = Path(__file__).resolve().parents[1]
README = PACKAGE / "README.md"


def snippets() -> List[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def edge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    e = Edge(tmp_path_factory.mktemp("readme-edge"))
    e.publish(json.loads((REPO / "examples" / "catalog.json").read_text()))
    e.start()
    try:
        yield e.url
    finally:
        e.stop()


def expected_output(code: str) -> List[str]:
    """The `# value` comment of each print(...) line: the first word, or the whole dict."""
    out = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("print("):
            continue
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        if not comment and i + 1 < len(lines) and lines[i + 1].startswith("# "):
            comment = lines[i + 1][2:]
        if comment:
            out.append(comment if comment.startswith("{") else comment.split(":")[0].split()[0])
    return out


@pytest.mark.parametrize("index", range(len(snippets())))
def test_readme_snippet(index: int, edge_url: str) -> None:
    code = snippets()[index]
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "ENTITLE_EDGE": edge_url})
    assert out.returncode == 0, f"snippet {index}:\n{code}\n--- stderr:\n{out.stderr}"
    printed = [line for line in out.stdout.splitlines()
               if not line.startswith("entitlements changed") and "version_changed" not in line]
    wanted = expected_output(code)
    assert printed[:len(wanted)] == wanted, f"snippet {index}:\n{code}\n--- stdout:\n{out.stdout}"


def test_the_readme_has_its_snippets() -> None:
    assert len(snippets()) >= 5
