"""Usage from the nodes' status reports: top senders of the last hour and day, and surges (issue 15)."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from policy import daemons, usage
from policy.models import RelayNode, RelayNodeSample

pytestmark = pytest.mark.django_db


def sample(node: str, minutes_ago: float, networks: dict | None = None, users: dict | None = None) -> None:
    """Store a report of cumulative usage as if it had come that long ago."""
    relay_node, _ = RelayNode.objects.get_or_create(name=node)
    RelayNodeSample.objects.create(
        node=relay_node,
        at=timezone.now() - timedelta(minutes=minutes_ago),
        usage={"trusted_networks": networks or {}, "smtp_users": users or {}},
    )


def test_reports_store_usage_and_refuse_a_malformed_one():
    body = {"node": "mx1", "serial": 1, "usage": {"trusted_networks": {"10.1.0.0/16": 4}, "smtp_users": {"alice": 1}}}
    daemons.record_report(daemons.parse_report(body), "192.0.2.10")
    assert RelayNodeSample.objects.get().usage == {"trusted_networks": {"10.1.0.0/16": 4}, "smtp_users": {"alice": 1}}
    for bad in ({"colour": {}}, {"trusted_networks": {"10.1.0.0/16": -1}}, {"smtp_users": ["alice"]}, "many"):
        with pytest.raises(ValidationError) as error:
            daemons.parse_report({"node": "mx1", "serial": 1, "usage": bad})
        assert "usage" in error.value.message_dict


def test_the_api_answers_a_malformed_usage_with_400(editor):
    from tests.api.conftest import issue_token, token_client

    api = token_client(issue_token(editor, name="relayd mx1", node="mx1", read_only=True))
    response = api.post("/api/v1/daemons/", {"node": "mx1", "serial": 1, "usage": {"smtp_users": 3}}, format="json")
    assert response.status_code == 400
    assert "usage" in response.json()


def test_top_senders_add_up_the_growth_of_every_node_and_survive_restarts():
    sample("mx1", 120, {"10.1.0.0/16": 100})
    sample("mx1", 90, {"10.1.0.0/16": 130})  # 30 in the day
    sample("mx1", 30, {"10.1.0.0/16": 5})  # restarted: 5 more, in the last hour
    sample("mx2", 50, users={"alice": 0})
    sample("mx2", 10, {"10.1.0.0/16": 7}, {"alice": 3})  # 7 and 3 in the last hour
    senders = usage.top_senders()
    assert [(s.label, s.hour, s.day) for s in senders.day] == [
        ("trusted network 10.1.0.0/16", 12, 42),
        ("SMTP user alice", 3, 3),
    ]
    assert [s.label for s in senders.hour] == ["trusted network 10.1.0.0/16", "SMTP user alice"]


def test_a_host_far_above_its_own_norm_is_flagged_even_without_a_limit():
    # A steady 2 messages an hour for a day, then 300 in the last hour: a compromised host.
    for hours_ago in range(25, 0, -1):
        sample("mx1", hours_ago * 60 + 5, {"10.1.0.0/16": 2 * (25 - hours_ago)}, {"alice": 10 * (25 - hours_ago)})
    sample("mx1", 2, {"10.1.0.0/16": 2 * 24 + 300}, {"alice": 10 * 24 + 12})
    senders = usage.top_senders()
    assert [sender.label for sender in senders.surges] == ["trusted network 10.1.0.0/16"]


def test_the_dashboard_shows_top_senders_and_flags_a_surge(viewer_client):
    sample("mx1", 50, {"10.1.0.0/16": 0})
    sample("mx1", 5, {"10.1.0.0/16": 250})
    page = viewer_client.get(reverse("policy:dashboard")).content.decode()
    assert 'id="top-senders"' in page
    assert "trusted network 10.1.0.0/16 relayed 250 messages this hour" in page
