"""Gateway intents (Discord docs: Gateway, "Gateway Intents"; protocol.md section 8)."""

from __future__ import annotations

import enum

__all__ = ["Intents"]


class Intents(enum.IntFlag):
    """The bitfield sent in IDENTIFY: which groups of events the session receives.

    ``GUILD_MEMBERS``, ``GUILD_PRESENCES`` and ``MESSAGE_CONTENT`` are privileged: they must be
    enabled in the Developer Portal, or the gateway closes with 4014.
    """

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15
    GUILD_SCHEDULED_EVENTS = 1 << 16
    AUTO_MODERATION_CONFIGURATION = 1 << 20
    AUTO_MODERATION_EXECUTION = 1 << 21
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGE_POLLS = 1 << 25

    @classmethod
    def all(cls) -> Intents:
        """Every documented intent (53608447), privileged ones included."""
        return cls(_ALL)

    @classmethod
    def privileged(cls) -> Intents:
        """The privileged intents (33026): GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT."""
        return cls.GUILD_MEMBERS | cls.GUILD_PRESENCES | cls.MESSAGE_CONTENT

    @classmethod
    def all_non_privileged(cls) -> Intents:
        """Every documented intent that needs no approval (53575421)."""
        return cls(_ALL & ~cls.privileged())

    @classmethod
    def parse(cls, text: str) -> Intents:
        """Parse ``"GUILDS,GUILD_MESSAGES"`` (names, case-insensitive) or a number.

        Raises :class:`ValueError` naming the unknown intent.
        """
        text = text.strip()
        if text.isdigit():
            value = int(text)
            if value & ~_ALL:
                raise ValueError(f"intents {value} has bits outside the documented mask {_ALL}")
            return cls(value)
        result = cls(0)
        for part in filter(None, (p.strip().upper() for p in text.split(","))):
            try:
                result |= cls[part]
            except KeyError:
                raise ValueError(f"unknown intent {part!r}") from None
        return result


_ALL = 0
for _member in Intents:
    _ALL |= _member.value
