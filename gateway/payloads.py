"""Typed payloads: what ``event.data`` holds, as :class:`~typing.TypedDict` definitions.

``event.data`` stays the plain ``dict`` the JSON decoder made; these types only tell your
editor and mypy its shape. :func:`typed` returns the event itself, typed as
:data:`AnyEvent`, a union that narrows on ``event.type``::

    from gateway.payloads import typed

    async for event in shard:
        event = typed(event)
        if event.type is EventType.MESSAGE_CREATE:
            print(event.data["content"])  # str; a misspelled key is a mypy error

Fields follow Discord's documentation (API v10, "Gateway Events" and the resource pages),
plus a few that real traffic carries and the docs do not list (marked *undocumented*).
Snowflakes are strings, timestamps ISO 8601 strings. A field that Discord may leave out is
``NotRequired``: read it with ``data.get(...)``. Events without a type here have
``data: Any``.
"""

# No ``from __future__ import annotations`` here: TypedDict needs real annotations at run
# time to tell NotRequired keys (``__required_keys__``) on Python < 3.14.
from typing import TYPE_CHECKING, Any, Generic, Literal, NotRequired, TypedDict, TypeVar, final

from .close import CloseFrame
from .events import Event, EventType

__all__ = [
    "Snowflake",
    "Timestamp",
    "User",
    "AvatarDecorationData",
    "GuildMember",
    "Role",
    "RoleColors",
    "RoleTags",
    "Emoji",
    "PartialEmoji",
    "Overwrite",
    "ThreadMetadata",
    "ThreadMember",
    "Channel",
    "Attachment",
    "Embed",
    "Reaction",
    "MessageReference",
    "Message",
    "UnavailableGuild",
    "Guild",
    "VoiceState",
    "ClientStatus",
    "ActivityTimestamps",
    "Activity",
    "Presence",
    "PartialUser",
    "StageInstance",
    "SoundboardSound",
    "Sticker",
    "Hello",
    "ReadyApplication",
    "Ready",
    "Resumed",
    "RateLimitMeta",
    "RateLimited",
    "AvailableGuildCreate",
    "GuildCreate",
    "GuildUpdate",
    "GuildDelete",
    "MessageCreate",
    "MessageUpdate",
    "MessageDelete",
    "MessageDeleteBulk",
    "MessageReactionAdd",
    "InteractionData",
    "Interaction",
    "InteractionCreate",
    "GuildMemberAdd",
    "GuildMemberUpdate",
    "GuildMemberRemove",
    "GuildMembersChunk",
    "PresenceUpdate",
    "TypingStart",
    "VoiceStateUpdate",
    "VoiceServerUpdate",
    "ChannelCreate",
    "ChannelUpdate",
    "ChannelDelete",
    "GuildRoleCreate",
    "GuildRoleUpdate",
    "GuildRoleDelete",
    "TypedEvent",
    "AnyEvent",
    "OtherEvent",
    "PAYLOAD_TYPES",
    "typed",
]

#: An id: a 64-bit integer sent as a decimal string.
Snowflake = str
#: An ISO 8601 timestamp string, e.g. ``"2017-07-11T17:27:07.299000+00:00"``.
Timestamp = str

# ---- shared objects ---------------------------------------------------------------------------


class AvatarDecorationData(TypedDict):
    """User > Avatar Decoration Data Object."""

    asset: str
    sku_id: Snowflake


class User(TypedDict):
    """User > User Object (``email`` and ``verified`` only with the ``email`` scope)."""

    id: Snowflake
    username: str
    discriminator: str
    global_name: str | None
    avatar: str | None
    bot: NotRequired[bool]
    system: NotRequired[bool]
    mfa_enabled: NotRequired[bool]
    banner: NotRequired[str | None]
    accent_color: NotRequired[int | None]
    locale: NotRequired[str]
    verified: NotRequired[bool]
    email: NotRequired[str | None]
    flags: NotRequired[int]
    premium_type: NotRequired[int]
    public_flags: NotRequired[int]
    avatar_decoration_data: NotRequired[AvatarDecorationData | None]


class PartialUser(TypedDict):
    """A user that may carry only its ``id`` (PRESENCE_UPDATE): every other field optional."""

    id: Snowflake
    username: NotRequired[str]
    discriminator: NotRequired[str]
    global_name: NotRequired[str | None]
    avatar: NotRequired[str | None]
    bot: NotRequired[bool]
    public_flags: NotRequired[int]


