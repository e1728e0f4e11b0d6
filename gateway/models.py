"""Typed events: :class:`msgspec.Struct` models that ``event.data`` can be decoded into.

Optional (``pip install 'gateway[msgspec]'``, also in ``fast``): importing this module needs
msgspec; the rest of the library never imports it unless :attr:`Config.models
<gateway.Config.models>` names a model. Choose per event type what ``event.data`` is::

    from gateway import Config, EventType
    from gateway.models import DEFAULT, MessageCreate

    Config(token, intents, models=DEFAULT)  # every shipped model
    Config(token, intents, models={EventType.MESSAGE_CREATE: MessageCreate})

or your own, slimmer :class:`msgspec.Struct`: the decoder builds only the fields a model
declares and skips the rest of the payload without building it, which is where the speed
comes from (``tools/bench_models.py``)::

    class Message(msgspec.Struct):
        id: int
        channel_id: int
        content: str

Event types a bot does not name keep today's ``dict``; ``next_message()`` stays raw.

Why these choices:

- The payload is decoded in one msgspec call, when the event is taken (as the ``dict`` path
  does): the decoder's type is ``Envelope[Model]``, an envelope that declares only ``d``, so
  msgspec skips ``op``/``s``/``t`` (the shard scanned those already) and validates ``d``
  while it builds it.
- Snowflakes are ``int`` (:data:`Snowflake`). Discord sends them as JSON strings, so the
  decoders run with ``strict=False`` (msgspec's documented lax mode: a string of digits
  decodes into an ``int`` field; it also accepts ``"true"``/``"false"`` for a ``bool`` and a
  number for a ``float``, nothing else). Its cost is measured in ``docs/benchmarks.md``.
  Timestamps stay ISO 8601 strings (:data:`Timestamp`): parsing them is the bot's choice.
- Unknown fields are ignored (msgspec's default), so new Discord fields never break
  decoding. A field Discord may leave out, or send as null, is ``... | None`` with the
  default None (absent and null read the same); a documented, non-nullable field is
  required, and a payload without it is bad data: a :class:`msgspec.ValidationError` (a
  ``ValueError``), which the shard turns into a
  :class:`~gateway.ReceiveMessageError` (``DESERIALIZING``) and a resume, like bad JSON. The
  role tag flags that Discord sends as ``null`` when true are :data:`msgspec.UNSET` when
  absent.
- The decode keeps the :mod:`gateway.codec` contract for what it builds: malformed JSON,
  ``NaN``/``Infinity``, a lone surrogate, invalid UTF-8 in a decoded string and nesting
  past msgspec's depth limit (its ``RecursionError``, turned into a ``ValueError`` by the
  Dispatcher) are all ``ValueError``. What a model does not declare is skipped without
  being built, so invalid UTF-8 inside a skipped string is not looked at (nothing of it
  reaches the bot).
- Models are frozen (immutable, like ``Event``) and ``gc=False``: decoded JSON cannot hold
  a reference cycle, and untracked objects are cheaper to create and to collect.
- READY takes a model too (``{EventType.READY: Ready}``, in :data:`DEFAULT`):
  :class:`~gateway.ShardProtocol` reads its session fields from the ``dict`` first, and the
  event is converted to the model when it is taken (once per session). RESUMED (``d`` is
  ``null``) and UNKNOWN have none.

Fields and names follow Discord's documentation (API v10), as :mod:`gateway.payloads` does
for the ``TypedDict`` view of the same payloads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeAlias, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from .events import EventType

__all__ = [
    "DEFAULT",
    "Activity",
    "ActivityTimestamps",
    "Attachment",
    "AvatarDecorationData",
    "Channel",
    "ClientStatus",
    "Embed",
    "Emoji",
    "Envelope",
    "Guild",
    "GuildCreate",
    "GuildDelete",
    "GuildMember",
    "GuildMemberAdd",
    "GuildMemberRemove",
    "GuildMemberUpdate",
    "GuildMembersChunk",
    "GuildRoleCreate",
    "GuildRoleDelete",
    "Interaction",
    "InteractionData",
    "Message",
    "MessageCreate",
    "MessageDelete",
    "MessageDeleteBulk",
    "MessageReactionAdd",
    "MessageReference",
    "MessageUpdate",
    "Overwrite",
    "PartialEmoji",
    "PartialUser",
    "Presence",
    "PresenceUpdate",
    "RateLimitMeta",
    "RateLimited",
    "Reaction",
    "Ready",
    "ReadyApplication",
    "Role",
    "RoleColors",
    "RoleTags",
    "Models",
    "Snowflake",
    "StructType",
    "SoundboardSound",
    "StageInstance",
    "Sticker",
    "ThreadMember",
    "ThreadMetadata",
    "Timestamp",
    "TypingStart",
    "UnavailableGuild",
    "User",
    "VoiceServerUpdate",
    "VoiceState",
    "decoder",
    "converter",
    "decoders",
    "check_models",
]

#: A Discord id: sent as a JSON string of digits, decoded into an ``int``.
Snowflake = int
#: An ISO 8601 timestamp string, e.g. ``"2017-07-11T17:27:07.299000+00:00"``.
Timestamp = str


#: A model: a :class:`msgspec.Struct` subclass (the values of ``Config.models``). An alias
#: so that the documentation does not show a bare ``type``, which the models' own ``type``
#: fields make ambiguous there.
StructType: TypeAlias = type[msgspec.Struct]
#: What ``Config.models`` holds: a model per event type (an alias, for the same reason).
Models: TypeAlias = Mapping[EventType, StructType]


class _Model(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """The base of the shipped models: keyword-only, immutable, not tracked by the GC."""


# ---- shared objects ---------------------------------------------------------------------------


class AvatarDecorationData(_Model, kw_only=True, frozen=True):
    """User > Avatar Decoration Data Object."""

    asset: str
    sku_id: Snowflake


class User(_Model, kw_only=True, frozen=True):
    """User > User Object (``email`` and ``verified`` only with the ``email`` scope)."""

    id: Snowflake
    username: str
    discriminator: str
    global_name: str | None = None
    avatar: str | None = None
    bot: bool | None = None
    system: bool | None = None
    mfa_enabled: bool | None = None
    banner: str | None = None
    accent_color: int | None = None
    locale: str | None = None
    verified: bool | None = None
    email: str | None = None
    flags: int | None = None
    premium_type: int | None = None
    public_flags: int | None = None
    avatar_decoration_data: AvatarDecorationData | None = None


class PartialUser(_Model, kw_only=True, frozen=True):
    """A user that may carry only its ``id`` (PRESENCE_UPDATE): every other field optional."""

    id: Snowflake
    username: str | None = None
    discriminator: str | None = None
    global_name: str | None = None
    avatar: str | None = None
    bot: bool | None = None
    public_flags: int | None = None


class GuildMember(_Model, kw_only=True, frozen=True):
    """Guild > Guild Member Object.

    ``user`` is absent from the member inside MESSAGE_CREATE / MESSAGE_UPDATE (the author
    is the message's ``author``).
    """

    user: User | None = None
    nick: str | None = None
    avatar: str | None = None
    banner: str | None = None
    roles: list[Snowflake]
    joined_at: Timestamp | None = None
    premium_since: Timestamp | None = None
    deaf: bool
    mute: bool
    flags: int
    pending: bool | None = None
    permissions: str | None = None
    communication_disabled_until: Timestamp | None = None
    avatar_decoration_data: AvatarDecorationData | None = None


class RoleColors(_Model, kw_only=True, frozen=True):
    """Permissions > Role Colors Object."""

    primary_color: int
    secondary_color: int | None = None
    tertiary_color: int | None = None


class RoleTags(_Model, kw_only=True, frozen=True):
    """Permissions > Role Tags Structure (the flags are ``null`` when true)."""

    bot_id: Snowflake | None = None
    integration_id: Snowflake | None = None
    premium_subscriber: UnsetType | None = UNSET
    subscription_listing_id: Snowflake | None = None
    available_for_purchase: UnsetType | None = UNSET
    guild_connections: UnsetType | None = UNSET


class Role(_Model, kw_only=True, frozen=True):
    """Permissions > Role Object (``permissions`` is a bit set as a decimal string)."""

    id: Snowflake
    name: str
    color: int
    colors: RoleColors
    hoist: bool
    icon: str | None = None
    unicode_emoji: str | None = None
    position: int
    permissions: str
    managed: bool
    mentionable: bool
    tags: RoleTags | None = None
    flags: int


class Emoji(_Model, kw_only=True, frozen=True):
    """Emoji > Emoji Object (``id`` is None and ``name`` the character for a standard emoji)."""

    id: Snowflake | None = None
    name: str | None = None
    roles: list[Snowflake] | None = None
    user: User | None = None
    require_colons: bool | None = None
    managed: bool | None = None
    animated: bool | None = None
    available: bool | None = None


class PartialEmoji(_Model, kw_only=True, frozen=True):
    """An emoji as reactions carry it: ``id``, ``name`` and maybe ``animated``."""

    id: Snowflake | None = None
    name: str | None = None
    animated: bool | None = None


class Overwrite(_Model, kw_only=True, frozen=True):
    """Channel > Overwrite Object (``type`` 0 role, 1 member)."""

    id: Snowflake
    type: int
    allow: str
    deny: str


class ThreadMetadata(_Model, kw_only=True, frozen=True):
    """Channel > Thread Metadata Object."""

    archived: bool
    auto_archive_duration: int
    archive_timestamp: Timestamp
    locked: bool
    invitable: bool | None = None
    create_timestamp: Timestamp | None = None


class ThreadMember(_Model, kw_only=True, frozen=True):
    """Channel > Thread Member Object."""

    id: Snowflake | None = None
    user_id: Snowflake | None = None
    join_timestamp: Timestamp
    flags: int
    member: GuildMember | None = None


class Channel(_Model, kw_only=True, frozen=True):
    """Channel > Channel Object: every field but ``id`` and ``type`` depends on the type."""

    id: Snowflake
    type: int
    guild_id: Snowflake | None = None
    position: int | None = None
    permission_overwrites: list[Overwrite] | None = None
    name: str | None = None
    topic: str | None = None
    nsfw: bool | None = None
    last_message_id: Snowflake | None = None
    bitrate: int | None = None
    user_limit: int | None = None
    rate_limit_per_user: int | None = None
    recipients: list[User] | None = None
    icon: str | None = None
    owner_id: Snowflake | None = None
    application_id: Snowflake | None = None
    managed: bool | None = None
    parent_id: Snowflake | None = None
    last_pin_timestamp: Timestamp | None = None
    rtc_region: str | None = None
    video_quality_mode: int | None = None
    message_count: int | None = None
    member_count: int | None = None
    thread_metadata: ThreadMetadata | None = None
    member: ThreadMember | None = None
    default_auto_archive_duration: int | None = None
    permissions: str | None = None
    flags: int | None = None
    total_message_sent: int | None = None
    available_tags: list[dict[str, Any]] | None = None
    applied_tags: list[Snowflake] | None = None
    default_reaction_emoji: dict[str, Any] | None = None
    default_thread_rate_limit_per_user: int | None = None
    default_sort_order: int | None = None
    default_forum_layout: int | None = None


class Attachment(_Model, kw_only=True, frozen=True):
    """Channel > Attachment Object."""

    id: Snowflake
    filename: str
    title: str | None = None
    description: str | None = None
    content_type: str | None = None
    size: int
    url: str
    proxy_url: str
    height: int | None = None
    width: int | None = None
    ephemeral: bool | None = None
    duration_secs: float | None = None
    waveform: str | None = None
    flags: int | None = None


class Embed(_Model, kw_only=True, frozen=True):
    """Channel > Embed Object (every field optional; nested objects left as dicts)."""

    title: str | None = None
    type: str | None = None
    description: str | None = None
    url: str | None = None
    timestamp: Timestamp | None = None
    color: int | None = None
    footer: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    thumbnail: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    provider: dict[str, Any] | None = None
    author: dict[str, Any] | None = None
    fields: list[dict[str, Any]] | None = None


class Reaction(_Model, kw_only=True, frozen=True):
    """Channel > Reaction Object."""

    count: int
    count_details: dict[str, int]
    me: bool
    me_burst: bool
    emoji: PartialEmoji
    burst_colors: list[str]


class MessageReference(_Model, kw_only=True, frozen=True):
    """Channel > Message Reference Structure (``type`` 0 reply, 1 forward)."""

    type: int | None = None
    message_id: Snowflake | None = None
    channel_id: Snowflake | None = None
    guild_id: Snowflake | None = None
    fail_if_not_exists: bool | None = None


class Message(_Model, kw_only=True, frozen=True):
    """Channel > Message Object.

    Without the MESSAGE_CONTENT intent, ``content``, ``embeds``, ``attachments`` and
    ``components`` arrive empty (except in DMs, mentions and the bot's own messages).
    """

    id: Snowflake
    channel_id: Snowflake
    author: User
    content: str
    timestamp: Timestamp
    edited_timestamp: Timestamp | None = None
    tts: bool
    mention_everyone: bool
    mentions: list[User]
    mention_roles: list[Snowflake]
    mention_channels: list[dict[str, Any]] | None = None
    attachments: list[Attachment]
    embeds: list[Embed]
    reactions: list[Reaction] | None = None
    nonce: int | str | None = None
    pinned: bool
    webhook_id: Snowflake | None = None
    type: int
    activity: dict[str, Any] | None = None
    application: dict[str, Any] | None = None
    application_id: Snowflake | None = None
    flags: int | None = None
    message_reference: MessageReference | None = None
    message_snapshots: list[dict[str, Any]] | None = None
    referenced_message: Message | None = None
    interaction_metadata: dict[str, Any] | None = None
    thread: Channel | None = None
    components: list[dict[str, Any]] | None = None
    sticker_items: list[dict[str, Any]] | None = None
    position: int | None = None
    role_subscription_data: dict[str, Any] | None = None
    resolved: dict[str, Any] | None = None
    poll: dict[str, Any] | None = None
    call: dict[str, Any] | None = None


class UnavailableGuild(_Model, kw_only=True, frozen=True):
    """Guild > Unavailable Guild Object (READY's guilds, outages)."""

    id: Snowflake
    unavailable: bool


class Sticker(_Model, kw_only=True, frozen=True):
    """Sticker > Sticker Object."""

    id: Snowflake
    pack_id: Snowflake | None = None
    name: str
    description: str | None = None
    tags: str
    type: int
    format_type: int
    available: bool | None = None
    guild_id: Snowflake | None = None
    user: User | None = None
    sort_value: int | None = None


class Guild(_Model, kw_only=True, frozen=True):
    """Guild > Guild Object (as the gateway sends it: no ``owner``/``permissions``)."""

    id: Snowflake
    name: str
    icon: str | None = None
    icon_hash: str | None = None
    splash: str | None = None
    discovery_splash: str | None = None
    owner_id: Snowflake
    region: str | None = None
    afk_channel_id: Snowflake | None = None
    afk_timeout: int
    widget_enabled: bool | None = None
    widget_channel_id: Snowflake | None = None
    verification_level: int
    default_message_notifications: int
    explicit_content_filter: int
    roles: list[Role]
    emojis: list[Emoji]
    features: list[str]
    mfa_level: int
    application_id: Snowflake | None = None
    system_channel_id: Snowflake | None = None
    system_channel_flags: int
    rules_channel_id: Snowflake | None = None
    max_presences: int | None = None
    max_members: int | None = None
    vanity_url_code: str | None = None
    description: str | None = None
    banner: str | None = None
    premium_tier: int
    premium_subscription_count: int | None = None
    preferred_locale: str
    public_updates_channel_id: Snowflake | None = None
    max_video_channel_users: int | None = None
    max_stage_video_channel_users: int | None = None
    approximate_member_count: int | None = None
    approximate_presence_count: int | None = None
    welcome_screen: dict[str, Any] | None = None
    nsfw_level: int
    stickers: list[Sticker] | None = None
    premium_progress_bar_enabled: bool
    safety_alerts_channel_id: Snowflake | None = None
    incidents_data: dict[str, Any] | None = None


class GuildCreate(_Model, kw_only=True, frozen=True):
    """GUILD_CREATE: an available guild (the guild plus the gateway's extra fields) or,
    rarely, an unavailable one (``unavailable`` true, only ``id``): every field but ``id``
    and ``unavailable`` is None then, so each is typed ``... | None``.
    """

    id: Snowflake
    unavailable: bool = False
    name: str | None = None
    icon: str | None = None
    icon_hash: str | None = None
    splash: str | None = None
    discovery_splash: str | None = None
    owner_id: Snowflake | None = None
    region: str | None = None
    afk_channel_id: Snowflake | None = None
    afk_timeout: int | None = None
    widget_enabled: bool | None = None
    widget_channel_id: Snowflake | None = None
    verification_level: int | None = None
    default_message_notifications: int | None = None
    explicit_content_filter: int | None = None
    roles: list[Role] | None = None
    emojis: list[Emoji] | None = None
    features: list[str] | None = None
    mfa_level: int | None = None
    application_id: Snowflake | None = None
    system_channel_id: Snowflake | None = None
    system_channel_flags: int | None = None
    rules_channel_id: Snowflake | None = None
    max_presences: int | None = None
    max_members: int | None = None
    vanity_url_code: str | None = None
    description: str | None = None
    banner: str | None = None
    premium_tier: int | None = None
    premium_subscription_count: int | None = None
    preferred_locale: str | None = None
    public_updates_channel_id: Snowflake | None = None
    max_video_channel_users: int | None = None
    max_stage_video_channel_users: int | None = None
    approximate_member_count: int | None = None
    approximate_presence_count: int | None = None
    welcome_screen: dict[str, Any] | None = None
    nsfw_level: int | None = None
    stickers: list[Sticker] | None = None
    premium_progress_bar_enabled: bool | None = None
    safety_alerts_channel_id: Snowflake | None = None
    incidents_data: dict[str, Any] | None = None
    joined_at: Timestamp | None = None
    large: bool | None = None
    member_count: int | None = None
    voice_states: list[VoiceState] | None = None
    members: list[GuildMember] | None = None
    channels: list[Channel] | None = None
    threads: list[Channel] | None = None
    presences: list[Presence] | None = None
    stage_instances: list[StageInstance] | None = None
    guild_scheduled_events: list[dict[str, Any]] | None = None
    soundboard_sounds: list[SoundboardSound] | None = None
    lazy: bool | None = None


class GuildDelete(_Model, kw_only=True, frozen=True):
    """GUILD_DELETE: ``unavailable`` true for an outage, false (absent) when the bot left."""

    id: Snowflake
    unavailable: bool = False


class VoiceState(_Model, kw_only=True, frozen=True):
    """Voice > Voice State Object (no ``guild_id`` inside GUILD_CREATE)."""

    guild_id: Snowflake | None = None
    channel_id: Snowflake | None = None
    user_id: Snowflake
    member: GuildMember | None = None
    session_id: str
    deaf: bool
    mute: bool
    self_deaf: bool
    self_mute: bool
    self_stream: bool | None = None
    self_video: bool
    suppress: bool
    request_to_speak_timestamp: Timestamp | None = None


class ClientStatus(_Model, kw_only=True, frozen=True):
    """Presence > Client Status Object: ``"online"``, ``"idle"`` or ``"dnd"`` per platform."""

    desktop: str | None = None
    mobile: str | None = None
    web: str | None = None


class ActivityTimestamps(_Model, kw_only=True, frozen=True):
    """Presence > Activity Timestamps (Unix milliseconds)."""

    start: int | None = None
    end: int | None = None


class Activity(_Model, kw_only=True, frozen=True):
    """Presence > Activity Object (``type`` 0 playing, 1 streaming, ... 5 competing)."""

    name: str
    type: int
    url: str | None = None
    created_at: int
    timestamps: ActivityTimestamps | None = None
    application_id: Snowflake | None = None
    status_display_type: int | None = None
    details: str | None = None
    details_url: str | None = None
    state: str | None = None
    state_url: str | None = None
    emoji: PartialEmoji | None = None
    party: dict[str, Any] | None = None
    assets: dict[str, str] | None = None
    secrets: dict[str, str] | None = None
    instance: bool | None = None
    flags: int | None = None
    buttons: list[str] | None = None


class Presence(_Model, kw_only=True, frozen=True):
    """A presence inside GUILD_CREATE (PRESENCE_UPDATE without ``guild_id``)."""

    user: PartialUser
    guild_id: Snowflake | None = None
    status: str
    activities: list[Activity]
    client_status: ClientStatus


class StageInstance(_Model, kw_only=True, frozen=True):
    """Stage Instance > Stage Instance Object."""

    id: Snowflake
    guild_id: Snowflake
    channel_id: Snowflake
    topic: str
    privacy_level: int
    discoverable_disabled: bool
    guild_scheduled_event_id: Snowflake | None = None


class SoundboardSound(_Model, kw_only=True, frozen=True):
    """Soundboard > Soundboard Sound Object."""

    name: str
    sound_id: Snowflake
    volume: float
    emoji_id: Snowflake | None = None
    emoji_name: str | None = None
    guild_id: Snowflake | None = None
    available: bool
    user: User | None = None


class ReadyApplication(_Model, kw_only=True, frozen=True):
    """READY's partial application: ``id`` and ``flags``."""

    id: Snowflake
    flags: int


class Ready(_Model, kw_only=True, frozen=True):
    """READY: the session, the bot user, and its guilds (unavailable until GUILD_CREATE)."""

    v: int
    user: User
    guilds: list[UnavailableGuild]
    session_id: str
    resume_gateway_url: str
    shard: list[int] | None = None
    application: ReadyApplication
    user_settings: dict[str, Any] | None = None
    session_type: str | None = None
    relationships: list[Any] | None = None
    private_channels: list[Any] | None = None
    presences: list[Any] | None = None
    guild_join_requests: list[Any] | None = None
    geo_ordered_rtc_regions: list[str] | None = None


class RateLimitMeta(_Model, kw_only=True, frozen=True):
    """RATE_LIMITED's ``meta`` for op 8 (Request Guild Members), the only limited command."""

    guild_id: Snowflake
    nonce: str | None = None


class RateLimited(_Model, kw_only=True, frozen=True):
    """RATE_LIMITED: a command (``opcode``) was not served; retry after ``retry_after`` s."""

    opcode: int
    retry_after: float
    meta: RateLimitMeta


class MessageCreate(Message, kw_only=True, frozen=True):
    """MESSAGE_CREATE: a message plus ``guild_id`` and ``member`` (in guilds).

    Each user in ``mentions`` may carry a partial ``member``. ``channel_type`` is
    undocumented but sent.
    """

    guild_id: Snowflake | None = None
    member: GuildMember | None = None
    channel_type: int | None = None


class MessageDelete(_Model, kw_only=True, frozen=True):
    """MESSAGE_DELETE."""

    id: Snowflake
    channel_id: Snowflake
    guild_id: Snowflake | None = None


class MessageDeleteBulk(_Model, kw_only=True, frozen=True):
    """MESSAGE_DELETE_BULK."""

    ids: list[Snowflake]
    channel_id: Snowflake
    guild_id: Snowflake | None = None


class MessageReactionAdd(_Model, kw_only=True, frozen=True):
    """MESSAGE_REACTION_ADD (``type`` 0 normal, 1 burst)."""

    user_id: Snowflake
    channel_id: Snowflake
    message_id: Snowflake
    guild_id: Snowflake | None = None
    member: GuildMember | None = None
    emoji: PartialEmoji
    message_author_id: Snowflake | None = None
    burst: bool
    burst_colors: list[str] | None = None
    type: int


class InteractionData(_Model, kw_only=True, frozen=True):
    """Interaction data: application commands (``id``, ``name``, ``options``...) and
    components (``custom_id``, ``component_type``, ``values``); which fields come depends
    on the interaction type.
    """

    id: Snowflake | None = None
    name: str | None = None
    type: int | None = None
    resolved: dict[str, Any] | None = None
    options: list[dict[str, Any]] | None = None
    guild_id: Snowflake | None = None
    target_id: Snowflake | None = None
    custom_id: str | None = None
    component_type: int | None = None
    values: list[str] | None = None
    components: list[dict[str, Any]] | None = None


class Interaction(_Model, kw_only=True, frozen=True):
    """Interactions > Interaction Object (``type`` 1 ping, 2 command, 3 component,
    4 autocomplete, 5 modal submit). ``member`` in guilds, ``user`` in DMs.
    """

    id: Snowflake
    application_id: Snowflake
    type: int
    data: InteractionData | None = None
    guild: dict[str, Any] | None = None
    guild_id: Snowflake | None = None
    channel: Channel | None = None
    channel_id: Snowflake | None = None
    member: GuildMember | None = None
    user: User | None = None
    token: str
    version: int
    message: Message | None = None
    app_permissions: str
    locale: str | None = None
    guild_locale: str | None = None
    entitlements: list[dict[str, Any]]
    authorizing_integration_owners: dict[str, Snowflake]
    context: int | None = None
    attachment_size_limit: int


class GuildMemberAdd(GuildMember, kw_only=True, frozen=True):
    """GUILD_MEMBER_ADD (GUILD_MEMBERS intent): the member plus ``guild_id``."""

    guild_id: Snowflake


class GuildMemberUpdate(_Model, kw_only=True, frozen=True):
    """GUILD_MEMBER_UPDATE (GUILD_MEMBERS intent)."""

    guild_id: Snowflake
    roles: list[Snowflake]
    user: User
    nick: str | None = None
    avatar: str | None = None
    banner: str | None = None
    joined_at: Timestamp | None = None
    premium_since: Timestamp | None = None
    deaf: bool | None = None
    mute: bool | None = None
    pending: bool | None = None
    communication_disabled_until: Timestamp | None = None
    flags: int | None = None
    avatar_decoration_data: AvatarDecorationData | None = None


class GuildMemberRemove(_Model, kw_only=True, frozen=True):
    """GUILD_MEMBER_REMOVE (GUILD_MEMBERS intent)."""

    guild_id: Snowflake
    user: User


class GuildMembersChunk(_Model, kw_only=True, frozen=True):
    """GUILD_MEMBERS_CHUNK: one reply chunk to :class:`~gateway.RequestGuildMembers`.

    A request is complete when chunks ``0 .. chunk_count - 1`` have all arrived; ``nonce``
    is the request's own.
    """

    guild_id: Snowflake
    members: list[GuildMember]
    chunk_index: int
    chunk_count: int
    not_found: list[Snowflake] | None = None
    presences: list[Presence] | None = None
    nonce: str | None = None


class PresenceUpdate(_Model, kw_only=True, frozen=True):
    """PRESENCE_UPDATE (GUILD_PRESENCES intent): ``user`` may hold only ``id``."""

    user: PartialUser
    guild_id: Snowflake
    status: str
    activities: list[Activity]
    client_status: ClientStatus


class TypingStart(_Model, kw_only=True, frozen=True):
    """TYPING_START (``timestamp`` in Unix seconds)."""

    channel_id: Snowflake
    guild_id: Snowflake | None = None
    user_id: Snowflake
    timestamp: int
    member: GuildMember | None = None


class VoiceServerUpdate(_Model, kw_only=True, frozen=True):
    """VOICE_SERVER_UPDATE: where to connect for voice (``endpoint`` None while reallocating)."""

    token: str
    guild_id: Snowflake
    endpoint: str | None = None


class GuildRoleCreate(_Model, kw_only=True, frozen=True):
    """GUILD_ROLE_CREATE (GUILD_ROLE_UPDATE has the same fields)."""

    guild_id: Snowflake
    role: Role


class GuildRoleDelete(_Model, kw_only=True, frozen=True):
    """GUILD_ROLE_DELETE."""

    guild_id: Snowflake
    role_id: Snowflake


#: MESSAGE_UPDATE: the same fields as MESSAGE_CREATE (the whole updated message).
MessageUpdate = MessageCreate

# ---- choosing and decoding ----------------------------------------------------------------------

#: Every shipped model by event type: ``Config(models=DEFAULT)``, or merge your own into it
#: (``{**DEFAULT, EventType.MESSAGE_CREATE: MyMessage}``).
DEFAULT: Models = MappingProxyType(
    {
        EventType.READY: Ready,
        EventType.RATE_LIMITED: RateLimited,
        EventType.GUILD_CREATE: GuildCreate,
        EventType.GUILD_UPDATE: Guild,
        EventType.GUILD_DELETE: GuildDelete,
        EventType.CHANNEL_CREATE: Channel,
        EventType.CHANNEL_UPDATE: Channel,
        EventType.CHANNEL_DELETE: Channel,
        EventType.GUILD_ROLE_CREATE: GuildRoleCreate,
        EventType.GUILD_ROLE_UPDATE: GuildRoleCreate,
        EventType.GUILD_ROLE_DELETE: GuildRoleDelete,
        EventType.GUILD_MEMBER_ADD: GuildMemberAdd,
        EventType.GUILD_MEMBER_UPDATE: GuildMemberUpdate,
        EventType.GUILD_MEMBER_REMOVE: GuildMemberRemove,
        EventType.GUILD_MEMBERS_CHUNK: GuildMembersChunk,
        EventType.MESSAGE_CREATE: MessageCreate,
        EventType.MESSAGE_UPDATE: MessageUpdate,
        EventType.MESSAGE_DELETE: MessageDelete,
        EventType.MESSAGE_DELETE_BULK: MessageDeleteBulk,
        EventType.MESSAGE_REACTION_ADD: MessageReactionAdd,
        EventType.INTERACTION_CREATE: Interaction,
        EventType.PRESENCE_UPDATE: PresenceUpdate,
        EventType.TYPING_START: TypingStart,
        EventType.VOICE_STATE_UPDATE: VoiceState,
        EventType.VOICE_SERVER_UPDATE: VoiceServerUpdate,
    }
)

T = TypeVar("T")


class Envelope(msgspec.Struct, Generic[T]):
    """A dispatch as a model's decoder reads it: only ``d``. msgspec skips the keys a struct
    does not declare without building them, and the shard has scanned ``op``/``s``/``t``.
    """

    d: T


#: The event types a model can be given: the dispatches the shard decodes when they are
#: taken (RESUMED's ``d`` is null; UNKNOWN has no shape).
_MODEL_TYPES = frozenset(t for t in EventType if t.is_dispatch) - {
    EventType.RESUMED,
    EventType.UNKNOWN,
}


def decoder(model: StructType) -> Callable[[bytes], Envelope[Any]]:
    """The decode function of dispatches whose ``d`` is ``model``: it returns the
    :class:`Envelope` (``.d`` is the model). One per model, cached (a process with a
    thousand shards builds each once; at most :data:`_DECODERS_MAX` models, then the cache
    starts over); msgspec decoders are thread-safe.
    """
    decode = _DECODERS.get(model)
    if decode is None:
        if len(_DECODERS) >= _DECODERS_MAX:
            _DECODERS.clear()
        decode = msgspec.json.Decoder(Envelope[model], strict=False).decode  # type: ignore[valid-type]
        _DECODERS[model] = decode
    return decode


_DECODERS: dict[type[Any], Callable[[bytes], Envelope[Any]]] = {}
_DECODERS_MAX = 1024


def check_models(models: object) -> Models:
    """``models`` validated, as a read-only copy (for :class:`~gateway.Config`).

    Keys must be dispatch :class:`~gateway.EventType` members other than RESUMED and
    UNKNOWN; values :class:`msgspec.Struct` subclasses msgspec can decode into (their
    decoders are built here, so a field type msgspec does not support fails now, not on
    the first event).
    """
    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a mapping, not {type(models).__name__}")
    checked: dict[EventType, type[msgspec.Struct]] = {}
    for event_type, model in models.items():
        if not isinstance(event_type, EventType):
            raise TypeError(f"models keys must be EventType, not {type(event_type).__name__}")
        if event_type not in _MODEL_TYPES:
            raise ValueError(
                f"models: {event_type.name} cannot have a model (only dispatches other than "
                "RESUMED and UNKNOWN)"
            )
        if not (isinstance(model, type) and issubclass(model, msgspec.Struct)):
            raise TypeError(f"models[{event_type.name}] must be a msgspec.Struct subclass")
        try:
            decoder(model)
        except (TypeError, NameError) as exc:  # NameError: an annotation it cannot resolve
            raise TypeError(
                f"models[{event_type.name}]: msgspec cannot decode into {model.__qualname__} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        checked[event_type] = model
    return MappingProxyType(checked)


def decoders(models: Models) -> dict[str, Callable[[bytes], Any]]:
    """The dispatcher's decoder table: dispatch name -> :func:`decoder` of its model
    (READY is not the dispatcher's: see :func:`converter`).
    """
    return {
        event_type.value: decoder(model)
        for event_type, model in models.items()
        if event_type is not EventType.READY
    }


def converter(model: StructType) -> Callable[[Any], Any]:
    """READY's: the protocol's ``dict`` to ``model``; a mismatch is a ``ValueError``."""

    def convert(data: Any) -> Any:
        try:
            return msgspec.convert(data, model, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None

    return convert
