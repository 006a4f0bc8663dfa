"""StopRequests: the first SIGTERM/SIGINT is recorded (no exit), a second Ctrl-C aborts, and the
previous handlers come back."""

import os
import signal

import pytest

from segue.train.signals import StopRequests


def test_first_signal_is_recorded_second_ctrl_c_aborts_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    with StopRequests(seen.append) as stops:
        assert not stops.requested
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before kill returns, to this thread
        assert stops.signal == signal.SIGTERM and seen == [signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)  # already stopping: ignored
        assert seen == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_request_from_code_needs_no_signal():
    stops = StopRequests()
    stops.request()
    assert stops.requested and stops.signal == -1
    stops.request(15)
    assert stops.signal == -1  # the first one stays