class GuildMember(TypedDict):
    """Guild > Guild Member Object.

    ``user`` is absent from the member inside MESSAGE_CREATE / MESSAGE_UPDATE (the author
    is the message's ``author``).
    """

    user: NotRequired[User]
    nick: NotRequired[str | None]
    avatar: NotRequired[str | None]
    banner: NotRequired[str | None]
    roles: list[Snowflake]
    joined_at: Timestamp | None
    premium_since: NotRequired[Timestamp | None]
    deaf: bool
    mute: bool
    flags: int
    pending: NotRequired[bool]
    permissions: NotRequired[str]
    communication_disabled_until: NotRequired[Timestamp | None]
    avatar_decoration_data: NotRequired[AvatarDecorationData | None]


class RoleColors(TypedDict):
    """Permissions > Role Colors Object."""

    primary_color: int
    secondary_color: int | None
    tertiary_color: int | None


class RoleTags(TypedDict, total=False):
    """Permissions > Role Tags Structure (the flags are ``null`` when true)."""

    bot_id: Snowflake
    integration_id: Snowflake
    premium_subscriber: None
    subscription_listing_id: Snowflake
    available_for_purchase: None
    guild_connections: None


class Role(TypedDict):
    """Permissions > Role Object (``permissions`` is a bit set as a decimal string)."""

    id: Snowflake
    name: str
    color: int
    colors: RoleColors
    hoist: bool
    icon: NotRequired[str | None]
    unicode_emoji: NotRequired[str | None]
    position: int
    permissions: str
    managed: bool
    mentionable: bool
    tags: NotRequired[RoleTags]
    flags: int


class Emoji(TypedDict):
    """Emoji > Emoji Object (``id`` is None and ``name`` the character for a standard emoji)."""

    id: Snowflake | None
    name: str | None
    roles: NotRequired[list[Snowflake]]
    user: NotRequired[User]
    require_colons: NotRequired[bool]
    managed: NotRequired[bool]
    animated: NotRequired[bool]
    available: NotRequired[bool]


class PartialEmoji(TypedDict):
    """An emoji as reactions carry it: ``id``, ``name`` and maybe ``animated``."""

    id: Snowflake | None
    name: str | None
    animated: NotRequired[bool]


class Overwrite(TypedDict):
    """Channel > Overwrite Object (``type`` 0 role, 1 member)."""

    id: Snowflake
    type: int
    allow: str
    deny: str


class ThreadMetadata(TypedDict):
    """Channel > Thread Metadata Object."""

    archived: bool
    auto_archive_duration: int
    archive_timestamp: Timestamp
    locked: bool
    invitable: NotRequired[bool]
    create_timestamp: NotRequired[Timestamp | None]


class ThreadMember(TypedDict):
    """Channel > Thread Member Object."""

    id: NotRequired[Snowflake]
    user_id: NotRequired[Snowflake]
    join_timestamp: Timestamp
    flags: int
    member: NotRequired[GuildMember]


class Channel(TypedDict):
    """Channel > Channel Object: every field but ``id`` and ``type`` depends on the type."""

    id: Snowflake
    type: int
    guild_id: NotRequired[Snowflake]
    position: NotRequired[int]
    permission_overwrites: NotRequired[list[Overwrite]]
    name: NotRequired[str | None]
    topic: NotRequired[str | None]
    nsfw: NotRequired[bool]
    last_message_id: NotRequired[Snowflake | None]
    bitrate: NotRequired[int]
    user_limit: NotRequired[int]
    rate_limit_per_user: NotRequired[int]
    recipients: NotRequired[list[User]]
    icon: NotRequired[str | None]
    owner_id: NotRequired[Snowflake]
    application_id: NotRequired[Snowflake]
    managed: NotRequired[bool]
    parent_id: NotRequired[Snowflake | None]
    last_pin_timestamp: NotRequired[Timestamp | None]
    rtc_region: NotRequired[str | None]
    video_quality_mode: NotRequired[int]
    message_count: NotRequired[int]
    member_count: NotRequired[int]
    thread_metadata: NotRequired[ThreadMetadata]
    member: NotRequired[ThreadMember]
    default_auto_archive_duration: NotRequired[int]
    permissions: NotRequired[str]
    flags: NotRequired[int]
    total_message_sent: NotRequired[int]
    available_tags: NotRequired[list[dict[str, Any]]]
    applied_tags: NotRequired[list[Snowflake]]
    default_reaction_emoji: NotRequired[dict[str, Any] | None]
    default_thread_rate_limit_per_user: NotRequired[int]
    default_sort_order: NotRequired[int | None]
    default_forum_layout: NotRequired[int]


