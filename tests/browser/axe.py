"""axe-core, as bundled by axe-playwright-python (no network), loaded into every page of a browser context."""

from axe_playwright_python.base import AXE_SCRIPT

BLOCKING = {"serious", "critical"}


def scanning_context(browser, **options):
    """Return a browser context whose every page loads axe-core, then scans when asked.

    An init script rather than Axe.run()'s evaluate() of 500 kB per page halves the scan's time.
    bypass_csp: a strict Content-Security-Policy would refuse the injected script.
    """
    context = browser.new_context(bypass_csp=True, **options)
    context.add_init_script(AXE_SCRIPT)
    context.set_default_timeout(15_000)
    return context


def blocking_violations(page) -> list[str]:
    """Return the serious and critical violations axe-core finds on the page, one line each."""
    violations = page.evaluate("axe.run({resultTypes: ['violations']}).then(results => results.violations)")
    return [
        f"{page.url} [{v['impact']}] {v['id']}: {v['help']} — "
        + "; ".join(
            node["target"][0] if isinstance(node["target"][0], str) else str(node["target"]) for node in v["nodes"][:3]
        )
        for v in violations
        if v["impact"] in BLOCKING
    ]
