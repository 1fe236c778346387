"""Which partitions a replica should own (docs/bus-protocol.md, "Partition ownership"): the
group's live members sorted byte-wise take the partitions in turn. No I/O."""

from __future__ import annotations

from typing import Iterable, Set

from .protocol import Partition


def assigned(members: Iterable[str], me: str, partitions: int) -> Set[Partition]:
    """Partition i of Partition.all(P) goes to sorted_members[i % n]; empty if me is no member."""
    ordered = sorted(set(members), key=lambda m: m.encode())
    if me not in ordered:
        return set()
    position = ordered.index(me)
    n = len(ordered)
    return {p for i, p in enumerate(Partition.all(partitions)) if i % n == position}