class Attachment(TypedDict):
    """Channel > Attachment Object."""

    id: Snowflake
    filename: str
    title: NotRequired[str]
    description: NotRequired[str]
    content_type: NotRequired[str]
    size: int
    url: str
    proxy_url: str
    height: NotRequired[int | None]
    width: NotRequired[int | None]
    ephemeral: NotRequired[bool]
    duration_secs: NotRequired[float]
    waveform: NotRequired[str]
    flags: NotRequired[int]


class Embed(TypedDict, total=False):
    """Channel > Embed Object (every field optional; nested objects left as dicts)."""

    title: str
    type: str
    description: str
    url: str
    timestamp: Timestamp
    color: int
    footer: dict[str, Any]
    image: dict[str, Any]
    thumbnail: dict[str, Any]
    video: dict[str, Any]
    provider: dict[str, Any]
    author: dict[str, Any]
    fields: list[dict[str, Any]]


class Reaction(TypedDict):
    """Channel > Reaction Object."""

    count: int
    count_details: dict[str, int]
    me: bool
    me_burst: bool
    emoji: PartialEmoji
    burst_colors: list[str]


class MessageReference(TypedDict):
    """Channel > Message Reference Structure (``type`` 0 reply, 1 forward)."""

    type: NotRequired[int]
    message_id: NotRequired[Snowflake]
    channel_id: NotRequired[Snowflake]
    guild_id: NotRequired[Snowflake]
    fail_if_not_exists: NotRequired[bool]


class Message(TypedDict):
    """Channel > Message Object.

    Without the MESSAGE_CONTENT intent, ``content``, ``embeds``, ``attachments`` and
    ``components`` arrive empty (except in DMs, mentions and the bot's own messages).
    """

    id: Snowflake
    channel_id: Snowflake
    author: User
    content: str
    timestamp: Timestamp
    edited_timestamp: Timestamp | None
    tts: bool
    mention_everyone: bool
    mentions: list[User]
    mention_roles: list[Snowflake]
    mention_channels: NotRequired[list[dict[str, Any]]]
    attachments: list[Attachment]
    embeds: list[Embed]
    reactions: NotRequired[list[Reaction]]
    nonce: NotRequired[int | str]
    pinned: bool
    webhook_id: NotRequired[Snowflake]
    type: int
    activity: NotRequired[dict[str, Any]]
    application: NotRequired[dict[str, Any]]
    application_id: NotRequired[Snowflake]
    flags: NotRequired[int]
    message_reference: NotRequired[MessageReference]
    message_snapshots: NotRequired[list[dict[str, Any]]]
    referenced_message: NotRequired["Message | None"]
    interaction_metadata: NotRequired[dict[str, Any]]
    thread: NotRequired[Channel]
    components: NotRequired[list[dict[str, Any]]]
    sticker_items: NotRequired[list[dict[str, Any]]]
    position: NotRequired[int]
    role_subscription_data: NotRequired[dict[str, Any]]
    resolved: NotRequired[dict[str, Any]]
    poll: NotRequired[dict[str, Any]]
    call: NotRequired[dict[str, Any]]


@final
class UnavailableGuild(TypedDict):
    """Guild > Unavailable Guild Object (READY's guilds, outages)."""

    id: Snowflake
    unavailable: bool


class Sticker(TypedDict):
    """Sticker > Sticker Object."""

    id: Snowflake
    pack_id: NotRequired[Snowflake]
    name: str
    description: str | None
    tags: str
    type: int
    format_type: int
    available: NotRequired[bool]
    guild_id: NotRequired[Snowflake]
    user: NotRequired[User]
    sort_value: NotRequired[int]


