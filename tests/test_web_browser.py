"""The dashboard's pages in a real headless Chromium (Debian's, driven by Playwright), against a
real uvicorn, while a real local campaign runs. Required in CI (CAMPAIGNS_REQUIRE_BROWSER)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from campaigns.core.states import ALL_STATES
from campaigns.ops.manager import CampaignManager
from campaigns.web.app import create_app
from campaigns.web.served import Served
from web_helpers import (
    browser,
    cli,
    forty_thousand_jobs,
    live_server,
    wait_for,
    write_campaign,
)

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, used by name

CID = "w1_web-test"
TOKEN = "browser-token-0123456789abcdef"
XSS = "<img src=x onerror=\"document.title='pwned'\">"


def shown_counts(page: Any, scope: str) -> dict[str, int]:
    """The counts per state a page shows under `scope`, as numbers."""
    return {
        state: int(page.locator(f"{scope} [data-count={state}]").inner_text().replace(",", ""))
        for state in ALL_STATES
    }


def page_shows(page: Any, scope: str, counts: dict[str, int]) -> bool:
    """True when the page shows exactly `counts` (False while it has not drawn them yet)."""
    try:
        return shown_counts(page, scope) == counts
    except (ValueError, Exception):  # not drawn yet
        return False


def test_pages_show_the_store_live_while_a_local_campaign_runs(
    browser: Any, tmp_path: Path
) -> None:
    config, root = write_campaign(tmp_path, n=8, nap=1.0), tmp_path / "runs"
    later = tmp_path / "later.yaml"  # a second campaign, not initialised
    later.write_text(config.read_text().replace('version: "w1"', 'version: "w2"'))
    cli("init", str(config), "--root", str(root))
    served = Served.from_files([config, later], root=str(root), poll_seconds=0.3)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    navigations: list[str] = []
    script_errors: list[str] = []
    with live_server(create_app(served, token=TOKEN)) as base:
        campaign_page, index_page = context.new_page(), context.new_page()
        campaign_page.on("framenavigated", lambda frame: navigations.append(frame.url))
        for watched in (campaign_page, index_page):
            watched.on("pageerror", lambda error: script_errors.append(str(error)))
        campaign_page.goto(f"{base}/campaigns/{CID}?token={TOKEN}")  # then the cookie
        index_page.goto(f"{base}/")
        cli("submit", str(config), "--root", str(root), "--backend", "local")
        seen_mid_run = 0
        deadline = time.monotonic() + 180
        while True:
            manager = CampaignManager(config, root=root)
            report = manager.monitor_progress()  # the store changes here, and only here
            manager.close()
            expected = {s: report.counts.get(s, 0) for s in ALL_STATES}
            for page, scope in (
                (campaign_page, "#tiles"),
                (index_page, f"tr[data-campaign='{CID}']"),
            ):
                wait_for(
                    lambda page=page, scope=scope, expected=expected: page_shows(
                        page, scope, expected
                    ),
                    what=f"{scope} showing {expected}",
                )
            if 0 < expected["completed"] < 16 and expected["running"] + expected["queued"]:
                seen_mid_run += 1
            if expected["queued"] + expected["running"] == 0:  # one retry waits 10 min: done
                break
            assert time.monotonic() < deadline, f"campaign not finished: {expected}"
            time.sleep(0.4)
        assert seen_mid_run >= 2, "the pages were never compared while jobs were running"
        assert expected == {
            "pending": 0,
            "queued": 0,
            "running": 0,
            "completed": 14,
            "failed": 2,
            "cancelled": 0,
        }
        assert navigations == [f"{base}/campaigns/{CID}"], "the page reloaded"
        later_row = index_page.locator("tr[data-campaign='w2_web-test']").inner_text()
        assert "not initialised" in later_row
        # Failures: by class, standings, and the failures table (the default filter).
        wait_for(
            lambda: campaign_page.locator("#jobs tbody tr[data-job]").count() == 2,
            what="two failed jobs in the table",
        )
        keys = [
            row.get_attribute("data-job")
            for row in campaign_page.locator("#jobs tbody tr[data-job]").all()
        ]
        assert keys == ["realization=2,redshift=1.0", "realization=2,redshift=2.0"]
        assert campaign_page.locator("tr[data-failure-class=exit_code] .num").inner_text() == "2"
        assert campaign_page.locator("#retry-waiting").inner_text() == "1"
        assert campaign_page.locator("#exhausted").inner_text() == "1"
        assert campaign_page.locator("#bar-label").inner_text().startswith("14 of 16 jobs")
        assert campaign_page.locator("#range").inner_text() == "1–2 of 2"
        assert campaign_page.locator("#chart polyline.completed").count() == 1
        assert campaign_page.locator("#remaining").inner_text() == "1 job"
        # A job: its attempt and the tail of its own log section.
        campaign_page.locator("#jobs tbody a", has_text="realization=2,redshift=2.0").click()
        campaign_page.wait_for_url(f"{base}/campaigns/{CID}/jobs/*")
        wait_for(lambda: "boom 2" in campaign_page.locator("#log").inner_text(), what="the log")
        assert campaign_page.locator("#job-state").inner_text() == "failed"
        redshift = campaign_page.locator("#params tr", has_text="redshift").locator("td")
        assert redshift.inner_text() == "2.0"
        assert campaign_page.locator("#attempts tbody tr[data-attempt]").count() == 1
        assert "this job's section" in campaign_page.locator("#log-meta").inner_text()
        assert "realization=2,redshift=1.0" not in campaign_page.locator("#log").inner_text()
    context.close()
    assert not script_errors, script_errors


def test_forty_thousand_jobs_page_by_page_and_texts_stay_text(browser: Any, tmp_path: Path) -> None:
    big, root = forty_thousand_jobs(tmp_path, error=XSS)
    served = Served.from_files([big], root=str(root), poll_seconds=60)
    context = browser.new_context()
    page = context.new_page()
    answers: list[tuple[str, int, int]] = []

    def record(response: Any) -> None:
        if "/api/" in response.url and response.url.split("?")[0].endswith("/jobs"):
            body = response.body()
            answers.append((response.url, len(body), len(json.loads(body)["jobs"])))

    page.on("response", record)
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    with live_server(create_app(served, token=TOKEN)) as base:
        started = time.perf_counter()
        page.goto(f"{base}/campaigns/b1_big?token={TOKEN}")
        wait_for(lambda: page.locator("#range").inner_text() == "1–50 of 20,000", what="page 1")
        first_page_seconds = time.perf_counter() - started
        assert page.locator("#jobs tbody tr[data-job]").count() == 50
        page.locator("#next").click()
        wait_for(lambda: page.locator("#range").inner_text() == "51–100 of 20,000", what="page 2")
        page.locator("#filters input[name=q]").fill("realization=19999,")
        wait_for(lambda: page.locator("#range").inner_text() == "1–1 of 1", what="the search")
        assert page.locator("#jobs tbody tr[data-job]").get_attribute("data-job") == (
            "realization=19999,redshift=2.0"
        )
        # An error text holding HTML is shown as text, never run.
        assert page.locator("#jobs tbody .error-text").first.inner_text() == XSS
        assert page.locator("#jobs tbody img").count() == 0 and page.title() != "pwned"
        tiles = shown_counts(page, "#tiles")
        assert tiles["failed"] == 20000 and tiles["pending"] == 20000
    context.close()
    assert not script_errors, script_errors
    assert answers and max(n for _, _, n in answers) <= 50
    assert sum(size for _, size, _ in answers) < 200_000, answers
    assert first_page_seconds < 10
    print(f"first page of 40,000 jobs drawn in {first_page_seconds:.2f} s")


def test_the_browser_needs_the_token_on_loopback_too(browser: Any, tmp_path: Path) -> None:
    """Every user of a login node can open its 127.0.0.1: without the token, nothing."""
    config, root = write_campaign(tmp_path), tmp_path / "runs"
    cli("init", str(config), "--root", str(root))
    app = create_app(Served.from_files([config], root=str(root), poll_seconds=0.5), token=TOKEN)
    context = browser.new_context()
    page = context.new_page()
    with live_server(app) as base:
        assert base.startswith("http://127.0.0.1:")
        for path in ("/", f"/campaigns/{CID}", "/api/campaigns"):
            refused = page.goto(f"{base}{path}")
            assert refused is not None and refused.status == 401, path
            assert "token is required" in page.content() and "Web test" not in page.content()
        page.goto(f"{base}/campaigns/{CID}?token={TOKEN}")
        assert page.url == f"{base}/campaigns/{CID}"  # the token left the address bar
        wait_for(
            lambda: page_shows(page, "#tiles", {**dict.fromkeys(ALL_STATES, 0), "pending": 12}),
            what="the counts, fetched with the cookie",
        )
        (cookie,) = context.cookies()
        port = base.rsplit(":", 1)[1]
        assert cookie["name"] == f"campaigns_token_{port}" and cookie["value"] == TOKEN
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # out of reach of scripts
    context.close()
