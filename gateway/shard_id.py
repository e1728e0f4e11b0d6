"""Shard identity: ``[shard_id, num_shards]`` (protocol.md section 7)."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["ShardId"]


class ShardId:
    """The shard a session serves: ``number`` counts from 0 and is below ``total``.

    Guild ``g`` is served by shard ``(g >> 22) % total``. Sent in IDENTIFY as
    ``[number, total]`` (see :meth:`to_list`).
    """

    __slots__ = ("_number", "_total")

    ONE: ClassVar[ShardId]

    def __init__(self, number: int, total: int) -> None:
        if not isinstance(number, int) or not isinstance(total, int):
            raise TypeError("shard number and total must be integers")
        if total < 1:
            raise ValueError(f"shard total must be at least 1, got {total}")
        if not 0 <= number < total:
            raise ValueError(f"shard number must be in [0, {total}), got {number}")
        self._number = number
        self._total = total

    @property
    def number(self) -> int:
        """This shard's index, from 0."""
        return self._number

    @property
    def total(self) -> int:
        """How many shards the bot runs."""
        return self._total

    def to_list(self) -> list[int]:
        """The IDENTIFY form, ``[number, total]``."""
        return [self._number, self._total]

    def bucket(self, max_concurrency: int) -> int:
        """The identify rate-limit bucket, ``number % max_concurrency`` (0 when unlimited)."""
        return self._number % max_concurrency if max_concurrency > 0 else 0

    def serves_guild(self, guild_id: int) -> bool:
        """Whether guild ``guild_id`` is routed to this shard."""
        return (guild_id >> 22) % self._total == self._number

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShardId):
            return NotImplemented
        return (self._number, self._total) == (other._number, other._total)

    def __lt__(self, other: ShardId) -> bool:
        return (self._total, self._number) < (other._total, other._number)

    def __hash__(self) -> int:
        return hash((self._number, self._total))

    def __repr__(self) -> str:
        return f"ShardId({self._number}, {self._total})"

    def __str__(self) -> str:
        return f"[{self._number}, {self._total}]"


ShardId.ONE = ShardId(0, 1)
