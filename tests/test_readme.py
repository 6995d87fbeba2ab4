"""The README's two commands are the product's front door; CI must run the same test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_opens_with_the_app_and_test_commands():
    app, tests = _readme_commands()
    assert app == "pip install -r requirements.txt && streamlit run app/main.py"
    assert tests.startswith("pip install -r requirements-dev.txt") and "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-2:] == [_readme_commands()[1], "python -m pytest -m slow"]  # then the slow set
    assert "set -euo pipefail" in ci  # a failing (or empty: pytest exits 5) test run fails CI
