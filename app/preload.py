"""The pages' libraries, imported as the server starts instead of in the first visitor's page.

On a fresh server the first run of a page imports what it needs: scikit-learn, SciPy and pandas
for Clustering, torch for Experiment, Evaluation and Methods. ``app/main.py`` runs
:func:`preload_pages` in a background thread as the server starts. A page run has the
interpreter to itself: between two modules the preload waits while one is in progress, so a
visitor who comes before it has finished waits, beyond what the page itself imports, only for
the module being imported at that moment (Python's import locks share a module both threads need).
"""

from __future__ import annotations

import ast
import importlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from app.state import APP_SCRIPT, PAGE_FILES

#: How the server's log line that says the preload has finished begins.
PRELOADED = "STG-MTL Studio: the pages' modules are loaded"
#: Streamlit's name for the thread of a script run (a page being drawn).
SCRIPT_THREAD = "ScriptRunner.scriptThread"


def page_imports(scripts: Iterable[str | Path]) -> list[str]:
    """The modules that ``scripts`` import at their top level, in the scripts' order, each once
    (``from __future__`` and relative imports left out)."""
    modules: dict[str, None] = {}
    for script in scripts:
        for node in ast.parse(Path(script).read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
                names = [node.module] if node.module else []
            else:
                continue
            modules.update(dict.fromkeys(names))
    return list(modules)


def page_running() -> bool:
    """Whether a script run (a page being drawn for a visitor) is in progress in this process."""
    return any(thread.name == SCRIPT_THREAD for thread in threading.enumerate())


def preload(modules: Sequence[str], busy: Callable[[], bool] = page_running,
            poll: float = 0.05) -> tuple[list[str], float]:
    """Import ``modules`` in order, waiting before each while ``busy()``: ``(the modules that
    failed to import, seconds taken)``. A failure is left for the page that needs the module to
    report."""
    start = time.perf_counter()
    failed = []
    for name in modules:
        while busy():
            time.sleep(poll)
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - any import error is the page's to show, with its own message
            failed.append(name)
    return failed, time.perf_counter() - start


def preload_pages() -> None:
    """Import what the app's script and its pages import; print one line when done."""
    modules = page_imports([APP_SCRIPT, *PAGE_FILES.values()])
    failed, seconds = preload(modules)
    note = f"; not importable: {', '.join(failed)}" if failed else ""
    print(f"{PRELOADED} ({len(modules) - len(failed)} in {seconds:.1f} s){note}", flush=True)
