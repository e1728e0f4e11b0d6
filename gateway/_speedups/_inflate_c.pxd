cdef class ZlibStream:
    cdef object _decompress
    cdef bytearray _buffer
    cdef Py_ssize_t _keep
    cdef Py_ssize_t _max
    cdef Py_ssize_t _max_pending
    cpdef object feed(self, object frame)
