"""Ray fixtures shared by the Ray tests: Ray is optional, so these tests skip without it, unless
``STG_REQUIRE_RAY=1`` (set in CI) makes a missing Ray a failure."""

import os
import signal
import threading
from pathlib import Path

import pytest


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("STG_REQUIRE_RAY") == "1":
            pytest.fail("Ray is not installed but STG_REQUIRE_RAY=1: pip install -r requirements-ray.txt")
        pytest.skip("Ray is not installed (pip install -r requirements-ray.txt)")


def killed_once(fn, marker: str, shared, **params):
    """Run unit ``fn``; the first call of all (``marker`` does not exist yet) has its worker
    process SIGKILLed a moment after it starts, mid-training, after writing ``marker.killed``."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return fn(shared, **params)
    os.close(fd)

    def kill() -> None:
        Path(marker + ".killed").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Timer(0.3, kill).start()
    return fn(shared, **params)
