# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled dispatch drain: twin of ``_dispatch_py.py`` (same items, same stops).

The envelope is scanned in C (``_scan_c.envelope``), so a dispatch the shard does not want
costs no Python object at all, and a wanted one costs its JSON decode and the event.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcmp

import sys
from collections import deque
from types import MappingProxyType

from . import _args
from ._errors import CompressionError
from ._inflate_c cimport ZlibStream
from ._scan_c cimport Envelope, _name_of, envelope, span_int, span_seq
from ._scan_c import scan as _scan

__all__ = ["Dispatcher"]

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    ctypedef struct _Type "PyTypeObject":
        PyObject* (*tp_alloc)(_Type*, Py_ssize_t)
    void PyTuple_SET_ITEM(PyObject*, Py_ssize_t, PyObject*)
    void Py_INCREF(PyObject*)
    void Py_DECREF(PyObject*)


cdef inline object _event(object cls, object event_type, object data, object seq, object name):
    """``tuple.__new__(cls, (event_type, data, seq, name))`` without the argument tuple."""
    cdef PyObject* obj = (<_Type*> cls).tp_alloc(<_Type*> cls, 4)
    if obj is NULL:
        raise MemoryError()
    Py_INCREF(<PyObject*> event_type)
    PyTuple_SET_ITEM(obj, 0, <PyObject*> event_type)
    Py_INCREF(<PyObject*> data)
    PyTuple_SET_ITEM(obj, 1, <PyObject*> data)
    Py_INCREF(<PyObject*> seq)
    PyTuple_SET_ITEM(obj, 2, <PyObject*> seq)
    Py_INCREF(<PyObject*> name)
    PyTuple_SET_ITEM(obj, 3, <PyObject*> name)
    result = <object> obj  # a new reference ...
    Py_DECREF(obj)  # ... so drop the one tp_alloc gave
    return result


