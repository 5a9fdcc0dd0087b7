"""A finished SMTP session is freed by reference counting, leaving nothing for the cyclic garbage collector."""

import gc
import time

from relayd.session import RelaySession
from tests.relayd.conftest import policy, send


def live_sessions() -> int:
    # type(), not isinstance(): isinstance() asks a weak proxy among the objects for its referent's
    # class, and raises ReferenceError once that referent is gone.
    return sum(issubclass(type(thing), RelaySession) for thing in gc.get_objects())


def test_finished_sessions_leave_no_reference_cycles(start_relay):
    relay = start_relay(policy())
    gc.collect()
    gc.disable()  # a session caught in a cycle now stays until the collection below
    try:
        with relay.smtp() as client:
            assert send(client, "alice@client.test", "<bob@remote.test>")[0][0] == 550
            assert send(client, "alice@client.test", "<bob@example.com>")[1][0] == 250
        deadline = time.monotonic() + 10
        while live_sessions() and time.monotonic() < deadline:
            time.sleep(0.05)  # the session ends on the relay's thread once it has read QUIT
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        cyclic = [thing for thing in gc.garbage if isinstance(thing, RelaySession)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cyclic == []
