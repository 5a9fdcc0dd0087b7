"""Show audit values readably: hashes shortened (the full value in a tooltip), long tokens allowed to wrap."""

import re

from django import template
from django.utils.html import format_html

register = template.Library()

# A sha256 hex digest, or the "sha256:…" fingerprint audit.fingerprint() records for secrets.
HASH = re.compile(r"^(sha256:)?[0-9a-f]{12,}$")
SHOWN = 12
# A run this long without a space would push a phone-width page sideways unless it may wrap.
LONG_TOKEN = re.compile(r"\S{24,}")


@register.filter
def audit_value(value):
    """Return a value of a change as HTML: "—" for nothing, a shortened hash, or text that wraps well."""
    if value is None or value == "":
        return "—"
    text = str(value)
    match = HASH.match(text)
    if match and len(text) - len(match.group(1) or "") > SHOWN:
        short = text[: len(match.group(1) or "") + SHOWN]
        return format_html('<code class="hash" title="{}">{}…</code>', text, short)
    if LONG_TOKEN.search(text):
        return format_html('<span class="token">{}</span>', text)
    return text
