"""An unreachable Redis is logged once when it goes and once when it is back, per kind of write."""

from __future__ import annotations

import logging
import threading

from redis.exceptions import ConnectionError as RedisConnectionError

from inference.outages import OutageLog


def test_an_outage_is_one_warning_and_one_line_when_it_is_over(caplog):
    """Tried: 200 failed writes from 4 threads at once (a worker's generation threads), then two good ones, then
    a second outage. Each outage gives one warning and one info line with the count of failed writes."""
    outage = OutageLog("publishing battle frames")
    caplog.set_level(logging.INFO, logger="inference.outages")
    threads = [threading.Thread(target=lambda: [outage.failed(RedisConnectionError("refused")) for _ in range(50)])
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outage.ok()
    outage.ok()
    outage.failed(TimeoutError("timed out"))
    outage.ok()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO", "WARNING", "INFO"], lines
    assert "Redis unreachable for publishing battle frames (ConnectionError: refused)" in lines[0][1]
    assert "failed writes meanwhile: 200" in lines[1][1]
    assert "failed writes meanwhile: 1" in lines[3][1]
    assert not any(r.exc_info for r in caplog.records), "no traceback"