cdef class Dispatcher:
    """See ``_dispatch_py.Dispatcher``."""

    cdef dict _table  # private copy: nobody can change it under _last_name's cache
    cdef object _loads
    cdef object _event
    cdef dict _decoders  # name -> typed decoder (payload -> envelope with .d); None: dicts
    cdef object _last_name  # the previous name (str) and its table entry: most runs repeat it
    cdef object _last_type
    cdef object _seq  # the sequence of the dispatch _take last took
    cdef bint _draining

    def __init__(self, table, loads, event, decoders=None):
        if not (isinstance(event, type) and issubclass(event, tuple)):
            raise TypeError("event must be a tuple subclass")
        self._table = _args.frozen_table(table)
        self._loads = loads
        self._event = event
        self._decoders = None if decoders is None else _args.decoders(decoders)
        self._last_name = None
        self._last_type = None
        self._seq = None
        self._draining = False

    @property
    def table(self):
        """A read-only view of the name table (a copy of the one given)."""
        return MappingProxyType(self._table)

    def drain(self, frames, payloads, ready, limit, inflater=None):
        cdef Py_ssize_t n
        if type(frames) is not deque or type(payloads) is not deque or type(ready) is not deque:
            raise TypeError("frames, payloads and ready must be collections.deque")
        if type(limit) is not int:
            limit = _args.index("limit", limit)
        try:
            n = limit
        except OverflowError:  # past any count: the same as the largest
            n = sys.maxsize if limit > 0 else 0
        if self._draining:
            raise RuntimeError("Dispatcher.drain() called from its own inflater")
        self._draining = True
        try:
            return self._drain(frames, payloads, ready, n, inflater)
        finally:
            self._draining = False

    cdef tuple _drain(self, object frames, object payloads, object ready, Py_ssize_t limit,
                      object inflater):
        cdef Py_ssize_t count = 0
        cdef object last = None
        cdef object payload, frame
        cdef ZlibStream zlib = inflater if type(inflater) is ZlibStream else None
        cdef object append = ready.append
        cdef object pop_frame = frames.popleft
        cdef bint held  # payload is the head of payloads (else a local, kept only on a stop)
        while count < limit:
            held = len(payloads) > 0
            if held:
                payload = payloads[0]
                if type(payload) is not bytes:
                    break
            else:
                if len(frames) == 0:
                    break
                frame = pop_frame()
                if type(frame) is not bytes:
                    frames.appendleft(frame)  # an error in its message's place
                    break
                if inflater is None:
                    payload = frame
                else:
                    try:
                        if zlib is not None:
                            payload = zlib.feed(frame)  # bytes or None
                        else:
                            payload = inflater.feed(frame)
                            if type(payload) is not bytes and payload is not None:
                                payload = _args.inflated(payload)
                    except CompressionError as exc:
                        payloads.append(exc)
                        break
                    if payload is None:
                        continue  # part of a message
            if not self._take(payload, append):
                if not held:
                    payloads.append(payload)
                break
            if held:
                payloads.popleft()
            if last is None or self._seq > last:  # the highest: a stale s never wins
                last = self._seq
            count += 1
        return count, last

    cdef bint _take(self, bytes payload, object append) except -1:
        """Append the item of a plain dispatch and set ``_seq``; False for anything else."""
        cdef const unsigned char* b = <const unsigned char*> payload
        cdef Envelope e
        cdef PyObject* found
        cdef object name, event_type, seq
        # Everything that can fail on the payload is done before it is appended: a
        # payload this returns False for stays where the pure twin leaves it.
        try:
            envelope(b, len(payload), &e)
            if not (e.op_end - e.op_start == 1 and b[e.op_start] == 48):  # not a plain "0"
                if e.op_start < 0 or span_int(b, e.op_start, e.op_end) != 0:
                    return False
            if e.s_start < 0 or e.t_start < 0:
                return False
            seq = span_seq(b, e.s_start, e.s_end)  # ScanError past the limits
            if e.t_escaped:  # rare; envelope() already checked the escapes
                name = _name_of(payload[e.t_start - 1:e.t_end + 1], True, e.t_start - 1)
                found = PyDict_GetItem(self._table, name)
                if found is NULL:
                    return False
                event_type = <object> found
            else:
                if self._name(b, e.t_start, e.t_end) is None:
                    return False
                event_type = self._last_type
        except ValueError:
            return False
        append((payload, None) if event_type is None else payload)
        self._seq = seq
        return True

    def event(self, payload):
        """The event of a wanted plain dispatch that :meth:`drain` queued (undecoded).

        ``t`` and ``s`` come from the decoded payload and must equal the scanned ones (a
        duplicate key past the scan's stop would make them differ). Raises ValueError when
        the JSON does not decode, is not a wanted dispatch, or has such a duplicate.
        """
        if type(payload) is not bytes:
            raise _args.not_bytes("payload", payload)
        if self._decoders is not None:
            return self._typed_event(payload)
        return self._dict_event(payload)

    cdef object _dict_event(self, bytes payload):
        cdef PyObject* found
        cdef object body, name, seq, data
        body = self._loads(payload)
        if type(body) is not dict:
            raise ValueError("payload is not a JSON object")
        found = PyDict_GetItem(body, "t")
        name = <object> found if found is not NULL else None
        found = PyDict_GetItem(body, "s")
        seq = <object> found if found is not NULL else None
        found = PyDict_GetItem(self._table, name) if type(name) is str else NULL
        if found is NULL or <object> found is None or type(seq) is not int:
            raise ValueError("payload is not a wanted dispatch")
        event_type = <object> found
        if not self._same_envelope(payload, body, seq, name):
            raise ValueError("payload has a duplicate op, s or t key")
        found = PyDict_GetItem(body, "d")
        data = <object> found if found is not NULL else None
        return _event(self._event, event_type, data, seq, name)

    cdef object _typed_event(self, bytes payload):
        """:meth:`event` with decoders: ``op``/``s``/``t`` from the scan (the values
        :meth:`drain` recorded; no decoder reads them, so a duplicate key cannot make the
        event disagree with the sequence), ``d`` from the name's decoder in one call. The
        scan is :func:`scan` itself, as in the pure twin: the same rules, the same errors.
        """
        cdef PyObject* found
        cdef object op, seq, name, event_type, data
        op, seq, name = _scan(payload)  # ScanError (a ValueError) for a payload that does not scan
        if op != 0 or seq is None or name is None:
            raise ValueError("payload is not a wanted dispatch")
        found = PyDict_GetItem(self._table, name)
        if found is NULL or <object> found is None:
            raise ValueError("payload is not a wanted dispatch")
        event_type = <object> found
        found = PyDict_GetItem(self._decoders, name)
        if found is NULL:
            return self._dict_event(payload)
        try:
            data = (<object> found)(payload).d
        except RecursionError:  # msgspec's depth limit: bad data like any other, a ValueError
            raise ValueError("payload nests too deeply") from None
        return _event(self._event, event_type, data, seq, name)

    cdef bint _same_envelope(self, bytes payload, dict body, object seq, str name) except -1:
        """Whether the scanned op/s/t of ``payload`` are the decoded ones (in C: the scan
        stops after the three keys, a few dozen bytes in).
        """
        cdef const unsigned char* b = <const unsigned char*> payload
        cdef Envelope e
        cdef Py_ssize_t size
        cdef const char* text
        cdef PyObject* found
        envelope(b, len(payload), &e)  # ScanError (a ValueError) as for any bad payload
        # Both converted before comparing, op then s, as the pure twin's scan() raises.
        scanned_op = span_int(b, e.op_start, e.op_end)
        scanned_seq = span_seq(b, e.s_start, e.s_end)
        found = PyDict_GetItem(body, "op")
        if scanned_op != (<object> found if found is not NULL else None):
            return False
        if scanned_seq != seq or e.t_start < 0:
            return False
        if e.t_escaped:
            return _name_of(payload[e.t_start - 1:e.t_end + 1], True, e.t_start - 1) == name
        text = PyUnicode_AsUTF8AndSize(name, &size)
        return size == e.t_end - e.t_start and memcmp(text, b + e.t_start, size) == 0

    cdef object _name(self, const unsigned char* b, Py_ssize_t start, Py_ssize_t end):
        """The name (str) when the table knows it (its entry in ``_last_type``), else None."""
        cdef Py_ssize_t size
        cdef const char* known
        cdef PyObject* found
        if self._last_name is not None:
            known = PyUnicode_AsUTF8AndSize(self._last_name, &size)
            if size == end - start and memcmp(known, b + start, size) == 0:
                return self._last_name
        try:
            name = PyUnicode_DecodeUTF8(<const char*> b + start, end - start, NULL)
        except UnicodeDecodeError:
            return None
        found = PyDict_GetItem(self._table, name)
        if found is NULL:
            return None
        self._last_name = name
        self._last_type = <object> found
        return name

