"""The README's Python example is this directory's readme_example.py, and it runs."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
README = HERE.parent.parent / "README.md"


def readme_python_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)
    assert len(section) == 2, "README.md has a '## Python' section"
    blocks = re.findall(r"```python\n(.*?)```", section[1], flags=re.S)
    assert blocks, "the Python section has a ```python block"
    return str(blocks[0])


def test_readme_example_is_the_tested_file() -> None:
    assert readme_python_block() == (HERE / "readme_example.py").read_text(encoding="utf-8")


def test_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(HERE / "readme_example.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "'registered'" in out and "'assigned_to_job'" in out


def test_the_pypi_page_example_runs(tmp_path: Path) -> None:
    """python/README.md (the PyPI page) has one example; it must run as printed, and it must
    link nowhere relative (PyPI cannot follow a relative link)."""
    page = (HERE.parent.parent / "python" / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 1
    example = tmp_path / "pypi_example.py"
    example.write_text(blocks[0], encoding="utf-8")
    runpy.run_path(str(example), run_name="__main__")
    links = re.findall(r"\]\(([^)]+)\)", page)
    assert all(link.startswith("https://") for link in links), links
