"""The leaderboard page in a real headless browser (Debian's ``chromium``): loads without console
errors, fits a 1400 px and an 800 px window with no horizontal scrollbar (the test fails on any
overflow), switches metric panels without script, sorts when a header is clicked, filters, renders
hostile names as text, and is screenshotted at both widths.

The DevTools client lives in :mod:`radbench.leaderboard.browser`, which ``make demo`` also runs to keep
``runs/demo/leaderboard-1400.png`` and ``-800.png``. Where chromium is not installed (``.ci/run``
installs it) the test is skipped with a message saying so.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Iterator

import pytest

from radbench.cli import main
from radbench.leaderboard import browser as browser_mod
from radbench.leaderboard import html
from radbench.leaderboard.browser import DevTools, overflow

pytestmark = pytest.mark.slow  # starts a headless browser

CHROMIUM = browser_mod.find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="browser test skipped: Debian's chromium is not installed (`apt-get install -y chromium`; .ci/run "
           "installs it where apt works)",
)
EVIL = "<script>alert(1)</script>"


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[DevTools]:
    client = DevTools(tmp_path / "profile", CHROMIUM)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``radbench demo``'s folder: both baselines on every task, its leaderboard.json and index.html."""
    root = tmp_path_factory.mktemp("browser") / "demo"
    assert main(["demo", "--output", str(root), "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def page(demo: Path) -> Path:
    """The demo's diagnosis and report runs plus a hostile model name, built and rendered by the CLI."""
    root = demo.parent
    for run in ("majority-diagnosis", "retrieval-diagnosis", "majority-report", "retrieval-report"):
        shutil.copytree(demo / run, root / "runs" / run)
    evil = root / "runs" / "evil-report"
    shutil.copytree(demo / "majority-report", evil)
    results = json.loads((evil / "results.json").read_text())
    results["model"]["name"] = EVIL
    (evil / "results.json").write_text(json.dumps(results))
    assert main(["leaderboard", "build", str(root / "runs"), "--output", str(root / "leaderboard.json")]) == 0
    assert main(["leaderboard", "html", str(root / "leaderboard.json"), "--output", str(root / "index.html")]) == 0
    return root / "index.html"


def _png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]


@pytest.mark.parametrize("width", [1400, 800])
def test_demo_leaderboard_fits_the_window(browser: DevTools, demo: Path, tmp_path: Path, width: int) -> None:
    """No part of the demo page, in any metric panel, needs a horizontal scrollbar; screenshot kept."""
    browser.open((demo / "index.html").as_uri(), width)
    assert browser.js("document.querySelectorAll('.chooser > div.panel').length") >= 4  # panels were probed
    assert overflow(browser) == []
    # Everything opened (provenance, protocol) still fits: long hashes and names wrap.
    browser.js("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert [p for p in overflow(browser) if "pre" not in p] == []
    browser.js("document.querySelectorAll('details').forEach(d => d.open = false)")
    shot = tmp_path / f"leaderboard-{width}.png"
    browser.screenshot(shot)
    assert abs(_png_width(shot) - width) <= 20 and shot.stat().st_size > 20_000
    assert browser.problems() == []


def test_overflow_would_be_caught(browser: DevTools, demo: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above is only as good as its probe: every rationale metric in one table must overflow."""
    monkeypatch.setattr(html, "PANEL_COLUMNS", 30)
    wide = tmp_path / "wide.html"
    html.write(demo / "leaderboard.json", wide)
    browser.open(wide.as_uri(), 800)
    problems = overflow(browser)
    assert problems and any("rationale" in p for p in problems), problems


def test_metric_panels_switch_without_script(browser: DevTools, demo: Path) -> None:
    browser.open((demo / "index.html").as_uri(), 1400)
    shown = ("Array.from(document.querySelectorAll('#{g} .panel')).map(p => p.getClientRects().length > 0)")
    group = browser.js("document.querySelector('section.group[data-task=report]').id")
    first = browser.js(shown.format(g=group))
    assert first[0] and not any(first[1:])
    browser.js(f"document.querySelectorAll('#{group} .chooser > label')[2].click()")
    assert browser.js(shown.format(g=group)) == [i == 2 for i in range(len(first))]
    # The primary metric leads every panel's metric columns.
    heads = browser.js(f"Array.from(document.querySelectorAll('#{group} .panel')).map("
                       "p => p.querySelectorAll('thead th')[3].textContent)")
    assert set(heads) == {"umls_neg_f1" + "HPO index"}  # the concept source is the head's second line


TABLE = "document.querySelector('#{g} table.board')"  # the first panel's table
ORDER = "Array.from(" + TABLE + ".tBodies[0].rows).map(r => r.cells[{c}].getAttribute('data-v'))"


def test_page_loads_sorts_filters_and_escapes(browser: DevTools, page: Path, tmp_path: Path) -> None:
    browser.open(page.as_uri())
    assert browser.js("document.title") == "radbench leaderboard"
    assert browser.js("document.scripts.length") == 1

    # Sorting: the report group has three entries; click "model", then click it again.
    group = browser.js("document.querySelectorAll('section.group')[1].id")
    table = TABLE.format(g=group)
    headers = browser.js(f"Array.from({table}.tHead.rows[0].cells).map(t => t.textContent)")
    model_col, metric_col = headers.index("model"), headers.index("umls_recall" + "HPO index")
    click = f"{table}.tHead.rows[0].cells[{{}}].querySelector('button').click()"
    browser.js(click.format(model_col))
    names = browser.js(ORDER.format(g=group, c=model_col))
    assert names == sorted(names, key=str.lower) and len(names) == 3
    browser.js(click.format(model_col))
    assert browser.js(ORDER.format(g=group, c=model_col)) == sorted(names, key=str.lower, reverse=True)
    browser.js(click.format(metric_col))
    values = [float(v) for v in browser.js(ORDER.format(g=group, c=metric_col))]
    assert values == sorted(values, reverse=True)
    assert browser.js(f"{table}.tHead.rows[0].cells[{metric_col}].getAttribute('aria-sort')") == "descending"

    # Filters: only the diagnosis group stays visible.
    choose = ("{{ const s = document.getElementById('filter-task'); s.value = '{}';"
              " s.dispatchEvent(new Event('change')); }}")
    browser.js(choose.format("diagnosis"))
    assert browser.js("Array.from(document.querySelectorAll('section.group')).filter(g => !g.hidden).length") == 1
    assert browser.js("document.getElementById('filter-status').textContent") == "1 of 2 groups shown"
    browser.js(choose.format(""))
    assert browser.js("document.getElementById('filter-status').textContent") == "2 of 2 groups shown"

    # The hostile name is text, and its provenance opens on click.
    summaries = browser.js("Array.from(document.querySelectorAll('td.model summary')).map(s => s.textContent)")
    assert EVIL in summaries
    browser.js("document.querySelector('td.model details').open = true")
    assert "weights" in browser.js("document.querySelector('td.model dl.prov').textContent")

    shot = tmp_path / "leaderboard.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.problems() == []


def test_console_errors_would_be_caught(browser: DevTools, page: Path, tmp_path: Path) -> None:
    """The check above is only as good as its detector: a tampered script must register as an error."""
    tampered = tmp_path / "tampered.html"
    tampered.write_text(page.read_text().replace('"use strict";', '"use strict"; window.x = 1;', 1))
    browser.open(tampered.as_uri())
    problems = browser.problems()
    assert problems and any("Content Security Policy" in p for p in problems), problems
