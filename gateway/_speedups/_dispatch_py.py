"""Pure-Python dispatch drain: twin of ``_dispatch_c.pyx`` (same items, same stops).

A shard spends almost all its time on plain dispatches (op 0, a known name other than
READY/RESUMED). :meth:`Dispatcher.drain` takes a run of them in one call, from the
connection's frames to the shard's ready queue: inflate each frame (zlib-stream), scan the
envelope and record the highest sequence. :meth:`Dispatcher.event` decodes a wanted one into
an :class:`~gateway.Event` when the user takes it.

Measured, both choices matter on ~1 KB events: inflating here, a batch at a time, rather
than when the socket is read keeps only a batch of inflated payloads alive (a 256 KiB read
is ~1,500 inflated messages; allocating and freeing them all at once makes malloc give
pages back to the system and fault them in again); decoding on take rather than in the
batch lets each event's objects die young, before the garbage collector's first
generation promotes them.

Anything else stops the run, and never raises: another opcode, READY, RESUMED, an unknown
name, a payload that does not scan stays at the head of ``payloads`` (inflated)
for ``ShardProtocol.receive``, which owns every decision and error message; an error item
(a frame error) stays at the head of ``frames``; corrupt compressed data is put at the head
of ``payloads`` as its :class:`CompressionError`.

Items appended to ``ready``:

- ``payload`` (bytes): a wanted dispatch, not decoded yet (:meth:`Dispatcher.event`
  decodes it when it is taken; ``next_message`` never needs the JSON tree);
- ``(payload, None)``: a dispatch the shard does not want (the shape of a payload
  ``ShardProtocol.receive`` processed without an event).

The table is copied at construction (both twins see the same names whatever the caller
does to its mapping later), and so is ``decoders``. An inflater that returns something
not bytes-like is reported like corrupt data (a :class:`CompressionError` at the head of
``payloads``); an inflater that calls ``drain`` of the same dispatcher gets a
RuntimeError. Argument types: see ``_args``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from . import _args
from ._errors import CompressionError
from ._scan_py import scan

__all__ = ["Dispatcher"]


class Dispatcher:
    """``table`` maps each plain dispatch name to its event type when wanted, else None
    (a name missing from it takes the slow path); ``loads`` decodes JSON; ``event`` is the
    event class (a tuple subclass of ``(type, data, sequence, name)``).

    ``decoders`` (optional) maps dispatch names to a typed decoder: a callable that takes
    the whole payload and returns an object whose ``d`` attribute is the event's data (a
    msgspec ``Envelope[Model]`` decoder, :func:`gateway.models.decoder`); the names it
    lacks keep ``loads``. None (the default) leaves :meth:`event` exactly as it was.
    """

    def __init__(
        self,
        table: Mapping[str, Any],
        loads: Callable[[bytes], Any],
        event: type[tuple[Any, ...]],
        decoders: Mapping[str, Callable[[bytes], Any]] | None = None,
    ) -> None:
        if not (isinstance(event, type) and issubclass(event, tuple)):
            raise TypeError("event must be a tuple subclass")
        self._table = _args.frozen_table(table)
        self._loads = loads
        self._event = event
        self._decoders = None if decoders is None else _args.decoders(decoders)
        self._draining = False

    @property
    def table(self) -> Mapping[str, Any]:
        """A read-only view of the name table (a copy of the one given)."""
        return MappingProxyType(self._table)

    def drain(
        self,
        frames: deque[Any],
        payloads: deque[Any],
        ready: deque[Any],
        limit: int,
        inflater: Any = None,
    ) -> tuple[int, int | None]:
        """Move up to ``limit`` plain dispatches to ``ready``: first those waiting in
        ``payloads`` (inflated), then from ``frames`` through ``inflater`` (None: frames are
        payloads). Returns how many moved and the highest sequence among them (or None).
        """
        if type(frames) is not deque or type(payloads) is not deque or type(ready) is not deque:
            raise TypeError("frames, payloads and ready must be collections.deque")
        if type(limit) is not int:
            limit = _args.index("limit", limit)
        if self._draining:
            raise RuntimeError("Dispatcher.drain() called from its own inflater")
        self._draining = True
        try:
            return self._drain(frames, payloads, ready, limit, inflater)
        finally:
            self._draining = False

    def _drain(
        self, frames: deque[Any], payloads: deque[Any], ready: deque[Any], limit: int, inflater: Any
    ) -> tuple[int, int | None]:
        append = ready.append
        pop_frame = frames.popleft
        count = 0
        last: int | None = None
        while count < limit:
            held = bool(payloads)  # payload is the head of payloads, else a local
            if held:
                payload = payloads[0]
                if type(payload) is not bytes:
                    break
            else:
                if not frames:
                    break
                frame = pop_frame()
                if type(frame) is not bytes:
                    frames.appendleft(frame)  # an error in its message's place
                    break
                if inflater is None:
                    payload = frame
                else:
                    try:
                        payload = inflater.feed(frame)
                        if type(payload) is not bytes and payload is not None:
                            payload = _args.inflated(payload)
                    except CompressionError as exc:
                        payloads.append(exc)
                        break
                    if payload is None:
                        continue  # part of a message
            seq = self._take(payload, append)
            if seq is None:
                if not held:
                    payloads.append(payload)
                break
            if held:
                payloads.popleft()
            if last is None or seq > last:  # the highest: a stale s never wins
                last = seq
            count += 1
        return count, last

    def event(self, payload: bytes) -> tuple[Any, ...]:
        """The event of a wanted plain dispatch that :meth:`drain` queued (undecoded).

        ``t`` and ``s`` come from the decoded payload and must equal the scanned ones (a
        duplicate key past the scan's stop would make them differ). Raises ValueError when
        the JSON does not decode, is not a wanted dispatch, or has such a duplicate.
        """
        if type(payload) is not bytes:
            raise _args.not_bytes("payload", payload)
        decoders = self._decoders
        if decoders is not None:
            return self._typed_event(payload, decoders)
        return self._dict_event(payload)

    def _dict_event(self, payload: bytes) -> tuple[Any, ...]:
        body = self._loads(payload)
        if type(body) is not dict:
            raise ValueError("payload is not a JSON object")
        name = body.get("t")
        seq = body.get("s")
        event_type = self._table.get(name) if type(name) is str else None
        if event_type is None or type(seq) is not int:
            raise ValueError("payload is not a wanted dispatch")
        if scan(payload) != (body.get("op"), seq, name):
            # A duplicate op/s/t past where the scan stopped: the decoder kept the last,
            # the sequence came from the first. Bad data, not an event of either.
            raise ValueError("payload has a duplicate op, s or t key")
        return tuple.__new__(self._event, (event_type, body.get("d"), seq, name))

    def _typed_event(self, payload: bytes, decoders: dict[str, Any]) -> tuple[Any, ...]:
        """:meth:`event` with decoders: ``op``/``s``/``t`` from the scan (the values
        :meth:`drain` recorded; no decoder reads them, so a duplicate key cannot make the
        event disagree with the sequence), ``d`` from the name's decoder in one call.
        """
        op, seq, name = scan(payload)  # ScanError (a ValueError) for a payload that does not scan
        if op != 0 or seq is None or name is None:
            raise ValueError("payload is not a wanted dispatch")
        event_type = self._table.get(name)
        if event_type is None:
            raise ValueError("payload is not a wanted dispatch")
        decode = decoders.get(name)
        if decode is None:
            return self._dict_event(payload)
        try:
            data = decode(payload).d
        except RecursionError:  # msgspec's depth limit: bad data like any other, a ValueError
            raise ValueError("payload nests too deeply") from None
        return tuple.__new__(self._event, (event_type, data, seq, name))

    def _take(self, payload: bytes, append: Callable[[Any], None]) -> int | None:
        """Append the item of a plain dispatch and return its sequence; None otherwise."""
        try:
            op, seq, name = scan(payload)
        except ValueError:
            return None
        if op != 0 or seq is None or name is None:
            return None
        event_type = self._table.get(name, _MISSING)
        if event_type is _MISSING:
            return None
        append((payload, None) if event_type is None else payload)
        return seq


_MISSING = object()
