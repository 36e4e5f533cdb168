"""The parity reference's three states: present, absent (pinned numbers), and present but broken (a
build against another numpy reused from pip's cache), which must fail loudly with the rebuild command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _status(pythonpath: Path | None, hide: bool) -> subprocess.CompletedProcess:
    code = ("import sys\n"
            + ("import importlib.abc\nclass Hide(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path, target=None):\n"
               "        if name.split('.')[0] == 'xtcocotools': raise ModuleNotFoundError(name=name)\n"
               "sys.meta_path.insert(0, Hide())\n" if hide else "")
            + "from wholebody.evaluation.reference import main\nsys.exit(main())\n")
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_absent_reference_is_not_an_error():
    proc = _status(None, hide=True)
    assert proc.returncode == 0 and "not installed" in proc.stdout and "pinned" in proc.stdout


def test_broken_reference_names_the_rebuild(tmp_path):
    fake = tmp_path / "site" / "xtcocotools"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "coco.py").write_text("raise ValueError('numpy.dtype size changed, may indicate binary incompatibility. "
                                  "Expected 96 from C header, got 88 from PyObject')\n")
    proc = _status(tmp_path / "site", hide=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = proc.stdout.strip()
    assert "installed but does not import" in line and "numpy.dtype size changed" in line
    assert "--no-cache-dir" in line and "--no-binary xtcocotools" in line and "\n" not in line


def test_need_reference_fails_on_a_broken_install():
    """The parity tests' guard: absent -> skip, broken -> a failure (never a silent skip)."""
    import conftest
    from wholebody.evaluation import reference

    orig = reference.reference_status
    try:
        reference.reference_status = lambda: ("broken", "xtcocotools is installed but does not import (x)")
        with pytest.raises(pytest.fail.Exception, match="does not import"):
            conftest.need_reference()
        reference.reference_status = lambda: ("absent", "xtcocotools is not installed")
        with pytest.raises(pytest.skip.Exception):
            conftest.need_reference()
    finally:
        reference.reference_status = orig
