cdef class ZlibStream:
    cdef object _decompress
    cdef bytearray _buffer
    cdef Py_ssize_t _keep
    cpdef object feed(self, object frame)
