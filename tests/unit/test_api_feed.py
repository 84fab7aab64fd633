"""The change feed: thread-safe publishing, scope filtering at publish time, bounded
per-client queues (a slow client is dropped, never waited for), Last-Event-ID replay."""

from __future__ import annotations

import asyncio
import threading

from ops_center.feed import Feed


def test_feed_filters_by_scope_and_delivers_from_other_threads() -> None:
    feed = Feed(queue_max=10_000)

    async def scenario() -> tuple[list[str | None], list[str | None]]:
        tn, _ = feed.subscribe(lambda site: site == "thong-nhat")
        everyone, _ = feed.subscribe(lambda site: True)
        threads = [
            threading.Thread(
                target=lambda i=i: [
                    feed.publish("alert", s, {"i": i}) for s in ("thong-nhat", "quang-trung", None)
                ]
            )
            for i in range(20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got_tn: list[str | None] = []
        got_all: list[str | None] = []
        while len(got_all) < 60:
            batch = await everyone.next_batch(1.0)
            assert batch is not None
            got_all += [e.site for e in batch]
        while len(got_tn) < 20:
            batch = await tn.next_batch(1.0)
            assert batch
            got_tn += [e.site for e in batch]
        assert await tn.next_batch(0.05) == []
        return got_tn, got_all

    got_tn, got_all = asyncio.run(scenario())
    assert set(got_tn) == {"thong-nhat"} and len(got_tn) == 20
    assert len(got_all) == 60
    assert feed.stats.published == 60


def test_a_slow_client_is_dropped_and_the_others_keep_receiving() -> None:
    feed = Feed(queue_max=5)

    async def scenario() -> None:
        slow, _ = feed.subscribe(lambda s: True)
        fast, _ = feed.subscribe(lambda s: True)
        for i in range(20):
            feed.publish("kpi", "thong-nhat", {"i": i})
            batch = await fast.next_batch(0.1)
            assert batch is not None and [e.data["i"] for e in batch] == [i]
        assert await slow.next_batch(0.1) is None  # dropped
        assert feed.stats.dropped_clients == 1 and feed.stats.subscribers == 1
        slow.close()
        fast.close()
        assert feed.stats.subscribers == 0

    asyncio.run(scenario())


def test_last_event_id_replays_the_ring_or_asks_for_a_resync() -> None:
    feed = Feed(ring_size=4)
    events = [feed.publish("incident", "thong-nhat" if i % 2 else "an-xa", {"i": i}) for i in range(6)]

    async def scenario() -> None:
        _, replay = feed.subscribe(lambda s: s == "thong-nhat", events[3].id)
        assert [e.data["i"] for e in replay.events] == [5] and not replay.resync
        _, replay = feed.subscribe(lambda s: True, events[0].id)  # older than the ring
        assert replay.resync
        _, replay = feed.subscribe(lambda s: True, "other-boot-3")
        assert replay.resync
        _, replay = feed.subscribe(lambda s: True, events[-1].id)
        assert replay.events == [] and not replay.resync

    asyncio.run(scenario())
