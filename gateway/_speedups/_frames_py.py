"""Server-to-client websocket frames to whole messages (RFC 6455 5.2), pure Python.

Twin of ``_frames_c.pyx``: the same messages and the same errors for any byte stream, cut
anywhere. ``feed(data)`` returns ``[(opcode, payload), ...]``: whole data messages (opcode 1
text or 2 binary, fragments joined) and control frames (8 close, 9 ping, 10 pong) in wire
order. A protocol violation sets :attr:`FrameReader.error` (a :class:`FrameError` with the
close code to send) and ends reading; what came before it is still returned.

A text message (opcode 1) must be valid UTF-8 (RFC 6455 5.6, 8.1): one that is not is a
:class:`FrameError` with close code 1007, checked on the whole message (fragments joined)
before it is inflated or handed on, so nothing downstream meets undecodable text. Binary
messages (compressed transport data) are not checked here; what they inflate to is JSON
the codec checks when it decodes.

With an ``inflater`` (anything with ``feed(bytes) -> bytes | None``, such as
``ZlibStream``), data messages come out inflated and frames holding part of a compressed
message yield nothing; a :class:`CompressionError` ends reading like a framing error.

With a ``sink`` (anything with ``append``, such as a deque), each data message's payload is
appended to it as it completes, and ``feed`` returns only the control frames: the reader
fills the connection's queue itself, with no Python loop per message.

The sink and the inflater may not call :meth:`FrameReader.feed` of the same reader
(RuntimeError: the compiled twin parses the buffer in place). Any other exception from them
propagates out of ``feed`` and ends reading: later calls raise RuntimeError. Accepted
argument types: see ``_args``.
"""

from __future__ import annotations

from typing import Any

from . import _args
from ._errors import CompressionError, FrameError

__all__ = ["FrameReader", "FrameError"]


class FrameReader:
    """Incremental frame decoder for one connection. ``max_size`` 0 means no limit."""

    def __init__(self, max_size: int | None = 0, inflater: Any = None, sink: Any = None) -> None:
        self._max = _args.size("max_size", max_size, none=True)
        # Bound once, as the compiled twin does: a missing method fails here, not mid-stream.
        self._inflate = None if inflater is None else inflater.feed
        self._sink_append = None if sink is None else sink.append
        self.error: FrameError | CompressionError | None = None
        self.closed = False  # a close frame was read; later bytes are ignored
        self._buf = bytearray()
        self._frag_op = 0
        self._frags: list[bytes] = []
        self._frag_size = 0
        self._feeding = False
        self._failure: BaseException | None = None

    @property
    def max_size(self) -> int:
        """The message size limit in bytes (0: none); may be changed between feeds."""
        return self._max

    @max_size.setter
    def max_size(self, value: int | None) -> None:
        self._max = _args.size("max_size", value, none=True)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if type(data) is not bytes:
            data = _args.bytes_like("data", data)
        if self._feeding:
            raise RuntimeError("FrameReader.feed() called from its own sink or inflater")
        if self._failure is not None:
            raise RuntimeError("FrameReader stopped: its sink or inflater raised") from (
                self._failure
            )
        out: list[tuple[int, bytes]] = []
        if self.error is not None or self.closed:
            return out
        if self._buf:
            self._buf += data
            view: bytes | bytearray = self._buf
        else:
            view = data
        self._feeding = True
        try:
            pos = self._parse(view, out)
        except (FrameError, CompressionError) as exc:
            self.error = exc
            self._buf = bytearray()
            return out
        except BaseException as exc:
            self._failure = exc
            self._buf = bytearray()
            raise
        finally:
            self._feeding = False
        if view is self._buf:
            del self._buf[:pos]
        elif pos < len(data):
            self._buf = bytearray(data[pos:])
        return out

    def _parse(self, data: bytes | bytearray, out: list[tuple[int, bytes]]) -> int:
        pos = 0
        end = len(data)
        while end - pos >= 2 and not self.closed:
            b0 = data[pos]
            b1 = data[pos + 1]
            op = b0 & 0x0F
            fin = b0 & 0x80
            if b0 & 0x70:
                raise FrameError("reserved bits set (no extension was negotiated)", 1002)
            if b1 & 0x80:
                raise FrameError("masked frame from the server", 1002)
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (data[pos + 2] << 8) | data[pos + 3]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if n >> 63:
                    raise FrameError("frame length has the most significant bit set", 1002)
                head = 10
            self._check(op, fin, n)
            if end - pos - head < n:
                break
            start = pos + head
            payload = bytes(data[start : start + n])
            pos = start + n
            if op >= 8:
                out.append((op, payload))
                if op == 8:
                    self.closed = True
            elif op != 0 and fin:
                self._deliver(op, payload, out)
            else:
                if op != 0:
                    self._frag_op = op
                self._frags.append(payload)
                self._frag_size += n
                if fin:
                    self._deliver(self._frag_op, b"".join(self._frags), out)
                    self._frag_op = 0
                    self._frags = []
                    self._frag_size = 0
        return pos

    def _deliver(self, op: int, payload: bytes, out: list[tuple[int, bytes]]) -> None:
        if op == 1 and not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise FrameError("text message is not valid UTF-8", 1007) from None
        if self._inflate is not None:
            inflated = self._inflate(payload)
            if inflated is None:
                return  # part of a compressed message
            payload = inflated if type(inflated) is bytes else _args.inflated(inflated)
        if self._sink_append is not None:
            self._sink_append(payload)
        else:
            out.append((op, payload))

    def _check(self, op: int, fin: int, n: int) -> None:
        if op >= 8:
            if op > 10:
                raise FrameError(f"unknown opcode {op}", 1002)
            if not fin:
                raise FrameError("fragmented control frame", 1002)
            if n > 125:
                raise FrameError("control frame payload over 125 bytes", 1002)
            return
        if op == 0:
            if not self._frag_op:
                raise FrameError("continuation frame outside a fragmented message", 1002)
        elif op > 2:
            raise FrameError(f"unknown opcode {op}", 1002)
        elif self._frag_op:
            raise FrameError("new data frame inside a fragmented message", 1002)
        if self._max and self._frag_size + n > self._max:
            raise FrameError(f"message over the {self._max} byte limit", 1009)
