"""Per-client limits (keys, AUTH tarpit, greeting passes) and log lines that client text cannot forge."""

import asyncio
import logging

from relayd.limits import AuthThrottle, GreetPasses, client_key
from relayd.logs import LogfmtFormatter, Repeats, TurnFlushingHandler, kv
from relayd.matcher import parse_address


def test_clients_are_keyed_by_ipv4_address_and_ipv6_64():
    assert client_key(parse_address("::ffff:192.0.2.7")) == "192.0.2.7"
    assert client_key(parse_address("2001:db8:1:2:aaaa::1")) == client_key(parse_address("2001:db8:1:2::ffff"))
    assert client_key(parse_address("2001:db8:1:2::1")) == "2001:db8:1:2::/64"
    assert client_key(parse_address("2001:db8:1:3::1")) != client_key(parse_address("2001:db8:1:2::1"))


def test_auth_failures_are_free_then_doubling_then_refused_until_the_window_passes():
    now = [0.0]
    throttle = AuthThrottle(slow_after=2, refuse_after=5, delay=1.0, window=60, clock=lambda: now[0])
    assert [throttle.fail("c") for _ in range(4)] == [0.0, 0.0, 1.0, 2.0]
    assert not throttle.refused("c")
    assert throttle.fail("c") == 4.0 and throttle.refused("c") and not throttle.refused("other")
    now[0] = 61
    assert not throttle.refused("c") and throttle.fail("c") == 0.0


def test_greeting_passes_expire_and_are_bounded():
    now = [0.0]
    passes = GreetPasses(ttl=10, capacity=2, clock=lambda: now[0])
    for key in ("a", "b", "c"):
        passes.remember(key)
    assert not passes.passed("a") and passes.passed("b") and passes.passed("c")
    now[0] = 11
    assert not passes.passed("b")


def test_client_text_cannot_forge_log_fields():
    line = kv(event="rcpt", helo='evil verdict=accept "x"', recipient="<bob@example.com>", auth_user=None)
    assert line == r'event=rcpt helo="evil verdict=accept \"x\"" recipient=<bob@example.com> auth_user=-'
    record = logging.LogRecord("relayd", logging.INFO, __file__, 1, "two\nlines", None, None)
    formatted = LogfmtFormatter().format(record)
    assert "\n" not in formatted and formatted.endswith('logger=relayd msg="two\\nlines"')


def test_repeated_failures_are_logged_once_a_window_with_a_count(caplog):
    now = [0.0]
    limited = Repeats(window=60, clock=lambda: now[0])
    logger = logging.getLogger("relayd.test")
    caplog.set_level(logging.INFO, logger="relayd.test")
    for second in range(0, 130):
        now[0] = float(second)
        limited.log(logger, logging.ERROR, "disk", event="spool_error", error="No space left on device")
    limited.log(logger, logging.ERROR, "other", event="tls_failed")
    assert [record.getMessage() for record in caplog.records] == [
        'event=spool_error error="No space left on device"',
        'event=spool_error error="No space left on device" repeats="59 more in the last minute"',
        'event=spool_error error="No space left on device" repeats="59 more in the last minute"',
        "event=tls_failed",
    ]


def test_log_lines_written_on_the_event_loop_are_out_by_the_end_of_its_turn(tmp_path):
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        handler = TurnFlushingHandler(stream.fileno())

        async def on_the_loop() -> tuple[str, str]:
            handler.handle(logging.LogRecord("relayd", logging.INFO, __file__, 1, "first", None, None))
            handler.handle(logging.LogRecord("relayd", logging.INFO, __file__, 1, "second", None, None))
            during = path.read_text()  # one write for the turn's lines, at its end
            await asyncio.sleep(0)
            return during, path.read_text()

        assert asyncio.run(on_the_loop()) == ("", "first\nsecond\n")
        handler.handle(logging.LogRecord("relayd", logging.INFO, __file__, 1, "off the loop", None, None))
        assert path.read_text() == "first\nsecond\noff the loop\n"
