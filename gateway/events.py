"""Event names and event-type filters.

Every dispatch name of API v10 (Discord docs, "Receive Events"), the gateway-level
events a shard surfaces (as twilight does), :class:`EventTypeFlags` with one bit per
event type, and the intent each event belongs to.

The member lists are written out (not built at run time) so type checkers see them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple

from .intents import Intents

__all__ = ["Event", "EventType", "EventTypeFlags", "INTENT_EVENTS", "ALWAYS_SENT"]


class EventType(str, enum.Enum):  # noqa: UP042 (str() keeps the enum form)
    """The type of an :class:`~gateway.Event`: a dispatch name, or a gateway-level event.

    The value of a dispatch type is its name on the wire (``t``), so
    ``EventType("MESSAGE_CREATE") is EventType.MESSAGE_CREATE``. Gateway-level types
    (``GATEWAY_*``) never appear on the wire as ``t``.
    """

    GATEWAY_HELLO = "GATEWAY_HELLO"
    GATEWAY_HEARTBEAT = "GATEWAY_HEARTBEAT"
    GATEWAY_HEARTBEAT_ACK = "GATEWAY_HEARTBEAT_ACK"
    GATEWAY_RECONNECT = "GATEWAY_RECONNECT"
    GATEWAY_INVALIDATE_SESSION = "GATEWAY_INVALIDATE_SESSION"
    GATEWAY_CLOSE = "GATEWAY_CLOSE"
    READY = "READY"
    RESUMED = "RESUMED"
    RATE_LIMITED = "RATE_LIMITED"
    APPLICATION_COMMAND_PERMISSIONS_UPDATE = "APPLICATION_COMMAND_PERMISSIONS_UPDATE"
    AUTO_MODERATION_RULE_CREATE = "AUTO_MODERATION_RULE_CREATE"
    AUTO_MODERATION_RULE_UPDATE = "AUTO_MODERATION_RULE_UPDATE"
    AUTO_MODERATION_RULE_DELETE = "AUTO_MODERATION_RULE_DELETE"
    AUTO_MODERATION_ACTION_EXECUTION = "AUTO_MODERATION_ACTION_EXECUTION"
    CHANNEL_CREATE = "CHANNEL_CREATE"
    CHANNEL_UPDATE = "CHANNEL_UPDATE"
    CHANNEL_DELETE = "CHANNEL_DELETE"
    CHANNEL_PINS_UPDATE = "CHANNEL_PINS_UPDATE"
    CHANNEL_INFO = "CHANNEL_INFO"
    VOICE_CHANNEL_STATUS_UPDATE = "VOICE_CHANNEL_STATUS_UPDATE"
    VOICE_CHANNEL_START_TIME_UPDATE = "VOICE_CHANNEL_START_TIME_UPDATE"
    THREAD_CREATE = "THREAD_CREATE"
    THREAD_UPDATE = "THREAD_UPDATE"
    THREAD_DELETE = "THREAD_DELETE"
    THREAD_LIST_SYNC = "THREAD_LIST_SYNC"
    THREAD_MEMBER_UPDATE = "THREAD_MEMBER_UPDATE"
    THREAD_MEMBERS_UPDATE = "THREAD_MEMBERS_UPDATE"
    ENTITLEMENT_CREATE = "ENTITLEMENT_CREATE"
    ENTITLEMENT_UPDATE = "ENTITLEMENT_UPDATE"
    ENTITLEMENT_DELETE = "ENTITLEMENT_DELETE"
    SUBSCRIPTION_CREATE = "SUBSCRIPTION_CREATE"
    SUBSCRIPTION_UPDATE = "SUBSCRIPTION_UPDATE"
    SUBSCRIPTION_DELETE = "SUBSCRIPTION_DELETE"
    GUILD_CREATE = "GUILD_CREATE"
    GUILD_UPDATE = "GUILD_UPDATE"
    GUILD_DELETE = "GUILD_DELETE"
    GUILD_AUDIT_LOG_ENTRY_CREATE = "GUILD_AUDIT_LOG_ENTRY_CREATE"
    GUILD_BAN_ADD = "GUILD_BAN_ADD"
    GUILD_BAN_REMOVE = "GUILD_BAN_REMOVE"
    GUILD_EMOJIS_UPDATE = "GUILD_EMOJIS_UPDATE"
    GUILD_STICKERS_UPDATE = "GUILD_STICKERS_UPDATE"
    GUILD_INTEGRATIONS_UPDATE = "GUILD_INTEGRATIONS_UPDATE"
    GUILD_MEMBER_ADD = "GUILD_MEMBER_ADD"
    GUILD_MEMBER_REMOVE = "GUILD_MEMBER_REMOVE"
    GUILD_MEMBER_UPDATE = "GUILD_MEMBER_UPDATE"
    GUILD_MEMBERS_CHUNK = "GUILD_MEMBERS_CHUNK"
    GUILD_ROLE_CREATE = "GUILD_ROLE_CREATE"
    GUILD_ROLE_UPDATE = "GUILD_ROLE_UPDATE"
    GUILD_ROLE_DELETE = "GUILD_ROLE_DELETE"
    GUILD_SCHEDULED_EVENT_CREATE = "GUILD_SCHEDULED_EVENT_CREATE"
    GUILD_SCHEDULED_EVENT_UPDATE = "GUILD_SCHEDULED_EVENT_UPDATE"
    GUILD_SCHEDULED_EVENT_DELETE = "GUILD_SCHEDULED_EVENT_DELETE"
    GUILD_SCHEDULED_EVENT_USER_ADD = "GUILD_SCHEDULED_EVENT_USER_ADD"
    GUILD_SCHEDULED_EVENT_USER_REMOVE = "GUILD_SCHEDULED_EVENT_USER_REMOVE"
    GUILD_SOUNDBOARD_SOUND_CREATE = "GUILD_SOUNDBOARD_SOUND_CREATE"
    GUILD_SOUNDBOARD_SOUND_UPDATE = "GUILD_SOUNDBOARD_SOUND_UPDATE"
    GUILD_SOUNDBOARD_SOUND_DELETE = "GUILD_SOUNDBOARD_SOUND_DELETE"
    GUILD_SOUNDBOARD_SOUNDS_UPDATE = "GUILD_SOUNDBOARD_SOUNDS_UPDATE"
    SOUNDBOARD_SOUNDS = "SOUNDBOARD_SOUNDS"
    INTEGRATION_CREATE = "INTEGRATION_CREATE"
    INTEGRATION_UPDATE = "INTEGRATION_UPDATE"
    INTEGRATION_DELETE = "INTEGRATION_DELETE"
    INTERACTION_CREATE = "INTERACTION_CREATE"
    INVITE_CREATE = "INVITE_CREATE"
    INVITE_DELETE = "INVITE_DELETE"
    MESSAGE_CREATE = "MESSAGE_CREATE"
    MESSAGE_UPDATE = "MESSAGE_UPDATE"
    MESSAGE_DELETE = "MESSAGE_DELETE"
    MESSAGE_DELETE_BULK = "MESSAGE_DELETE_BULK"
    MESSAGE_REACTION_ADD = "MESSAGE_REACTION_ADD"
    MESSAGE_REACTION_REMOVE = "MESSAGE_REACTION_REMOVE"
    MESSAGE_REACTION_REMOVE_ALL = "MESSAGE_REACTION_REMOVE_ALL"
    MESSAGE_REACTION_REMOVE_EMOJI = "MESSAGE_REACTION_REMOVE_EMOJI"
    MESSAGE_POLL_VOTE_ADD = "MESSAGE_POLL_VOTE_ADD"
    MESSAGE_POLL_VOTE_REMOVE = "MESSAGE_POLL_VOTE_REMOVE"
    PRESENCE_UPDATE = "PRESENCE_UPDATE"
    TYPING_START = "TYPING_START"
    USER_UPDATE = "USER_UPDATE"
    STAGE_INSTANCE_CREATE = "STAGE_INSTANCE_CREATE"
    STAGE_INSTANCE_UPDATE = "STAGE_INSTANCE_UPDATE"
    STAGE_INSTANCE_DELETE = "STAGE_INSTANCE_DELETE"
    VOICE_CHANNEL_EFFECT_SEND = "VOICE_CHANNEL_EFFECT_SEND"
    VOICE_STATE_UPDATE = "VOICE_STATE_UPDATE"
    VOICE_SERVER_UPDATE = "VOICE_SERVER_UPDATE"
    WEBHOOKS_UPDATE = "WEBHOOKS_UPDATE"
    #: A dispatch whose name this library does not know (new or undocumented): the
    #: event's ``name`` is the wire name and ``data`` its decoded ``d``.
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value

    @property
    def is_dispatch(self) -> bool:
        """Whether this type is a known op 0 dispatch name (not a gateway-level event, not
        :attr:`UNKNOWN`).
        """
        return not self.value.startswith("GATEWAY_") and self.value != "UNKNOWN"


class EventTypeFlags(enum.IntFlag):
    """A set of :class:`EventType` values, one bit each, for filtering what a shard decodes.

    Besides one member per event type there is one group per intent (for example
    ``EventTypeFlags.GUILD_MESSAGES``), holding every event that intent enables.
    Use :meth:`from_intents` for "everything my intents can deliver".
    """

    GATEWAY_HELLO = 1 << 0
    GATEWAY_HEARTBEAT = 1 << 1
    GATEWAY_HEARTBEAT_ACK = 1 << 2
    GATEWAY_RECONNECT = 1 << 3
    GATEWAY_INVALIDATE_SESSION = 1 << 4
    GATEWAY_CLOSE = 1 << 5
    READY = 1 << 6
    RESUMED = 1 << 7
    RATE_LIMITED = 1 << 8
    APPLICATION_COMMAND_PERMISSIONS_UPDATE = 1 << 9
    AUTO_MODERATION_RULE_CREATE = 1 << 10
    AUTO_MODERATION_RULE_UPDATE = 1 << 11
    AUTO_MODERATION_RULE_DELETE = 1 << 12
    AUTO_MODERATION_ACTION_EXECUTION = 1 << 13
    CHANNEL_CREATE = 1 << 14
    CHANNEL_UPDATE = 1 << 15
    CHANNEL_DELETE = 1 << 16
    CHANNEL_PINS_UPDATE = 1 << 17
    CHANNEL_INFO = 1 << 18
    VOICE_CHANNEL_STATUS_UPDATE = 1 << 19
    VOICE_CHANNEL_START_TIME_UPDATE = 1 << 20
    THREAD_CREATE = 1 << 21
    THREAD_UPDATE = 1 << 22
    THREAD_DELETE = 1 << 23
    THREAD_LIST_SYNC = 1 << 24
    THREAD_MEMBER_UPDATE = 1 << 25
    THREAD_MEMBERS_UPDATE = 1 << 26
    ENTITLEMENT_CREATE = 1 << 27
    ENTITLEMENT_UPDATE = 1 << 28
    ENTITLEMENT_DELETE = 1 << 29
    SUBSCRIPTION_CREATE = 1 << 30
    SUBSCRIPTION_UPDATE = 1 << 31
    SUBSCRIPTION_DELETE = 1 << 32
    GUILD_CREATE = 1 << 33
    GUILD_UPDATE = 1 << 34
    GUILD_DELETE = 1 << 35
    GUILD_AUDIT_LOG_ENTRY_CREATE = 1 << 36
    GUILD_BAN_ADD = 1 << 37
    GUILD_BAN_REMOVE = 1 << 38
    GUILD_EMOJIS_UPDATE = 1 << 39
    GUILD_STICKERS_UPDATE = 1 << 40
    GUILD_INTEGRATIONS_UPDATE = 1 << 41
    GUILD_MEMBER_ADD = 1 << 42
    GUILD_MEMBER_REMOVE = 1 << 43
    GUILD_MEMBER_UPDATE = 1 << 44
    GUILD_MEMBERS_CHUNK = 1 << 45
    GUILD_ROLE_CREATE = 1 << 46
    GUILD_ROLE_UPDATE = 1 << 47
    GUILD_ROLE_DELETE = 1 << 48
    GUILD_SCHEDULED_EVENT_CREATE = 1 << 49
    GUILD_SCHEDULED_EVENT_UPDATE = 1 << 50
    GUILD_SCHEDULED_EVENT_DELETE = 1 << 51
    GUILD_SCHEDULED_EVENT_USER_ADD = 1 << 52
    GUILD_SCHEDULED_EVENT_USER_REMOVE = 1 << 53
    GUILD_SOUNDBOARD_SOUND_CREATE = 1 << 54
    GUILD_SOUNDBOARD_SOUND_UPDATE = 1 << 55
    GUILD_SOUNDBOARD_SOUND_DELETE = 1 << 56
    GUILD_SOUNDBOARD_SOUNDS_UPDATE = 1 << 57
    SOUNDBOARD_SOUNDS = 1 << 58
    INTEGRATION_CREATE = 1 << 59
    INTEGRATION_UPDATE = 1 << 60
    INTEGRATION_DELETE = 1 << 61
    INTERACTION_CREATE = 1 << 62
    INVITE_CREATE = 1 << 63
    INVITE_DELETE = 1 << 64
    MESSAGE_CREATE = 1 << 65
    MESSAGE_UPDATE = 1 << 66
    MESSAGE_DELETE = 1 << 67
    MESSAGE_DELETE_BULK = 1 << 68
    MESSAGE_REACTION_ADD = 1 << 69
    MESSAGE_REACTION_REMOVE = 1 << 70
    MESSAGE_REACTION_REMOVE_ALL = 1 << 71
    MESSAGE_REACTION_REMOVE_EMOJI = 1 << 72
    MESSAGE_POLL_VOTE_ADD = 1 << 73
    MESSAGE_POLL_VOTE_REMOVE = 1 << 74
    PRESENCE_UPDATE = 1 << 75
    TYPING_START = 1 << 76
    USER_UPDATE = 1 << 77
    STAGE_INSTANCE_CREATE = 1 << 78
    STAGE_INSTANCE_UPDATE = 1 << 79
    STAGE_INSTANCE_DELETE = 1 << 80
    VOICE_CHANNEL_EFFECT_SEND = 1 << 81
    VOICE_STATE_UPDATE = 1 << 82
    VOICE_SERVER_UPDATE = 1 << 83
    WEBHOOKS_UPDATE = 1 << 84
    #: Dispatches with a name this library does not know (on in ``ALL`` and ``from_intents``).
    UNKNOWN = 1 << 85

    # Groups: every event a given intent enables (protocol.md section 8).
    GUILDS = (
        GUILD_CREATE
        | GUILD_UPDATE
        | GUILD_DELETE
        | GUILD_ROLE_CREATE
        | GUILD_ROLE_UPDATE
        | GUILD_ROLE_DELETE
        | CHANNEL_CREATE
        | CHANNEL_UPDATE
        | CHANNEL_DELETE
        | CHANNEL_PINS_UPDATE
        | THREAD_CREATE
        | THREAD_UPDATE
        | THREAD_DELETE
        | THREAD_LIST_SYNC
        | THREAD_MEMBER_UPDATE
        | THREAD_MEMBERS_UPDATE
        | STAGE_INSTANCE_CREATE
        | STAGE_INSTANCE_UPDATE
        | STAGE_INSTANCE_DELETE
        | VOICE_CHANNEL_STATUS_UPDATE
        | VOICE_CHANNEL_START_TIME_UPDATE
    )
    GUILD_MEMBERS = (
        GUILD_MEMBER_ADD | GUILD_MEMBER_UPDATE | GUILD_MEMBER_REMOVE | THREAD_MEMBERS_UPDATE
    )
    GUILD_MODERATION = GUILD_AUDIT_LOG_ENTRY_CREATE | GUILD_BAN_ADD | GUILD_BAN_REMOVE
    GUILD_EXPRESSIONS = (
        GUILD_EMOJIS_UPDATE
        | GUILD_STICKERS_UPDATE
        | GUILD_SOUNDBOARD_SOUND_CREATE
        | GUILD_SOUNDBOARD_SOUND_UPDATE
        | GUILD_SOUNDBOARD_SOUND_DELETE
        | GUILD_SOUNDBOARD_SOUNDS_UPDATE
    )
    GUILD_INTEGRATIONS = (
        GUILD_INTEGRATIONS_UPDATE | INTEGRATION_CREATE | INTEGRATION_UPDATE | INTEGRATION_DELETE
    )
    GUILD_WEBHOOKS = WEBHOOKS_UPDATE
    GUILD_INVITES = INVITE_CREATE | INVITE_DELETE
    GUILD_VOICE_STATES = VOICE_CHANNEL_EFFECT_SEND | VOICE_STATE_UPDATE
    GUILD_PRESENCES = PRESENCE_UPDATE
    GUILD_MESSAGES = MESSAGE_CREATE | MESSAGE_UPDATE | MESSAGE_DELETE | MESSAGE_DELETE_BULK
    GUILD_MESSAGE_REACTIONS = (
        MESSAGE_REACTION_ADD
        | MESSAGE_REACTION_REMOVE
        | MESSAGE_REACTION_REMOVE_ALL
        | MESSAGE_REACTION_REMOVE_EMOJI
    )
    GUILD_MESSAGE_TYPING = TYPING_START
    DIRECT_MESSAGES = MESSAGE_CREATE | MESSAGE_UPDATE | MESSAGE_DELETE | CHANNEL_PINS_UPDATE
    DIRECT_MESSAGE_REACTIONS = (
        MESSAGE_REACTION_ADD
        | MESSAGE_REACTION_REMOVE
        | MESSAGE_REACTION_REMOVE_ALL
        | MESSAGE_REACTION_REMOVE_EMOJI
    )
    DIRECT_MESSAGE_TYPING = TYPING_START
    GUILD_SCHEDULED_EVENTS = (
        GUILD_SCHEDULED_EVENT_CREATE
        | GUILD_SCHEDULED_EVENT_UPDATE
        | GUILD_SCHEDULED_EVENT_DELETE
        | GUILD_SCHEDULED_EVENT_USER_ADD
        | GUILD_SCHEDULED_EVENT_USER_REMOVE
    )
    AUTO_MODERATION_CONFIGURATION = (
        AUTO_MODERATION_RULE_CREATE | AUTO_MODERATION_RULE_UPDATE | AUTO_MODERATION_RULE_DELETE
    )
    AUTO_MODERATION_EXECUTION = AUTO_MODERATION_ACTION_EXECUTION
    GUILD_MESSAGE_POLLS = MESSAGE_POLL_VOTE_ADD | MESSAGE_POLL_VOTE_REMOVE
    DIRECT_MESSAGE_POLLS = MESSAGE_POLL_VOTE_ADD | MESSAGE_POLL_VOTE_REMOVE
    GATEWAY = (
        GATEWAY_HELLO
        | GATEWAY_HEARTBEAT
        | GATEWAY_HEARTBEAT_ACK
        | GATEWAY_RECONNECT
        | GATEWAY_INVALIDATE_SESSION
        | GATEWAY_CLOSE
    )
    ALWAYS_SENT = (
        READY
        | RESUMED
        | RATE_LIMITED
        | APPLICATION_COMMAND_PERMISSIONS_UPDATE
        | ENTITLEMENT_CREATE
        | ENTITLEMENT_UPDATE
        | ENTITLEMENT_DELETE
        | SUBSCRIPTION_CREATE
        | SUBSCRIPTION_UPDATE
        | SUBSCRIPTION_DELETE
        | GUILD_MEMBERS_CHUNK
        | SOUNDBOARD_SOUNDS
        | CHANNEL_INFO
        | INTERACTION_CREATE
        | USER_UPDATE
        | VOICE_SERVER_UPDATE
    )
    ALL = (1 << 86) - 1

    @classmethod
    def from_event_type(cls, event_type: EventType) -> EventTypeFlags:
        """The single flag of ``event_type``."""
        return _FLAG_OF[event_type]

    @classmethod
    def from_intents(cls, intents: Intents) -> EventTypeFlags:
        """Every event a session with ``intents`` can receive, plus the gateway events."""
        flags = cls.GATEWAY | cls.ALWAYS_SENT | cls.UNKNOWN
        for intent in Intents:
            if intent in intents:
                flags |= _GROUP_OF_INTENT.get(intent, cls(0))
        return flags

    @classmethod
    def parse(cls, text: str) -> EventTypeFlags:
        """Parse ``"MESSAGE_CREATE,READY"`` (event names, case-insensitive).

        Raises :class:`ValueError` naming the unknown event.
        """
        result = cls(0)
        for part in filter(None, (p.strip().upper() for p in text.split(","))):
            try:
                result |= _FLAG_OF[EventType(part)]
            except ValueError:
                raise ValueError(f"unknown event type {part!r}") from None
        return result

    def __contains__(self, other: object) -> bool:
        if isinstance(other, EventType):
            other = _FLAG_OF[other]
        if not isinstance(other, EventTypeFlags):
            return False
        return other.value & self.value == other.value


_FLAG_OF: dict[EventType, EventTypeFlags] = {
    event_type: EventTypeFlags[event_type.name] for event_type in EventType
}

_GROUP_OF_INTENT: dict[Intents, EventTypeFlags] = {
    intent: EventTypeFlags[intent.name]
    for intent in Intents
    if intent.name is not None and intent.name in EventTypeFlags.__members__
}

#: The dispatch names each intent enables (an event may belong to several intents:
#: MESSAGE_CREATE needs GUILD_MESSAGES in guilds and DIRECT_MESSAGES in DMs).
INTENT_EVENTS: Mapping[Intents, frozenset[EventType]] = {
    intent: frozenset(t for t in EventType if t.is_dispatch and _FLAG_OF[t] & group)
    for intent, group in _GROUP_OF_INTENT.items()
}

#: Dispatches sent whatever the intents.
ALWAYS_SENT: frozenset[EventType] = frozenset(
    t for t in EventType if t.is_dispatch and _FLAG_OF[t] & EventTypeFlags.ALWAYS_SENT
)


class _EventFields(NamedTuple):
    type: EventType | None
    data: Any
    sequence: int | None
    name: str | None


class Event(_EventFields):
    """One event from the gateway: ``type``, ``sequence`` (dispatches) and decoded ``data``.

    ``name`` is the raw dispatch name (``t``); for an event name this library does not know,
    ``type`` is :attr:`EventType.UNKNOWN` and ``name`` says what it was. Immutable (a named
    tuple: cheap to make on the hot path).
    """

    __slots__ = ()

    def __new__(
        cls, type: EventType | None, data: Any = None, sequence: int | None = None,
        name: str | None = None,
    ) -> Event:  # fmt: skip
        name = name if name is not None else (type.value if type else None)
        return tuple.__new__(cls, (type, data, sequence, name))

    def __repr__(self) -> str:
        return f"Event({self.name}, sequence={self.sequence})"
