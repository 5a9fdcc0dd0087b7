"""The API docs (Swagger UI and Redoc) render on a closed network: nothing is fetched from elsewhere.

Redoc's bundle hard-codes a logo on cdn.redoc.ly; the Content-Security-Policy blocks it in the
browser, so the request never leaves it.
"""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("path", "rendered"),
    [("/api/v1/schema/swagger-ui/", ".swagger-ui .info"), ("/api/v1/schema/redoc/", ".api-info")],
)
def test_docs_render_without_any_outside_request(new_page, live_server, editor, path, rendered):
    page = new_page()
    log_in(page, "erin")
    own = urlsplit(live_server.url).netloc
    outside = []

    def note_outside(request):
        url = urlsplit(request.url)
        # blob: and data: URLs are made in the page itself (Redoc's worker); only the network counts.
        if url.scheme in ("http", "https", "ws", "wss") and url.netloc != own:
            outside.append(request.url)

    def note_blocked(request):
        # Chromium names the cause "csp" (older builds: net::ERR_BLOCKED_BY_CSP).
        if "csp" in (request.failure or "").lower():
            blocked.append(request.url)

    blocked = []
    page.on("request", note_outside)
    page.on("requestfailed", note_blocked)
    page.goto(path)
    expect(page.locator(rendered)).to_contain_text("relayadmin API", timeout=20_000)
    page.wait_for_load_state("networkidle")
    assert [url for url in outside if url not in blocked] == []