class Guild(TypedDict):
    """Guild > Guild Object (as the gateway sends it: no ``owner``/``permissions``)."""

    id: Snowflake
    name: str
    icon: str | None
    icon_hash: NotRequired[str | None]
    splash: str | None
    discovery_splash: str | None
    owner_id: Snowflake
    region: NotRequired[str | None]
    afk_channel_id: Snowflake | None
    afk_timeout: int
    widget_enabled: NotRequired[bool]
    widget_channel_id: NotRequired[Snowflake | None]
    verification_level: int
    default_message_notifications: int
    explicit_content_filter: int
    roles: list[Role]
    emojis: list[Emoji]
    features: list[str]
    mfa_level: int
    application_id: Snowflake | None
    system_channel_id: Snowflake | None
    system_channel_flags: int
    rules_channel_id: Snowflake | None
    max_presences: NotRequired[int | None]
    max_members: NotRequired[int]
    vanity_url_code: str | None
    description: str | None
    banner: str | None
    premium_tier: int
    premium_subscription_count: NotRequired[int]
    preferred_locale: str
    public_updates_channel_id: Snowflake | None
    max_video_channel_users: NotRequired[int]
    max_stage_video_channel_users: NotRequired[int]
    approximate_member_count: NotRequired[int]
    approximate_presence_count: NotRequired[int]
    welcome_screen: NotRequired[dict[str, Any]]
    nsfw_level: int
    stickers: NotRequired[list[Sticker]]
    premium_progress_bar_enabled: bool
    safety_alerts_channel_id: Snowflake | None
    incidents_data: NotRequired[dict[str, Any] | None]


class VoiceState(TypedDict):
    """Voice > Voice State Object (no ``guild_id`` inside GUILD_CREATE)."""

    guild_id: NotRequired[Snowflake]
    channel_id: Snowflake | None
    user_id: Snowflake
    member: NotRequired[GuildMember]
    session_id: str
    deaf: bool
    mute: bool
    self_deaf: bool
    self_mute: bool
    self_stream: NotRequired[bool]
    self_video: bool
    suppress: bool
    request_to_speak_timestamp: Timestamp | None


class ClientStatus(TypedDict, total=False):
    """Presence > Client Status Object: ``"online"``, ``"idle"`` or ``"dnd"`` per platform."""

    desktop: str
    mobile: str
    web: str


class ActivityTimestamps(TypedDict, total=False):
    """Presence > Activity Timestamps (Unix milliseconds)."""

    start: int
    end: int


class Activity(TypedDict):
    """Presence > Activity Object (``type`` 0 playing, 1 streaming, ... 5 competing)."""

    name: str
    type: int
    url: NotRequired[str | None]
    created_at: int
    timestamps: NotRequired[ActivityTimestamps]
    application_id: NotRequired[Snowflake]
    status_display_type: NotRequired[int | None]
    details: NotRequired[str | None]
    details_url: NotRequired[str | None]
    state: NotRequired[str | None]
    state_url: NotRequired[str | None]
    emoji: NotRequired[PartialEmoji | None]
    party: NotRequired[dict[str, Any]]
    assets: NotRequired[dict[str, str]]
    secrets: NotRequired[dict[str, str]]
    instance: NotRequired[bool]
    flags: NotRequired[int]
    buttons: NotRequired[list[str]]


class Presence(TypedDict):
    """A presence inside GUILD_CREATE (PRESENCE_UPDATE without ``guild_id``)."""

    user: PartialUser
    guild_id: NotRequired[Snowflake]
    status: str
    activities: list[Activity]
    client_status: ClientStatus


class StageInstance(TypedDict):
    """Stage Instance > Stage Instance Object."""

    id: Snowflake
    guild_id: Snowflake
    channel_id: Snowflake
    topic: str
    privacy_level: int
    discoverable_disabled: bool
    guild_scheduled_event_id: Snowflake | None


class SoundboardSound(TypedDict):
    """Soundboard > Soundboard Sound Object."""

    name: str
    sound_id: Snowflake
    volume: float
    emoji_id: Snowflake | None
    emoji_name: str | None
    guild_id: NotRequired[Snowflake]
    available: bool
    user: NotRequired[User]


# ---- gateway-level and session events -------------------------------------------------------


class Hello(TypedDict):
    """op 10 Hello (the ``GATEWAY_HELLO`` event): the heartbeat interval in milliseconds."""

    heartbeat_interval: int
    _trace: NotRequired[list[str]]


class ReadyApplication(TypedDict):
    """READY's partial application: ``id`` and ``flags``."""

    id: Snowflake
    flags: int


class Ready(TypedDict):
    """READY: the session, the bot user, and its guilds (unavailable until GUILD_CREATE)."""

    v: int
    user: User
    guilds: list[UnavailableGuild]
    session_id: str
    resume_gateway_url: str
    shard: NotRequired[list[int]]
    application: ReadyApplication
    # undocumented, seen in real traffic
    user_settings: NotRequired[dict[str, Any]]
    session_type: NotRequired[str]
    relationships: NotRequired[list[Any]]
    private_channels: NotRequired[list[Any]]
    presences: NotRequired[list[Any]]
    guild_join_requests: NotRequired[list[Any]]
    geo_ordered_rtc_regions: NotRequired[list[str]]
    _trace: NotRequired[list[str]]


