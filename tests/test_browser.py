"""The console in a real browser: Debian's Chromium driven by Playwright, the gateway under gunicorn.

Playwright never downloads a browser here: it launches /usr/bin/chromium (MMM_CHROMIUM).
The dashboard's screenshot is left in var/artifacts/dashboard.png.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM
from tests.fake_upstream import Reply, Seen
from tests.gateway_process import GatewayProcess, gateway_database
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-test-password"
# A common laptop screen: the console must fit it without scrolling sideways.
SCREEN = {"width": 1366, "height": 900}


@pytest.fixture
def gateway(tmp_path):
    with gateway_database(tmp_path) as env:
        # Without Redis each process has its own routing state, and a page shows the traffic
        # its process saw: one process then, so the health the test reads is the one it made.
        web_workers = "2" if os.environ.get("REDIS_URL") else "1"
        env = {**env, "MMM_REQUEST_LOG_FLUSH_SECONDS": "0.2", "MMM_WEB_WORKERS": web_workers}
        setup = GatewayProcess(env=env)
        setup.manage("migrate", "--noinput", "-v0").check_returncode()
        setup.manage("collectstatic", "--noinput", "-v0").check_returncode()
        created = GatewayProcess(env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}).manage(
            "createsuperuser", "--noinput", "--username", "operator", "--email", "ops@example.com"
        )
        created.check_returncode()
        process = GatewayProcess(env=env).start()
        yield process
        process.stop()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport=SCREEN)
        finally:
            browser.close()


def chat_answer(seen: Seen) -> Reply:
    prompt = seen.json["messages"][0]["content"]
    return Reply(json={"choices": [{"message": {"role": "assistant", "content": f"echo: {prompt}"}}]})


# How far the page, or any table or box that scrolls on its own (the admin's list does), reaches
# past its visible width.
_OVERFLOW = """() => {
  const page = document.documentElement.scrollWidth - window.innerWidth;
  const boxes = [...document.querySelectorAll('table, .results, #content, #changelist')].map(
    el => [el.id || el.className || el.tagName, Math.max(el.scrollWidth - el.clientWidth,
                                                         el.getBoundingClientRect().right - window.innerWidth)]);
  return [['page', page], ...boxes].filter(([, over]) => over > 1);
}"""


def assert_fits_the_screen(page, what: str) -> None:
    overflowing = page.evaluate(_OVERFLOW)
    assert overflowing == [], f"{what} does not fit a {SCREEN['width']} px screen: {overflowing} px too wide"


def test_an_operator_adds_a_worker_tries_it_and_sees_the_traffic(gateway, page, upstream):
    from playwright.sync_api import expect

    upstream.on("/v1/chat/completions", chat_answer)
    flaky_count = iter(range(10_000))
    upstream.on(
        "/flaky", lambda seen: Reply(status=500, json={}) if next(flaky_count) % 4 == 0 else Reply(json={"out": "ok"})
    )

    # Sign in.
    page.goto(gateway.url + "/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("mmm")

    # Add a worker from a template, try it before saving, then save it.
    page.goto(gateway.url + "/admin/registry/worker/add/")
    # The JSON boxes start empty and valid, not with the text "null".
    expect(page.locator("#id_headers")).to_have_value("{}")
    expect(page.locator("#id_body")).to_have_value("{}")
    page.fill("#id_model_name", "chat-demo")
    page.fill("#id_req_url_template", upstream.url("/v1/chat/completions"))
    page.fill("#id_headers", json.dumps({"Authorization": "Bearer sk-browser-test-secret"}))
    page.fill(
        "#id_body", json.dumps({"model": "{MODEL_NAME}", "messages": [{"role": "user", "content": "{USER_PROMPT}"}]})
    )
    page.fill("#id_response_extract", "choices[0].message.content")
    page.fill("#trial-prompt", "hello from the browser")
    page.click("#trial-send")
    expect(page.locator("#trial-extracted")).to_have_text("echo: hello from the browser")
    expect(page.locator("#trial-request")).to_contain_text("Authorization: ***")
    assert "sk-browser-test-secret" not in page.locator("#trial-result").inner_html()
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    # Traffic: the new model, and a second one that fails one request in four.
    gateway.post(
        "/api/server/register",
        {
            "model_name": "flaky-demo",
            "req_url_template": upstream.url("/flaky"),
            "body": {"input": "{USER_PROMPT}"},
            "response_extract": "out",
        },
    ).raise_for_status()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda index: (
                    gateway.post(
                        "/api/v1/chat/completions",
                        {"model_name": "chat-demo" if index % 2 else "flaky-demo", "input": f"q{index}"},
                    ).status_code
                ),
                range(40),
            )
        )
    assert statuses.count(200) >= 20

    # Two workers of one model, one always failing: live traffic ejects it, the other answers.
    upstream.on("/down", Reply(status=500, json={"error": "down"}))
    upstream.on("/up", Reply(json={"out": "fine"}))
    # The answering worker first: a gunicorn worker whose routing table has not reloaded yet
    # (each reloads every MMM_ROUTING_REFRESH_SECONDS, later on a busy machine) knows either
    # none, /up alone, or both; never /down without /up to fail over to.
    for path in ("/up", "/down"):
        gateway.post(
            "/api/server/register",
            {
                "model_name": "pair-demo",
                "req_url_template": upstream.url(path),
                "body": {"input": "{USER_PROMPT}"},
                "response_extract": "out",
            },
        ).raise_for_status()
    # Round robin: the failing worker keeps its turns until it is ejected (least_loaded would
    # just stop picking it after its first failure).
    gateway.post("/api/server/policy", {"model_name": "pair-demo", "strategy": "round_robin"}).raise_for_status()

    def down_ejected() -> bool:
        workers = gateway.get("/api/server/workers", model_name="pair-demo").json()["data"]
        return any(
            w["req_url_template"].endswith("/down") and (w["traffic"] or {}).get("ejected_until") for w in workers
        )

    sent = iter(range(10_000))

    def answered_then_down_ejected() -> bool:
        # The failing worker gets every other request once a gunicorn worker has reloaded the
        # round-robin policy (on a loaded machine, seconds after it was set): until it is ejected.
        answer = gateway.post("/api/v1/chat/completions", {"model_name": "pair-demo", "input": f"p{next(sent)}"})
        assert answer.status_code == 200, answer.text
        return down_ejected()

    wait_until(answered_then_down_ejected, timeout=30, what="live traffic to get the failing worker ejected", poll=0)
    # A name only a client typed.
    assert gateway.post("/api/v1/chat/completions", {"model_name": "no-such-model", "input": "x"}).status_code == 404

    # The workers list: one health from probes and traffic, and it fits the screen.
    page.goto(gateway.url + "/admin/registry/worker/?model_name=pair-demo")
    down = page.locator("#result_list tr", has_text="/down")
    up = page.locator("#result_list tr", has_text="/up")
    expect(down.locator("td.field-health_badge")).to_have_text("ejected")
    expect(up.locator("td.field-health_badge")).to_have_text("healthy")  # no probe yet, but answering
    page.goto(gateway.url + "/admin/registry/worker/")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    assert_fits_the_screen(page, "the workers list")
    # The worker page: one verdict, and no second set of counts that disagrees with it.
    page.goto(gateway.url + "/admin/registry/worker/?model_name=pair-demo")
    page.locator("#result_list tr", has_text="/down").locator("a").first.click()
    expect(page.locator(".field-health")).to_contain_text("ejected for")
    assert "Consecutive failures" not in page.content()
    assert_fits_the_screen(page, "the worker page")

    # The dashboard: the table counts what was sent, the charts have lines or points.
    page.goto(gateway.url + "/admin/dashboard/")
    row = page.locator("#console-models tr", has_text="chat-demo")
    for _ in range(20):  # the request log is written every 0.2 s
        if row.count() and row.locator("td").nth(1).inner_text() == "20":
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(row.locator("td").nth(1)).to_have_text("20")
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(4)
    assert charts.first.locator("polyline, circle").count() >= 2  # one mark per model at least
    expect(page.locator("#console-workers")).to_contain_text("chat-demo")
    # Names no worker is registered under share one row.
    expect(page.locator("#console-models tr", has_text="other: 1 unregistered name")).to_have_count(1)
    expect(page.locator("#console-models tr", has_text="no-such-model")).to_have_count(0)
    expect(page.locator("#console-workers tr", has_text="/down").locator(".console-health")).to_have_text("ejected")
    assert_fits_the_screen(page, "the dashboard")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
