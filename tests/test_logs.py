"""Logs stay bounded under hostile input: rate-limited drop summaries, repeated errors, short excerpts."""

from __future__ import annotations

import logging

import pytest

from edgeoff.ops.logs import DROP_INTERVAL_S, MAX_KEYS, DropLog, RateLimitedLog, excerpt
from edgeoff.wire import topics
from edgeoff.wire.errors import TopicError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_a_flood_of_drops_gives_one_line_per_pair_and_one_summary_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    drops = DropLog(logging.getLogger("test.drops"), "site ed", clock=clock)
    caplog.set_level(logging.INFO)
    for n in range(20_000):
        drops.drop("decode", "edgeoff/v1/sites/ed/tasks", f"bad payload {n}")
        drops.drop("topic", "edgeoff/v1/x" + "y" * 20_000, "x" * 20_000)
        clock.now += 0.005  # 100 s in all: ten intervals
    drops.flush(force=True)
    written = lines(caplog)
    intervals = 20_000 * 0.005 / DROP_INTERVAL_S
    assert len(written) <= (2 + 1) * (intervals + 1)  # two pairs and one summary per interval
    assert max(len(line) for line in written) < 1000  # the 20 kB topic and detail are cut
    summaries = [line for line in written if "more messages" in line]
    counted = sum(int(line.split("dropped ")[1].split(" ")[0]) for line in summaries)
    first_lines = len(written) - len(summaries)
    assert counted + first_lines == 40_000  # every drop is either a line of its own or counted
    assert "decode on edgeoff/v1/sites/ed/tasks x" in summaries[0]


def test_many_distinct_topics_are_summed_up_as_others(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    drops = DropLog(logging.getLogger("test.drops"), "worker", clock=clock)
    caplog.set_level(logging.INFO)
    for n in range(5000):
        drops.drop("topic", f"edgeoff/v1/junk-{n}", "not part of the contract")
    clock.now += DROP_INTERVAL_S
    drops.flush()
    written = lines(caplog)
    assert len(written) == MAX_KEYS + 1
    assert f"dropped {5000 - MAX_KEYS} more messages" in written[-1]
    assert "other on ... x" in written[-1]
    assert len(written[-1]) < 2000


def test_a_quiet_interval_writes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    drops = DropLog(logging.getLogger("test.drops"), "agent md", clock=clock)
    caplog.set_level(logging.INFO)
    drops.drop("decode", "t", "one bad message")
    clock.now += 3 * DROP_INTERVAL_S
    drops.flush()
    drops.flush()
    assert lines(caplog) == ["agent md: dropped a message on t (decode): one bad message"]


def test_a_repeated_error_is_written_once_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.errors"), clock=clock)
    caplog.set_level(logging.INFO)
    for n in range(400):  # 40 retries a second for 10 s, as a worker polling a corrupt record
        clock.now = 1000.0 + n * 0.025
        limited.log(logging.ERROR, "prediction:ed", "cannot store the prediction of %s", "ed")
    clock.now = 1000.0 + DROP_INTERVAL_S
    limited.log(logging.ERROR, "prediction:ed", "cannot store the prediction of %s", "ed")
    written = lines(caplog)
    assert len(written) == 2
    assert written[1].startswith("cannot store the prediction of ed (and 399 more like it")
    clock.now += DROP_INTERVAL_S
    limited.log(logging.ERROR, "prediction:ed", "cannot store the prediction of %s", "ed")
    limited.log(logging.ERROR, "prediction:ed", "cannot store the prediction of %s", "ed")
    clock.now += DROP_INTERVAL_S
    limited.flush()
    assert lines(caplog)[-1] == "prediction:ed: 1 more like it in the last 10 s"


def test_excerpts_and_id_errors_are_short() -> None:
    assert excerpt("abc") == "abc"
    assert excerpt("x" * 1000) == "x" * 80 + "...(+920 chars)"
    assert excerpt("a\nb") == "a\\nb"
    with pytest.raises(TopicError) as err:
        topics.validate_id("A" * 20_000, what="site id")
    assert len(str(err.value)) < 300
    with pytest.raises(TopicError) as err:
        topics.parse_topic(f"{topics.PREFIX}/sites/{'Z' * 20_000}/status")
    assert len(str(err.value)) < 300
