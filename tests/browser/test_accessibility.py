"""Every page: no serious or critical axe-core violation, no sideways scrolling and labelled cards at phone width.

Every page is scanned at desktop (1366 px) and phone (390 px) width, with data on it: a
few networks, a domain, an SMTP user, revisions, a self-test, a token and a bulk change in the
audit log. One browser context per width and role keeps the scan to a few seconds a page.
"""

import pytest

from policy import audit
from policy.models import (
    ApiToken,
    DeniedNetwork,
    InternalAddress,
    LocalDomain,
    PolicyRevision,
    SelfTestRun,
    SmtpUser,
    TrustedNetwork,
)
from policy.revisions import policy_change
from tests.browser.axe import blocking_violations, scanning_context
from tests.browser.conftest import log_in
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def loaded(editor):
    """Return the ids the page list needs, after loading a small but complete policy."""
    root = make_user("root", is_superuser=True, is_staff=True)
    with (
        audit.audit_context(source="web", user=root, request_id="bulk-setup", reason="initial policy"),
        policy_change(),
    ):
        for n in range(4):
            TrustedNetwork.objects.create(network=f"10.{n}.0.0/16", description=f"site {n}", created_by=root)
        TrustedNetwork.objects.create(network="2001:db8::/48", description="IPv6 office")
        DeniedNetwork.objects.create(network="10.3.9.0/24", description="guest Wi-Fi")
        InternalAddress.objects.create(address="192.0.2.25")
        domain = LocalDomain.objects.create(domain="example.com", route="mx.example.com:25")
        account = SmtpUser(username="scanner@example.com", description="copier")
        account.set_password("a long enough secret")
        account.save()
    with audit.audit_context(source="web", user=root):
        with policy_change():
            LocalDomain.objects.create(domain="example.org", include_subdomains=True)
        token = ApiToken(user=root, name="relayd node 1")
        token.generate_key()
        token.save()
    serials = list(PolicyRevision.objects.order_by("serial").values_list("serial", flat=True))
    run = SelfTestRun.objects.create(
        target="127.0.0.1:2525",
        domain="example.com",
        run_by=root,
        run_by_name="root",
        total=2,
        revision_serial=serials[-1],
        report={
            "attempts": [
                {
                    "mail_from": "a@example.net",
                    "rcpt_to": "b@example.org",
                    "code": 550,
                    "reply": "5.7.1 Relaying denied",
                },
                {"mail_from": "", "rcpt_to": "b%example.org@example.com", "code": 550, "reply": "5.7.1 denied"},
            ]
        },
    )
    network = TrustedNetwork.objects.first()
    return {
        "network": network.pk,
        "domain": domain.pk,
        "account": account.pk,
        "serials": serials,
        "run": run.pk,
        "user": root.pk,
    }


def superuser_pages(ids):
    first, last = ids["serials"][0], ids["serials"][-1]
    return [
        "/",
        "/restrictions/",
        "/restrictions/trusted/add/",
        f"/restrictions/trusted/{ids['network']}/edit/",
        "/domains/",
        "/domains/add/",
        f"/domains/{ids['domain']}/edit/",
        "/smtp-users/",
        f"/smtp-users/{ids['account']}/edit/",
        "/check/?client=203.0.113.9&recipient=someone%40example.net",
        "/revisions/",
        f"/revisions/{last}/",
        f"/revisions/diff/?a={first}&b={last}",
        "/exports/",
        "/audit/",
        "/networks/import/",
        "/api-tokens/",
        "/users/",
        "/users/add/",
        f"/users/{ids['user']}/edit/",
        "/reputation/",
        f"/selftest/{ids['run']}/",
        "/password/",
    ]


def unlabelled_card_values(page):
    """Return a finding for each table value that, as a phone card, would not say which column it is."""
    cells = page.locator("main tbody > tr > td:not([colspan]):not(.actions):not([data-label])")
    if not cells.count():
        return []
    return [f"{page.url}: a card value without a data-label: {cells.first.inner_text()[:40]!r}"]


def test_no_serious_or_critical_violation_on_any_page(browser, live_server, loaded, tmp_path):
    csv = tmp_path / "networks.csv"
    csv.write_text("network,description\n10.9.0.0/16,lab\n10.9.0.7/16,typo\n")
    found = []
    # The scanner itself works: it flags an image without a text alternative.
    context = scanning_context(browser)
    page = context.new_page()
    page.set_content("<!doctype html><html lang=en><title>t</title><main><img src=x.png></main></html>")
    assert any("image-alt" in line for line in blocking_violations(page))
    context.close()
    for size in WIDTHS.values():
        context = scanning_context(browser, viewport=size, base_url=live_server.url)
        page = context.new_page()
        page.goto("/login/")
        found += blocking_violations(page)
        log_in(page, "root")
        for url in superuser_pages(loaded):
            response = page.goto(url)
            assert response.status == 200, url
            found += blocking_violations(page)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > size["width"]:
                found.append(f"{page.url} is {width} px wide at {size['width']} px")
            if size is WIDTHS["phone"]:
                found += unlabelled_card_values(page)
        # A bulk change opened, and at phone width the opened menu.
        page.goto("/audit/")
        page.locator("table.audit summary").first.click()
        found += blocking_violations(page)
        if page.get_by_role("button", name="Menu").is_visible():
            page.get_by_role("button", name="Menu").click()
            found += blocking_violations(page)
        # The new API key, shown once with its Copy button.
        page.goto("/api-tokens/")
        page.locator("#id_name").fill(f"scan {size['width']}")
        page.get_by_role("button", name="Create token").click()
        page.get_by_role("button", name="Copy").wait_for()
        found += blocking_violations(page)
        # The import preview is only reachable through an upload.
        page.goto("/networks/import/")
        page.get_by_label("CSV file").set_input_files(str(csv))
        page.get_by_role("button", name="Preview").click()
        page.wait_for_url("**/networks/import/preview/")
        found += blocking_violations(page)
        context.close()

        # The branded 403 page, as a viewer asking for a superuser's page.
        context = scanning_context(browser, viewport=size, base_url=live_server.url)
        page = context.new_page()
        make_user(f"vic{size['width']}", role="viewer")
        log_in(page, f"vic{size['width']}")
        assert page.goto("/users/").status == 403
        found += blocking_violations(page)
        context.close()
    assert found == [], "\n".join(found)
