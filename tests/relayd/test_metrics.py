"""relayd's /metrics exposition: names, types, help, labels and values as Prometheus reads them."""

from prometheus_client.parser import text_string_to_metric_families

from relayd.metrics import Metrics


def families(metrics: Metrics) -> dict:
    """Return {family name: (type, help, [(sample name, labels, value), ...])} of the rendered text."""
    return {
        family.name: (family.type, family.documentation, [(s.name, s.labels, s.value) for s in family.samples])
        for family in text_string_to_metric_families(metrics.render().decode())
    }


def test_counters_and_gauges_are_exposed_with_their_labels_and_values():
    metrics = Metrics()
    metrics.inc("connections")
    metrics.inc("connections")
    metrics.inc("rcpt", verdict="refuse", rule="default_deny")
    metrics.inc("rcpt", 3, rule="trusted_network", verdict="accept")
    metrics.set("policy_serial", 7)
    metrics.gauge_from("queue_size", lambda: 12)

    exposed = families(metrics)

    assert exposed["relayd_connections"] == (
        "counter",
        "SMTP connections accepted by the listeners.",
        [("relayd_connections_total", {}, 2)],
    )
    kind, _, samples = exposed["relayd_rcpt"]
    assert kind == "counter"
    assert sorted(samples, key=lambda sample: sample[2]) == [
        ("relayd_rcpt_total", {"rule": "default_deny", "verdict": "refuse"}, 1),
        ("relayd_rcpt_total", {"rule": "trusted_network", "verdict": "accept"}, 3),
    ]
    assert exposed["relayd_policy_serial"][0::2] == ("gauge", [("relayd_policy_serial", {}, 7)])
    assert exposed["relayd_queue_size"][0::2] == ("gauge", [("relayd_queue_size", {}, 12)])


def test_label_values_are_escaped_and_unknown_names_get_a_generic_help():
    metrics = Metrics()
    holder = 'we"ird\\name\nwith a newline'
    metrics.inc("relayed_messages", kind="smtp_user", holder=holder)
    metrics.inc("xclient", result="refused")

    exposed = families(metrics)

    assert exposed["relayd_relayed_messages"][2] == [
        ("relayd_relayed_messages_total", {"holder": holder, "kind": "smtp_user"}, 1)
    ]
    assert exposed["relayd_xclient"][:2] == ("counter", "relayd xclient.")


def test_untouched_series_are_not_exposed():
    assert Metrics().render() == b""
