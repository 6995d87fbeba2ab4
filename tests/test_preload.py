"""The server imports the pages' libraries as it starts (app/preload.py, app/main.py)."""

import subprocess
import sys
import threading
from pathlib import Path

from app.preload import PRELOADED, SCRIPT_THREAD, page_imports, page_running, preload
from app.state import APP_SCRIPT, PAGE_FILES

ROOT = Path(__file__).resolve().parents[1]


def test_page_imports_lists_top_level_imports_in_order_each_once(tmp_path):
    first = tmp_path / "first.py"
    first.write_text("from __future__ import annotations\nimport json, os.path\nfrom numpy import linalg\n"
                     "from . import sibling\n\ndef later():\n    import csv\n")
    second = tmp_path / "second.py"
    second.write_text("import json\nimport numpy as np\nfrom collections.abc import Sequence\n")
    assert page_imports([first, second]) == ["json", "os.path", "numpy", "collections.abc"]


def test_the_app_preloads_what_its_pages_import():
    modules = page_imports([APP_SCRIPT, *PAGE_FILES.values()])
    assert modules.index("app.state") < modules.index("app.charts")  # the script's own imports come first
    for needed in ("stg_core.clustering", "stg_core.run_vectors", "app.cluster_charts", "app.training_charts",
                   "stg_core.training", "pandas"):
        assert needed in modules


def test_preload_reports_what_failed_and_goes_on():
    failed, seconds = preload(["json", "stg_no_such_module", "csv"])
    assert failed == ["stg_no_such_module"] and seconds >= 0
    assert "csv" in sys.modules


def test_preload_waits_between_modules_while_a_page_runs():
    answers = iter([True, True, False, False])
    asked = []

    def busy():
        asked.append(1)
        return next(answers)

    failed, _ = preload(["json", "csv"], busy=busy, poll=0)
    assert failed == [] and len(asked) == 4  # twice busy, then free before each module


def test_page_running_sees_a_script_thread():
    assert not page_running()
    release = threading.Event()
    run = threading.Thread(target=release.wait, name=SCRIPT_THREAD)
    run.start()
    try:
        assert page_running()
    finally:
        release.set()
        run.join()
    assert not page_running()


def test_preload_pages_imports_the_heavy_libraries_in_a_fresh_interpreter():
    code = ("import sys\nfrom app.preload import preload_pages\npreload_pages()\n"
            "print(sorted(m for m in ('sklearn', 'scipy', 'pandas', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded, listed = done.stdout.strip().splitlines()
    assert loaded.startswith(PRELOADED) and "not importable" not in loaded
    assert listed == "['pandas', 'scipy', 'sklearn', 'torch']"
