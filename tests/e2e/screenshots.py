"""``make screenshot``: PNGs of the dashboard over a store of real runs.

    python tests/e2e/screenshots.py [OUTDIR]      # default build/screenshots

Writes ``runs.png`` (the runs list), ``run-completed.png`` (a five-step run with
a retried step), ``run-failed.png`` (a failed run, its traceback open) and
``run-running.png`` (a run still running, as the live page shows it),
``run-retrying.png`` (a step failed once and retried in an hour: the run waits) and
``run-grouped.png`` (a run of 300 steps, grouped by name, one group open).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cdp import Browser
from harness import FLOWS, DashboardProcess, Process, make_runs, surestep


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="surestep-screenshots-") as tmp:
        store = Path(tmp) / "store"
        runs = make_runs(store)
        gate = Path(tmp) / "gate"
        held = Process(store, "run", f"{FLOWS}:held_open", str(gate), "-q")
        dashboard = DashboardProcess(store)
        try:
            with Browser(width=1280, height=800) as browser:
                browser.goto(dashboard.url)
                browser.wait_for(
                    f"document.querySelectorAll('tr.run-row').length === {len(runs.all) + 1}"
                )
                shots = [browser.screenshot(outdir / "runs.png")]

                browser.goto(f"{dashboard.base}#/runs/{runs.order}")
                browser.wait_for("document.querySelectorAll('#timeline .tl-bar').length === 5")
                shots.append(browser.screenshot(outdir / "run-completed.png"))

                browser.goto(f"{dashboard.base}#/runs/{runs.failed}")
                browser.wait_for("document.querySelector('.step-failed .step-error summary')")
                browser.click(".step-failed .step-error summary")
                browser.wait_for("document.querySelector('.step-failed details[open]')")
                shots.append(browser.screenshot(outdir / "run-failed.png"))

                browser.goto(f"{dashboard.base}#/?status=running")
                running = browser.wait_for("document.querySelector('tr.run-row')?.dataset.runId")
                browser.goto(f"{dashboard.base}#/runs/{running}")
                browser.wait_for("document.querySelector('#timeline .tl-pending')")
                shots.append(browser.screenshot(outdir / "run-running.png"))

                retrying = Process(store, "run", f"{FLOWS}:retry_later", "p-1", "-q")
                try:
                    browser.goto(f"{dashboard.base}#/?status=waiting")
                    waiting = browser.wait_for(
                        "document.querySelector('tr.run-row')?.dataset.runId", timeout=30
                    )
                    browser.goto(f"{dashboard.base}#/runs/{waiting}")
                    browser.wait_for("document.querySelector('#timeline .tl-bar.retrying')")
                    shots.append(browser.screenshot(outdir / "run-retrying.png"))
                finally:
                    retrying.close()

                surestep(store, "run", f"{FLOWS}:many_steps", "300", "-q")
                browser.goto(f"{dashboard.base}#/?workflow=many_steps")
                grouped = browser.wait_for("document.querySelector('tr.run-row')?.dataset.runId")
                browser.goto(f"{dashboard.base}#/runs/{grouped}")
                browser.wait_for("document.querySelectorAll('#steps-body tr.step-group').length")
                browser.click('#steps-body tr.step-group[data-name="store"] button')
                browser.wait_for("document.querySelectorAll('#steps-body tr.step-row').length")
                browser.evaluate("window.scrollTo(0, 0)")
                shots.append(browser.screenshot(outdir / "run-grouped.png", full_page=False))

                surestep(store, "deploy", str(FLOWS), "-w", "monthly_report", "-w", "greet")
                browser.goto(f"{dashboard.base}#/store")
                browser.wait_for("document.querySelectorAll('tr.deployment-row').length === 2")
                shots.append(browser.screenshot(outdir / "store.png"))
        finally:
            gate.touch()
            held.close()
            dashboard.close()
    for shot in shots:
        print(shot)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/screenshots"))
