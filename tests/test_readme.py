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


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_links_point_to_files_that_exist():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _readme())
    assert links, "the README links its docs"
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert missing == []


def test_docs_links_point_to_files_that_exist():
    missing = []
    for doc in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in link and not (doc.parent / link).exists():
                missing.append(f"{doc.name}: {link}")
    assert missing == []


def test_readme_benchmark_rows_are_copies_of_the_docs():
    """Each figure lives in one file: a row of the README's headline tables must be, verbatim, a
    row of docs/benchmarks.md, of the docs page its paragraph links, or of bench/README.md."""
    section = _readme().split("## Benchmarks", 1)[1]
    pages = [*(ROOT / "docs").glob("*.md"), ROOT / "bench" / "README.md"]
    docs = "\n".join(p.read_text() for p in pages).splitlines()
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    figures = [row for row in rows if re.search(r"\d", row)]
    assert len(figures) >= 10, "the README shows a headline table per benchmark"
    assert [row for row in figures if row not in docs] == []


def test_readme_library_snippet_runs(tmp_path, monkeypatch, capsys):
    """The README's first Python block, as printed, on digits (its store goes to a temporary folder)."""
    snippet = re.findall(r"```python\n(.+?)\n```", _readme(), re.S)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    clusterer, vectors = namespace["clusterer"], namespace["vectors"]
    assert clusterer.memberships_.shape == (len(vectors), 4)
    assert namespace["grouping"].memberships.shape == (len(vectors), 3)
    assert (tmp_path / "cache" / "runs" / namespace["run_id"]).is_dir()