class RateLimitMeta(TypedDict):
    """RATE_LIMITED's ``meta`` for op 8 (Request Guild Members), the only limited command."""

    guild_id: Snowflake
    nonce: NotRequired[str]


class RateLimited(TypedDict):
    """RATE_LIMITED: a command (``opcode``) was not served; retry after ``retry_after`` s."""

    opcode: int
    retry_after: float
    meta: RateLimitMeta


class Resumed(TypedDict):
    """RESUMED: nothing documented (real traffic carries ``_trace``)."""

    _trace: NotRequired[list[str]]


@final
class AvailableGuildCreate(Guild):
    """GUILD_CREATE for an available guild: the guild plus the gateway's extra fields."""

    joined_at: Timestamp
    large: bool
    unavailable: NotRequired[bool]
    member_count: int
    voice_states: list[VoiceState]
    members: list[GuildMember]
    channels: list[Channel]
    threads: list[Channel]
    presences: list[Presence]
    stage_instances: list[StageInstance]
    guild_scheduled_events: list[dict[str, Any]]
    soundboard_sounds: list[SoundboardSound]
    lazy: NotRequired[bool]  # undocumented, seen in real traffic


#: GUILD_CREATE: an available guild, or (rarely) an unavailable guild object. Narrow with
#: ``if "name" in event.data:`` before reading guild fields; ``id`` is always there.
GuildCreate = AvailableGuildCreate | UnavailableGuild

#: GUILD_UPDATE: the guild object.
GuildUpdate = Guild

#: GUILD_DELETE: ``unavailable`` is true for an outage; absent when the bot left or was removed.
GuildDelete = UnavailableGuild


class MessageCreate(Message):
    """MESSAGE_CREATE: a message plus ``guild_id`` and ``member`` (in guilds).

    Each user in ``mentions`` may carry a partial ``member``. ``channel_type`` is
    undocumented but sent.
    """

    guild_id: NotRequired[Snowflake]
    member: NotRequired[GuildMember]
    channel_type: NotRequired[int]


#: MESSAGE_UPDATE: the same fields as MESSAGE_CREATE (the whole updated message).
MessageUpdate = MessageCreate


class MessageDelete(TypedDict):
    """MESSAGE_DELETE."""

    id: Snowflake
    channel_id: Snowflake
    guild_id: NotRequired[Snowflake]


class MessageDeleteBulk(TypedDict):
    """MESSAGE_DELETE_BULK."""

    ids: list[Snowflake]
    channel_id: Snowflake
    guild_id: NotRequired[Snowflake]


class MessageReactionAdd(TypedDict):
    """MESSAGE_REACTION_ADD (``type`` 0 normal, 1 burst)."""

    user_id: Snowflake
    channel_id: Snowflake
    message_id: Snowflake
    guild_id: NotRequired[Snowflake]
    member: NotRequired[GuildMember]
    emoji: PartialEmoji
    message_author_id: NotRequired[Snowflake]
    burst: bool
    burst_colors: NotRequired[list[str]]
    type: int


class InteractionData(TypedDict, total=False):
    """Interaction data: application commands (``id``, ``name``, ``options``...) and
    components (``custom_id``, ``component_type``, ``values``); which fields come depends
    on the interaction type.
    """

    id: Snowflake
    name: str
    type: int
    resolved: dict[str, Any]
    options: list[dict[str, Any]]
    guild_id: Snowflake
    target_id: Snowflake
    custom_id: str
    component_type: int
    values: list[str]
    components: list[dict[str, Any]]


class Interaction(TypedDict):
    """Interactions > Interaction Object (``type`` 1 ping, 2 command, 3 component,
    4 autocomplete, 5 modal submit). ``member`` in guilds, ``user`` in DMs.
    """

    id: Snowflake
    application_id: Snowflake
    type: int
    data: NotRequired[InteractionData]
    guild: NotRequired[dict[str, Any]]
    guild_id: NotRequired[Snowflake]
    channel: NotRequired[Channel]
    channel_id: NotRequired[Snowflake]
    member: NotRequired[GuildMember]
    user: NotRequired[User]
    token: str
    version: int
    message: NotRequired[Message]
    app_permissions: str
    locale: NotRequired[str]
    guild_locale: NotRequired[str]
    entitlements: list[dict[str, Any]]
    authorizing_integration_owners: dict[str, Snowflake]
    context: NotRequired[int]
    attachment_size_limit: int


