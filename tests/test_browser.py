"""The app in a real browser: ``streamlit run app/main.py`` driven by headless Chromium.

One test walks the offline digits preset through the UI the way a person would: Experiment
(preset, epochs, subset, Launch), Training (wait for the run to complete), Clustering (move k
with the keyboard, the membership heatmap changes), Evaluation. A screenshot per step goes to
``test-artifacts/browser/`` and any exception box Streamlit draws fails the test.

Needs the ``playwright`` package and a Chromium executable (Debian's ``chromium``; another one
through env ``STG_CHROMIUM``); Playwright's own browser download is not used. Without them the
test is skipped with the reason, except in CI (env ``CI`` or ``STG_REQUIRE_BROWSER`` set), where
it fails instead: CI installs both (``.ci/run``).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.preload import PRELOADED
from stg_core.demo import DEMOS
from tests.app_server import chromium, headless_browser, serve_app
from tests.echarts_options import MEMBERSHIP_SPEC_JS

pytestmark = pytest.mark.slow  # a real browser over a served app, trainings included: minutes

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
REQUIRED = any(os.environ.get(v, "").lower() not in ("", "0", "false") for v in ("CI", "STG_REQUIRE_BROWSER"))
EPOCHS, SUBSET = 3, 300
TRAINING_TIMEOUT_MS = 180_000
STEP_TIMEOUT_MS = 60_000
# The README's picture of the Clustering page: taken on every run of the demo test, written over
# docs/clustering.png only when env STG_UPDATE_SCREENSHOT=1.
SCREENSHOT = ROOT / "docs" / "clustering.png"
SCREENSHOT_VIEWPORT = {"width": 1280, "height": 900}
# The membership heatmap as drawn: x and y labels, columns, z.
HEATMAP_JS = f"""() => {{
    const spec = ({MEMBERSHIP_SPEC_JS})();
    if (spec === null) return null;  // not yet applied
    const option = JSON.parse(spec), series = option.series[0], x = option.xAxis[0].data, y = option.yAxis[0].data;
    const z = y.map(() => x.map(() => 0));
    for (const item of series.data) z[item.value[1]][item.value[0]] = item.value[2];
    return {{x: x.map(String), y: y.map(String), columns: x.length, z: JSON.stringify(z)}};
}}"""
# The claims panel's table as drawn: one {claim: [cells...]} entry per body row.
CLAIMS_JS = """() => {
    const out = {};
    for (const table of document.querySelectorAll('[data-testid="stTable"] table')) {
        for (const row of table.querySelectorAll('tbody tr')) {
            const cells = Array.from(row.querySelectorAll('th, td'), c => c.innerText.trim());
            out[cells[0]] = cells.slice(1);
        }
    }
    return out;
}"""


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"browser test required here (CI / STG_REQUIRE_BROWSER) but {reason}")
    pytest.skip(reason)


def _workers_of(store: Path) -> list[int]:
    """Pids of the ``stg_core.worker`` processes working on ``store`` (their command line names it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = proc.joinpath("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"stg_core.worker" in args and str(store).encode() in args:
            pids.append(int(proc.name))
    return pids


def _stop_workers(store: Path) -> None:
    """Workers run in their own session (they outlive the app on purpose): end their groups."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _workers_of(store)
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = _workers_of(store)
        if not pids:
            return


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    """A fresh app on a free localhost port with an empty store; stopped with its workers afterwards."""
    store = tmp_path_factory.mktemp("browser_store").resolve()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with serve_app(store, ARTIFACTS / "server.log") as (url, _server):
            yield url
    finally:
        _stop_workers(store)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    try:
        import playwright  # noqa: F401 - only whether it is installed
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -r requirements-dev.txt)")
    if chromium() is None:
        _unavailable("no Chromium executable found (apt-get install chromium, or set STG_CHROMIUM)")
    with headless_browser() as launched:
        yield launched


class Walk:
    """One browser tab on the app, with the checks every step makes."""

    def __init__(self, page) -> None:
        self.page, self.step = page, 0
        self.js_errors: list[str] = []
        page.on("pageerror", lambda exc: self.js_errors.append(str(exc)))

    def idle(self, timeout: float = STEP_TIMEOUT_MS) -> None:
        """Wait until the script run (and its widgets' reruns) has finished."""
        self.page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]', timeout=timeout)
        self.page.wait_for_function(
            """() => {
                const app = document.querySelector('[data-testid="stApp"]');
                return app && app.getAttribute('data-test-script-state') === 'notRunning';
            }""", timeout=timeout)
        self.page.wait_for_timeout(300)  # let the last deltas paint

    def check(self, name: str, show=None) -> None:
        """Screenshot the step (scrolled to ``show``, a locator), then fail on any exception element
        or uncaught page error."""
        self.step += 1
        if show is not None:
            show.scroll_into_view_if_needed()
        self.page.screenshot(path=str(ARTIFACTS / f"{self.step:02d}_{name}.png"), full_page=True)
        exceptions = self.page.locator('[data-testid="stException"]')
        if exceptions.count():
            pytest.fail(f"step {name}: the app shows an exception:\n{exceptions.first.inner_text()}")
        assert not self.js_errors, f"step {name}: uncaught errors in the page: {self.js_errors}"

    def open(self, title: str) -> None:
        """Follow the sidebar's navigation link to page ``title`` (keeps the session)."""
        self.page.locator('[data-testid="stSidebarNav"] a').filter(has_text=re.compile(f"^{title}$")).click()
        self.page.wait_for_url(re.compile(f"/{title.lower()}"), timeout=STEP_TIMEOUT_MS)
        self.idle()
        heading = self.page.locator('[data-testid="stMainBlockContainer"] h1').first
        heading.wait_for(timeout=STEP_TIMEOUT_MS)
        assert heading.inner_text().strip() == title

    def select(self, label: str, option: str) -> None:
        box = self.page.get_by_role("combobox", name=label, exact=True)
        box.click()
        self.page.get_by_role("option", name=option, exact=True).click()
        self.idle()
        assert box.input_value() == option

    def number(self, label: str, value: int) -> None:
        field = self.page.get_by_label(label, exact=True)
        field.fill(str(value))
        field.press("Enter")
        self.idle()
        assert field.input_value() == str(value)

    def tab(self, name: str) -> None:
        """Open the page's tab ``name`` and wait for its script run."""
        self.page.get_by_role("tab", name=name, exact=True).click()
        self.idle()

    def heatmap(self) -> dict | None:
        """The membership heatmap as drawn: x labels, y labels, columns, z."""
        self.page.wait_for_function(f"({HEATMAP_JS})() !== null", timeout=STEP_TIMEOUT_MS)
        return self.page.evaluate(HEATMAP_JS)


def test_the_server_imports_the_pages_modules_as_it_starts(browser, app_url):
    """``streamlit run app/main.py`` serves app/main.py's ``st.App``, whose start-up hook imports
    every module the pages use and says so in the server's log."""
    log = ARTIFACTS / "server.log"
    deadline = time.monotonic() + 120
    while PRELOADED not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no preload line in the server's log:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    assert "not importable" not in log.read_text(errors="replace")


def test_digits_preset_end_to_end(browser, app_url):  # browser first: skip before starting the app
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    walk = Walk(page)
    try:
        page.goto(app_url)
        walk.idle()
        walk.check("overview")

        # Experiment: digits (the offline default), a G2 preset, a tiny training, Launch.
        walk.open("Experiment")
        assert page.get_by_role("combobox", name="Dataset", exact=True).input_value() == "digits"
        walk.select("Preset", "digits-g2")
        walk.number("Epochs", EPOCHS)
        walk.number("Training subset", SUBSET)
        launch = page.get_by_role("button", name="Launch")
        walk.check("experiment", show=launch)
        launch.click()
        walk.idle()
        page.get_by_text(re.compile(r"Run \w+: (running|queued|completed)")).wait_for()
        walk.check("launched")

        # Training: the active run's progress polls until the run has completed.
        walk.open("Training")
        page.get_by_text(f"completed · epoch {EPOCHS}/{EPOCHS}").wait_for(timeout=TRAINING_TIMEOUT_MS)
        walk.idle()
        walk.check("training_completed")

        # Clustering: one step right on the k slider re-clusters; the heatmap follows.
        walk.open("Clustering")
        before = walk.heatmap()
        thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Clusters k").locator('input[type="range"]')
        k = int(thumb.input_value())
        assert before["columns"] == k and len(before["x"]) == k
        walk.check(f"clustering_k{k}")
        thumb.focus()
        thumb.press("ArrowRight")
        walk.idle()
        assert thumb.input_value() == str(k + 1)
        page.wait_for_function(f"cols => ({HEATMAP_JS})()?.columns === cols", arg=k + 1)
        after = walk.heatmap()
        assert after["columns"] == k + 1 and len(after["x"]) == k + 1 and after["z"] != before["z"]
        assert f"k={k + 1}" in page.url or f"k%3D{k + 1}" in page.url  # the setting is kept in the URL
        walk.check(f"clustering_k{k + 1}")

        # Evaluation: the page loads on the completed run.
        walk.open("Evaluation")
        walk.check("evaluation")
    except BaseException:  # a failed check or a timeout: keep what the page showed
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        raise
    finally:
        context.close()


def _readme_screenshot(walk: Walk, out: Path) -> None:
    """The top of the page at the README's viewport, saved to ``out`` (checked non-empty) and, with
    env ``STG_UPDATE_SCREENSHOT=1``, copied to ``docs/clustering.png`` as a 256-colour PNG."""
    page = walk.page
    size = page.viewport_size
    page.set_viewport_size(SCREENSHOT_VIEWPORT)
    try:
        page.locator('[data-testid="stMainBlockContainer"] h1').first.evaluate("e => e.scrollIntoView()")
        page.wait_for_timeout(1000)  # the charts redraw at the new width
        walk.idle()
        page.screenshot(path=str(out))
    finally:
        page.set_viewport_size(size)
        walk.idle()
    assert out.stat().st_size > 0
    if os.environ.get("STG_UPDATE_SCREENSHOT") == "1":
        from PIL import Image

        with Image.open(out) as image:
            image.convert("RGB").quantize(colors=256).save(SCREENSHOT, optimize=True)


def _claims_match_the_heatmap(walk: Walk, k: int) -> list[str]:
    """The panel's verdicts on the random task and the complements follow the heatmap drawn
    beside it: the random task's cluster-mates (argmax of its row) are exactly the tasks the
    panel names, and the complements' verdict follows their rows' L1 distance. Returns the
    random-task row's cells."""
    import json

    import numpy as np

    from stg_core.claims import THRESHOLDS

    heat = walk.heatmap()
    assert heat["columns"] == k
    z = np.array(json.loads(heat["z"]))
    labels = dict(zip(heat["y"], z.argmax(1)))
    rows = dict(zip(heat["y"], z))
    walk.tab("Paper's claims")
    walk.page.get_by_text("The paper's claims on this run").wait_for()
    walk.check(f"demo_claims_k{k}")
    table = walk.page.evaluate(CLAIMS_JS)
    walk.tab("Memberships")
    verdict, detail = table["A random-label task gets a cluster of its own"][:2]
    mates = sorted(t for t, c in labels.items() if c == labels["Random"] and t != "Random")
    if mates:
        assert verdict == "✗ does not hold", (mates, detail)
        named = detail.split("shared with ", 1)[1].split(" — ")[0].split(", ")
        assert sorted(named) == mates
    else:
        assert verdict == "✓ holds" and detail.endswith(", alone")
    assert f"cluster {labels['Random']}," in detail
    verdict, detail = table["Exact complements get the same memberships"][:2]
    l1 = float(np.abs(rows["Round"] - rows["Not round"]).sum())
    stated = float(re.search(r"memberships: ([0-9.]+)", detail).group(1))
    assert abs(stated - l1) <= 0.0005 + 2 * k * 0.00005  # the heatmap draws memberships to 4 decimals
    assert verdict == ("✓ holds" if stated <= THRESHOLDS["complement_l1"] else "✗ does not hold")
    assert table["A random-label task gets a cluster of its own"][2].startswith(f"k = {k}, F = 2.00")
    return table["A random-label task gets a cluster of its own"]


def test_demo_from_the_overview(browser, app_url, tmp_path):
    """The presenter's path: Overview → Run the demo → Training (animation) → Clustering (the
    panel's verdicts follow the heatmap, at the demo's k and at k = 3) → Evaluation, following
    the sidebar's demo guide. The README's screenshot of the Clustering page is taken here."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    walk = Walk(page)
    try:
        page.goto(app_url)
        walk.idle()
        walk.check("demo_overview")
        page.get_by_role("button", name="Run the demo", exact=True).click()
        page.wait_for_url(re.compile("/training"), timeout=STEP_TIMEOUT_MS)
        walk.idle()
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Demo · step 1 of 3").wait_for()
        page.get_by_text("completed · epoch 40/40").wait_for(timeout=TRAINING_TIMEOUT_MS)
        walk.idle()
        page.locator('[data-testid="stEChartsChart"][aria-label*="data map of"]').last.wait_for()
        walk.check("demo_training")

        sidebar.get_by_role("link", name="Next: Clustering →").click()
        page.wait_for_url(re.compile("/clustering"), timeout=STEP_TIMEOUT_MS)
        walk.idle()
        sidebar.get_by_text("Demo · step 2 of 3").wait_for()
        walk.heatmap()
        walk.check("demo_clustering")
        _readme_screenshot(walk, tmp_path / "clustering.png")
        thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Clusters k").locator('input[type="range"]')
        assert thumb.input_value() == str(DEMOS["digits"].k)
        _claims_match_the_heatmap(walk, DEMOS["digits"].k)
        thumb.focus()
        while int(thumb.input_value()) > 3:
            thumb.press("ArrowLeft")
            walk.idle()
        page.wait_for_function(f"cols => ({HEATMAP_JS})()?.columns === cols", arg=3)
        random_row = _claims_match_the_heatmap(walk, 3)
        walk.check("demo_clustering_k3")
        assert "Downside" in random_row[1]  # at k = 3 the flipped task keeps the random task company

        sidebar.get_by_role("link", name="Next: Evaluation →").click()
        page.wait_for_url(re.compile("/evaluation"), timeout=STEP_TIMEOUT_MS)
        walk.idle()
        sidebar.get_by_text("Demo · step 3 of 3").wait_for()
        walk.check("demo_evaluation")
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "demo_failure.png"), full_page=True)
        raise
    finally:
        context.close()
