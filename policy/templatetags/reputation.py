"""The dashboard's blacklist card, as a tag, so the dashboard view needs no reputation code of its own."""

from django import template

from policy import reputation as checks

register = template.Library()


@register.inclusion_tag("policy/_reputation_card.html")
def reputation_card():
    return {"reputation": checks.summary()}