#: INTERACTION_CREATE: the interaction.
InteractionCreate = Interaction


class GuildMemberAdd(GuildMember):
    """GUILD_MEMBER_ADD (GUILD_MEMBERS intent): the member plus ``guild_id``."""

    guild_id: Snowflake


class GuildMemberUpdate(TypedDict):
    """GUILD_MEMBER_UPDATE (GUILD_MEMBERS intent)."""

    guild_id: Snowflake
    roles: list[Snowflake]
    user: User
    nick: NotRequired[str | None]
    avatar: str | None
    banner: str | None
    joined_at: Timestamp | None
    premium_since: NotRequired[Timestamp | None]
    deaf: NotRequired[bool]
    mute: NotRequired[bool]
    pending: NotRequired[bool]
    communication_disabled_until: NotRequired[Timestamp | None]
    flags: NotRequired[int]
    avatar_decoration_data: NotRequired[AvatarDecorationData | None]


class GuildMemberRemove(TypedDict):
    """GUILD_MEMBER_REMOVE (GUILD_MEMBERS intent)."""

    guild_id: Snowflake
    user: User


class GuildMembersChunk(TypedDict):
    """GUILD_MEMBERS_CHUNK: one reply chunk to :class:`~gateway.RequestGuildMembers`.

    A request is complete when chunks ``0 .. chunk_count - 1`` have all arrived; ``nonce``
    is the request's own.
    """

    guild_id: Snowflake
    members: list[GuildMember]
    chunk_index: int
    chunk_count: int
    not_found: NotRequired[list[Snowflake]]
    presences: NotRequired[list[Presence]]
    nonce: NotRequired[str]


class PresenceUpdate(TypedDict):
    """PRESENCE_UPDATE (GUILD_PRESENCES intent): ``user`` may hold only ``id``."""

    user: PartialUser
    guild_id: Snowflake
    status: str
    activities: list[Activity]
    client_status: ClientStatus


class TypingStart(TypedDict):
    """TYPING_START (``timestamp`` in Unix seconds)."""

    channel_id: Snowflake
    guild_id: NotRequired[Snowflake]
    user_id: Snowflake
    timestamp: int
    member: NotRequired[GuildMember]


#: VOICE_STATE_UPDATE: a voice state.
VoiceStateUpdate = VoiceState


class VoiceServerUpdate(TypedDict):
    """VOICE_SERVER_UPDATE: where to connect for voice (``endpoint`` None while reallocating)."""

    token: str
    guild_id: Snowflake
    endpoint: str | None


#: CHANNEL_CREATE: the channel.
ChannelCreate = Channel
#: CHANNEL_UPDATE: the channel.
ChannelUpdate = Channel
#: CHANNEL_DELETE: the channel.
ChannelDelete = Channel


class GuildRoleCreate(TypedDict):
    """GUILD_ROLE_CREATE (GUILD_ROLE_UPDATE has the same fields)."""

    guild_id: Snowflake
    role: Role


#: GUILD_ROLE_UPDATE: the same fields as GUILD_ROLE_CREATE.
GuildRoleUpdate = GuildRoleCreate


class GuildRoleDelete(TypedDict):
    """GUILD_ROLE_DELETE."""

    guild_id: Snowflake
    role_id: Snowflake


# ---- the typed events -------------------------------------------------------------------------

T = TypeVar("T", bound="EventType | None", covariant=True)
D = TypeVar("D", covariant=True)


