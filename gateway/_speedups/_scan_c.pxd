cdef struct Envelope:
    # Spans are [start, end) offsets into the payload; start -1: the key is missing,
    # -2: the key is null. The name span excludes its quotes.
    Py_ssize_t op_start, op_end
    Py_ssize_t s_start, s_end
    Py_ssize_t t_start, t_end
    bint t_escaped

cdef int envelope(const unsigned char* b, Py_ssize_t n, Envelope* e) except -1
cdef object span_int(const unsigned char* b, Py_ssize_t start, Py_ssize_t end)
cdef object span_seq(const unsigned char* b, Py_ssize_t start, Py_ssize_t end)
cdef object _name_of(bytes quoted, bint escaped, Py_ssize_t pos)
