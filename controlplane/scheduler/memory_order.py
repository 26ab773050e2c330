"""Schedulable nodes in (free memory, id) order, kept in blocks that know the largest
free CPU, host ports and disk among their nodes, so that a search skips every block
whose nodes cannot hold a request: a node with memory to spare but no CPU left is
not looked at again for each replica. The answers are those of a scan of the whole
order; only the work differs."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from controlplane.scheduler.model import PlacementRequest
from controlplane.scheduler.node_state import NodeState

BLOCK = 16  # nodes per block; a block splits at twice this
_Entry = tuple[int, str, NodeState]  # (free memory, node id, state): unique by id


class _Block:
    """Consecutive entries, with upper bounds of their free CPU, ports and disk."""

    __slots__ = ("entries", "max_cpu", "max_disk", "max_ports")

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.max_cpu = self.max_ports = self.max_disk = 0
        self.refresh()

    def refresh(self) -> None:
        """Recompute the maxima from every entry."""
        cpu = ports = disk = -1
        for _, _, state in self.entries:
            cpu = max(cpu, state.free_cpu)
            ports = max(ports, state.ports.free)
            disk = max(disk, state.free_disk)
        self.max_cpu, self.max_ports, self.max_disk = cpu, ports, disk

    def include(self, state: NodeState) -> None:
        """Raise the maxima to take in `state` (just added)."""
        self.max_cpu = max(self.max_cpu, state.free_cpu)
        self.max_ports = max(self.max_ports, state.ports.free)
        self.max_disk = max(self.max_disk, state.free_disk)

    def may_fit(self, request: PlacementRequest) -> bool:
        """False only when no node of the block has the CPU, ports or disk `request`
        needs (the maxima are upper bounds, so True may still find nothing)."""
        return (
            self.max_cpu >= request.cpu_millis
            and self.max_ports >= request.port_count
            and (not request.disk_bytes or self.max_disk >= request.disk_bytes)
        )


class MemoryOrder:
    """The nodes by (free memory, id). A state's key must not change while it is in
    the order: :meth:`remove` it, change it, :meth:`add` it again."""

    def __init__(self, states: Iterable[NodeState]) -> None:
        entries = sorted((s.free_memory, s.node.id, s) for s in states)
        self._blocks = [_Block(entries[i : i + BLOCK]) for i in range(0, len(entries), BLOCK)]
        self._firsts = [block.entries[0][:2] for block in self._blocks]

    def _block_of(self, key: tuple[int, str]) -> int:
        return max(0, bisect.bisect_right(self._firsts, key) - 1)

    def remove(self, state: NodeState) -> None:
        """Take `state` out (at the key it has now)."""
        key = (state.free_memory, state.node.id)
        index = self._block_of(key)
        block = self._blocks[index]
        position = bisect.bisect_left(block.entries, key)
        del block.entries[position]
        if not block.entries:
            del self._blocks[index], self._firsts[index]
            return
        self._firsts[index] = block.entries[0][:2]
        # The maxima may now be too high: harmless, they only bound what the block can
        # hold; a search that finds nothing in the block makes them exact again.

    def add(self, state: NodeState) -> None:
        """Put `state` in at its current key."""
        entry = (state.free_memory, state.node.id, state)
        if not self._blocks:
            self._blocks.append(_Block([entry]))
            self._firsts.append(entry[:2])
            return
        index = self._block_of(entry[:2])
        block = self._blocks[index]
        bisect.insort(block.entries, entry)
        block.include(state)
        self._firsts[index] = block.entries[0][:2]
        if len(block.entries) > 2 * BLOCK:
            upper = _Block(block.entries[BLOCK:])
            del block.entries[BLOCK:]
            block.refresh()
            self._blocks.insert(index + 1, upper)
            self._firsts.insert(index + 1, upper.entries[0][:2])

    def first_fit(self, request: PlacementRequest) -> NodeState | None:
        """The node with the least free memory (then the smallest id) that fits."""
        key = (request.memory_bytes, "")
        first = self._block_of(key)
        for index in range(first, len(self._blocks)):
            block = self._blocks[index]
            if not block.may_fit(request):
                continue
            entries = block.entries
            start = bisect.bisect_left(entries, key) if index == first else 0
            for position in range(start, len(entries)):
                state = entries[position][2]
                if state.fits(request):
                    return state
            if start == 0:  # the whole block was looked at: make its bounds exact
                block.refresh()
        return None

    def descending(self, request: PlacementRequest) -> Iterator[NodeState]:
        """Nodes from the most free memory down, leaving out blocks that cannot fit
        `request` (the nodes yielded may still not fit: check each)."""
        for block in reversed(self._blocks):
            if block.may_fit(request):
                for entry in reversed(block.entries):
                    yield entry[2]

    def ascending_ids(self) -> Iterator[str]:
        """Every node id, least free memory first."""
        return (entry[1] for block in self._blocks for entry in block.entries)