class TypedEvent(Event, Generic[T, D]):
    """:class:`~gateway.Event` as type checkers see it through :func:`typed`: ``type`` is
    ``T`` (a ``Literal`` event type) and ``data`` is ``D``. Never instantiated.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def type(self) -> T: ...

        @property
        def data(self) -> D: ...


_E = EventType

#: The TypedDict (or other type) of ``event.data`` for each typed event type.
PAYLOAD_TYPES: dict[EventType, Any] = {
    _E.GATEWAY_HELLO: Hello,
    _E.GATEWAY_HEARTBEAT: None,
    _E.GATEWAY_HEARTBEAT_ACK: None,
    _E.GATEWAY_RECONNECT: None,
    _E.GATEWAY_INVALIDATE_SESSION: bool,
    _E.GATEWAY_CLOSE: CloseFrame | None,
    _E.READY: Ready,
    _E.RESUMED: Resumed,
    _E.RATE_LIMITED: RateLimited,
    _E.GUILD_CREATE: GuildCreate,
    _E.GUILD_UPDATE: GuildUpdate,
    _E.GUILD_DELETE: GuildDelete,
    _E.CHANNEL_CREATE: ChannelCreate,
    _E.CHANNEL_UPDATE: ChannelUpdate,
    _E.CHANNEL_DELETE: ChannelDelete,
    _E.GUILD_ROLE_CREATE: GuildRoleCreate,
    _E.GUILD_ROLE_UPDATE: GuildRoleUpdate,
    _E.GUILD_ROLE_DELETE: GuildRoleDelete,
    _E.GUILD_MEMBER_ADD: GuildMemberAdd,
    _E.GUILD_MEMBER_UPDATE: GuildMemberUpdate,
    _E.GUILD_MEMBER_REMOVE: GuildMemberRemove,
    _E.GUILD_MEMBERS_CHUNK: GuildMembersChunk,
    _E.MESSAGE_CREATE: MessageCreate,
    _E.MESSAGE_UPDATE: MessageUpdate,
    _E.MESSAGE_DELETE: MessageDelete,
    _E.MESSAGE_DELETE_BULK: MessageDeleteBulk,
    _E.MESSAGE_REACTION_ADD: MessageReactionAdd,
    _E.INTERACTION_CREATE: InteractionCreate,
    _E.PRESENCE_UPDATE: PresenceUpdate,
    _E.TYPING_START: TypingStart,
    _E.VOICE_STATE_UPDATE: VoiceStateUpdate,
    _E.VOICE_SERVER_UPDATE: VoiceServerUpdate,
}

# The event types without a payload type above (their data is Any), including UNKNOWN: a
# dispatch name this library does not know. Kept in step with EventType by tests/test_payloads.py.
_Other = Literal[
    _E.APPLICATION_COMMAND_PERMISSIONS_UPDATE,
    _E.AUTO_MODERATION_RULE_CREATE,
    _E.AUTO_MODERATION_RULE_UPDATE,
    _E.AUTO_MODERATION_RULE_DELETE,
    _E.AUTO_MODERATION_ACTION_EXECUTION,
    _E.CHANNEL_PINS_UPDATE,
    _E.CHANNEL_INFO,
    _E.VOICE_CHANNEL_STATUS_UPDATE,
    _E.VOICE_CHANNEL_START_TIME_UPDATE,
    _E.THREAD_CREATE,
    _E.THREAD_UPDATE,
    _E.THREAD_DELETE,
    _E.THREAD_LIST_SYNC,
    _E.THREAD_MEMBER_UPDATE,
    _E.THREAD_MEMBERS_UPDATE,
    _E.ENTITLEMENT_CREATE,
    _E.ENTITLEMENT_UPDATE,
    _E.ENTITLEMENT_DELETE,
    _E.SUBSCRIPTION_CREATE,
    _E.SUBSCRIPTION_UPDATE,
    _E.SUBSCRIPTION_DELETE,
    _E.GUILD_AUDIT_LOG_ENTRY_CREATE,
    _E.GUILD_BAN_ADD,
    _E.GUILD_BAN_REMOVE,
    _E.GUILD_EMOJIS_UPDATE,
    _E.GUILD_STICKERS_UPDATE,
    _E.GUILD_INTEGRATIONS_UPDATE,
    _E.GUILD_SCHEDULED_EVENT_CREATE,
    _E.GUILD_SCHEDULED_EVENT_UPDATE,
    _E.GUILD_SCHEDULED_EVENT_DELETE,
    _E.GUILD_SCHEDULED_EVENT_USER_ADD,
    _E.GUILD_SCHEDULED_EVENT_USER_REMOVE,
    _E.GUILD_SOUNDBOARD_SOUND_CREATE,
    _E.GUILD_SOUNDBOARD_SOUND_UPDATE,
    _E.GUILD_SOUNDBOARD_SOUND_DELETE,
    _E.GUILD_SOUNDBOARD_SOUNDS_UPDATE,
    _E.SOUNDBOARD_SOUNDS,
    _E.INTEGRATION_CREATE,
    _E.INTEGRATION_UPDATE,
    _E.INTEGRATION_DELETE,
    _E.INVITE_CREATE,
    _E.INVITE_DELETE,
    _E.MESSAGE_REACTION_REMOVE,
    _E.MESSAGE_REACTION_REMOVE_ALL,
    _E.MESSAGE_REACTION_REMOVE_EMOJI,
    _E.MESSAGE_POLL_VOTE_ADD,
    _E.MESSAGE_POLL_VOTE_REMOVE,
    _E.USER_UPDATE,
    _E.STAGE_INSTANCE_CREATE,
    _E.STAGE_INSTANCE_UPDATE,
    _E.STAGE_INSTANCE_DELETE,
    _E.VOICE_CHANNEL_EFFECT_SEND,
    _E.WEBHOOKS_UPDATE,
    _E.UNKNOWN,
]

#: Every other event: a type without a payload type here, or an unknown name (UNKNOWN).
OtherEvent = TypedEvent[_Other | None, Any]

#: Every event, as a union that narrows on ``event.type`` (``is``, ``==`` or ``match``).
AnyEvent = (
    TypedEvent[Literal[_E.GATEWAY_HELLO], Hello]
    | TypedEvent[Literal[_E.GATEWAY_HEARTBEAT], None]
    | TypedEvent[Literal[_E.GATEWAY_HEARTBEAT_ACK], None]
    | TypedEvent[Literal[_E.GATEWAY_RECONNECT], None]
    | TypedEvent[Literal[_E.GATEWAY_INVALIDATE_SESSION], bool]
    | TypedEvent[Literal[_E.GATEWAY_CLOSE], CloseFrame | None]
    | TypedEvent[Literal[_E.READY], Ready]
    | TypedEvent[Literal[_E.RESUMED], Resumed]
    | TypedEvent[Literal[_E.RATE_LIMITED], RateLimited]
    | TypedEvent[Literal[_E.GUILD_CREATE], GuildCreate]
    | TypedEvent[Literal[_E.GUILD_UPDATE], GuildUpdate]
    | TypedEvent[Literal[_E.GUILD_DELETE], GuildDelete]
    | TypedEvent[Literal[_E.CHANNEL_CREATE], ChannelCreate]
    | TypedEvent[Literal[_E.CHANNEL_UPDATE], ChannelUpdate]
    | TypedEvent[Literal[_E.CHANNEL_DELETE], ChannelDelete]
    | TypedEvent[Literal[_E.GUILD_ROLE_CREATE], GuildRoleCreate]
    | TypedEvent[Literal[_E.GUILD_ROLE_UPDATE], GuildRoleUpdate]
    | TypedEvent[Literal[_E.GUILD_ROLE_DELETE], GuildRoleDelete]
    | TypedEvent[Literal[_E.GUILD_MEMBER_ADD], GuildMemberAdd]
    | TypedEvent[Literal[_E.GUILD_MEMBER_UPDATE], GuildMemberUpdate]
    | TypedEvent[Literal[_E.GUILD_MEMBER_REMOVE], GuildMemberRemove]
    | TypedEvent[Literal[_E.GUILD_MEMBERS_CHUNK], GuildMembersChunk]
    | TypedEvent[Literal[_E.MESSAGE_CREATE], MessageCreate]
    | TypedEvent[Literal[_E.MESSAGE_UPDATE], MessageUpdate]
    | TypedEvent[Literal[_E.MESSAGE_DELETE], MessageDelete]
    | TypedEvent[Literal[_E.MESSAGE_DELETE_BULK], MessageDeleteBulk]
    | TypedEvent[Literal[_E.MESSAGE_REACTION_ADD], MessageReactionAdd]
    | TypedEvent[Literal[_E.INTERACTION_CREATE], InteractionCreate]
    | TypedEvent[Literal[_E.PRESENCE_UPDATE], PresenceUpdate]
    | TypedEvent[Literal[_E.TYPING_START], TypingStart]
    | TypedEvent[Literal[_E.VOICE_STATE_UPDATE], VoiceStateUpdate]
    | TypedEvent[Literal[_E.VOICE_SERVER_UPDATE], VoiceServerUpdate]
    | OtherEvent
)


def typed(event: Event) -> AnyEvent:
    """``event`` itself, typed as :data:`AnyEvent` so that ``event.data`` narrows on
    ``event.type``. No copy and no check: the data stays the decoder's ``dict``.
    """
    return event  # type: ignore[return-value]
