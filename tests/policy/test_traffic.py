"""The dashboard's traffic chart: per node, from the counters in status reports, with axes and a legend."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from policy import daemons, traffic
from policy.models import RelayNodeSample

pytestmark = pytest.mark.django_db


def node_with_samples(name, samples):
    node = daemons.record_report(
        daemons.parse_report({"node": name, "serial": 1, "tls": True, "counters": {}}), "192.0.2.10"
    )
    RelayNodeSample.objects.filter(node=node).delete()
    now = timezone.now()
    for minutes_ago, accepted, denied in samples:
        RelayNodeSample.objects.create(
            node=node, at=now - timedelta(minutes=minutes_ago), accepted=accepted, relay_denied=denied
        )
    return node


def test_counts_increases_per_node_and_survives_restarts():
    # 10→25 (+15), restart to 3 (+3), 3→8 (+5); the first sample is the baseline.
    node_with_samples("mx1", [(50, 10, 1), (30, 25, 4), (20, 3, 0), (5, 8, 2)])
    node_with_samples("mx2", [(40, 100, 100), (10, 101, 150)])
    chart = traffic.traffic_chart()
    assert [(s.name, s.total_accepted, s.total_denied) for s in chart.series] == [("mx1", 23, 5), ("mx2", 1, 50)]
    assert chart.totals == (24, 55)
    assert chart.buckets == 36 and all(len(s.accepted) == 36 for s in chart.series)
    assert len({s.color for s in chart.series}) == 2


def test_axes_cover_the_peak_with_round_ticks_and_hourly_labels():
    node_with_samples("mx1", [(50, 0, 0), (30, 37, 0)])
    chart = traffic.traffic_chart()
    assert chart.y_max >= 37
    assert [value for _, value in chart.y_ticks] == [0, 10, 20, 30, 40]
    labels = [label for _, label in chart.x_ticks]
    assert 5 <= len(labels) <= 6 and all(re.fullmatch(r"\d\d:00", label) for label in labels)
    # Every point lies inside the plot area.
    for line in chart.lines:
        for point in line.points.split():
            x, y = map(float, point.split(","))
            assert chart.left <= x <= chart.plot_right and chart.top <= y <= chart.plot_bottom


def test_nice_steps():
    assert [traffic.nice_step(raw) for raw in (0.3, 1, 1.5, 3, 7, 11, 240)] == [1, 1, 2, 5, 10, 20, 500]


def test_dashboard_draws_a_line_per_node_and_kind_with_a_legend(viewer_client):
    node_with_samples("mx1", [(50, 0, 0), (30, 12, 3)])
    page = viewer_client.get("/").content.decode()
    assert page.count('class="series"') == 1 and page.count('class="series dashed"') == 1
    assert "<title>mx1 accepted</title>" in page and "<title>mx1 relay denied</title>" in page
    assert re.search(r"mx1</span>: 12 accepted \(solid\), 3 relay denied \(dashed\)", page)
    assert "Attempts per 10 minutes, last 6 hours" in page
    assert "No traffic yet" not in page


def test_dashboard_says_no_traffic_yet_instead_of_an_empty_chart(viewer_client):
    node_with_samples("mx1", [(50, 5, 5), (30, 5, 5)])
    page = viewer_client.get("/").content.decode()
    assert "No traffic yet" in page
    assert "<polyline" not in page
