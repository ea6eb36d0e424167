"""`run-campaign serve` as a real process with a real uvicorn: the token on every address, over
a non-loopback bind (0.0.0.0, requests sent to 127.0.0.1 only) and on the loopback default."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the test extra: pip install -e '.[test]'")
pytest.importorskip("uvicorn", reason="the web extra: pip install -e '.[web]'")

from web_helpers import cli, write_campaign  # noqa: E402

RUN_CAMPAIGN = Path(sys.executable).parent / "run-campaign"
CID = "w1_web-test"


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Start `run-campaign serve ARGS --port 0`; yield (the address it printed, its lines)."""
    environ = {k: v for k, v in os.environ.items() if k != "CAMPAIGNS_WEB_TOKEN"}
    process = subprocess.Popen(
        [str(RUN_CAMPAIGN), "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**environ, **(env or {})},
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("open "):
                break
        else:
            pytest.fail(f"serve printed no address: {lines} {process.stderr.read()}")  # type: ignore[union-attr]
        for line in process.stdout:  # the closing hint
            lines.append(line.rstrip("\n"))
            break
        yield lines[1].removeprefix("open "), lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=20) == 0
        finally:
            process.kill()


@pytest.fixture
def campaign(tmp_path: Path) -> tuple[Path, Path]:
    config, root = write_campaign(tmp_path), tmp_path / "runs"
    cli("init", str(config), "--root", str(root))
    return config, root


def local(address: str) -> tuple[str, str | None]:
    """The same server reached over loopback, and the token in the address (if any)."""
    match = re.match(r"http://[^/]+:(\d+)/(?:\?token=(.+))?$", address)
    assert match, address
    return f"http://127.0.0.1:{match[1]}", match[2]


def test_bound_beyond_loopback_every_request_needs_the_printed_token(
    campaign: tuple[Path, Path],
) -> None:
    config, root = campaign
    with serving(str(config), "--root", str(root), "--host", "0.0.0.0") as (address, lines):
        base, token = local(address)
        assert token and len(token) >= 32, lines
        for path in ("/", f"/campaigns/{CID}", "/api/campaigns", "/static/dashboard.js"):
            refused = httpx.get(base + path)
            assert refused.status_code == 401 and "Web test" not in refused.text
            assert httpx.get(base + path, params={"token": "guess"}).status_code == 401
        ok = httpx.get(f"{base}/api/campaigns", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["campaigns"][0]["status"]["total"] == 12
        with httpx.Client(base_url=base) as browser_like:
            page = browser_like.get(f"/campaigns/{CID}?token={token}", follow_redirects=True)
            assert page.status_code == 200 and str(page.url) == f"{base}/campaigns/{CID}"
            assert browser_like.get("/api/campaigns").status_code == 200  # the cookie


def test_the_token_may_come_from_the_environment_and_is_not_printed(
    campaign: tuple[Path, Path],
) -> None:
    config, root = campaign
    secret = "a-token-chosen-by-the-user-0123456789"
    with serving(
        str(config), "--root", str(root), "--host", "0.0.0.0",
        env={"CAMPAIGNS_WEB_TOKEN": secret},
    ) as (address, lines):  # fmt: skip
        assert secret not in "\n".join(lines) and "CAMPAIGNS_WEB_TOKEN" in address
        base = "http://127.0.0.1:" + address.split(":")[2].split("/")[0]
        assert httpx.get(f"{base}/api/campaigns").status_code == 401
        answer = httpx.get(f"{base}/api/campaigns", headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code == 200


def test_on_loopback_too_every_request_needs_the_printed_token(
    campaign: tuple[Path, Path],
) -> None:
    """Everyone on a shared login node can open its 127.0.0.1: the default bind is no
    exception to the token (and it still answers only local host names)."""
    config, root = campaign
    with serving(str(config), "--root", str(root)) as (address, lines):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{32,}", address), lines
        base, token = local(address)
        port = base.rsplit(":", 1)[1]
        for path in ("/", f"/campaigns/{CID}", "/api/campaigns", "/static/dashboard.js"):
            refused = httpx.get(base + path)
            assert refused.status_code == 401 and "Web test" not in refused.text, path
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/campaigns", headers=bearer).status_code == 200
        # The printed address works as is in a browser: the token becomes this port's cookie.
        with httpx.Client() as browser_like:
            page = browser_like.get(address, follow_redirects=True)
            assert page.status_code == 200 and str(page.url) == f"{base}/"
            assert dict(browser_like.cookies) == {f"campaigns_token_{port}": token}
            assert browser_like.get(f"{base}/api/campaigns").status_code == 200
        # A page of another site, re-pointed at 127.0.0.1 by DNS, is refused.
        rebound = httpx.get(f"{base}/api/campaigns", headers={**bearer, "Host": "attacker.example"})
        assert rebound.status_code == 400
        local_name = {**bearer, "Host": "localhost:8000"}
        assert httpx.get(f"{base}/", headers=local_name).status_code == 200
