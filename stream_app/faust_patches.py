"""Everything hookstream changes in Faust's and aiokafka's behaviour, in one place.

Each class here subclasses a Faust class and is plugged in through a
supported setting or factory method; some override private methods. The
versions these were written against are pinned in ``pyproject.toml``, and
``tests/stream_app/test_faust_patches.py`` fails, naming the method, if a
patched method disappears or changes its signature.
"""

from __future__ import annotations

import functools
import logging

from aiokafka.partitioner import murmur2
from faust.stores import memory
from faust.tables import Table
from yarl import URL

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=65536)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` under Kafka's default (murmur2) partitioner, as producers use."""
    return (murmur2(bytes(key)) & 0x7FFFFFFF) % partitions


# --- Ownership: a worker keeps only tracks of partitions it owns --------------------------------
# Faust's memory store drops, when a rebalance has moved partitions away, only the keys it
# loaded from the changelog; keys this worker wrote itself stayed, and its idle sweep closed
# those tracks a second time (an incomplete final after the real one, issue 9 bug 2).


class OwnedMemoryStore(memory.Store):
    """The memory store, dropping after each recovery every key of a partition not assigned now.

    A key's partition is the one its changelog record went to: recorded for
    keys loaded from the changelog, and the key partitioner's for keys
    written here (the table uses ``use_partitioner=True``).
    """

    async def on_recovery_completed(self, active_tps, standby_tps) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        kept = {tp.partition for tp in active_tps} | {tp.partition for tp in standby_tps}
        n = self.table.partitions or self.app.conf.topic_partitions
        gone = [k for k in self.data
                if self._key_partition.get(k, key_partition(k, n)) not in kept]
        for k in gone:
            self.data.pop(k, None)
            self._key_partition.pop(k, None)
        if gone:
            log.info("table %s: dropped %d key(s) of partitions no longer assigned",
                     self.table.name, len(gone))


class OwnedTable(Table):
    """A table on :class:`OwnedMemoryStore` (for the ``memory://`` store)."""

    def _new_store_by_url(self, url):
        if URL(url).scheme != "memory":
            return super()._new_store_by_url(url)
        return OwnedMemoryStore(
            url, self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_serializer=self.value_serializer,
            value_type=self.value_type, loop=self.loop, options=self.options)
