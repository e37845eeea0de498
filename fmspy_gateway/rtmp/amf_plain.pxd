# C types for amf_plain.py when Cython compiles it (an "augmenting" .pxd: the .py stays the one source
# and runs as it is without Cython).  Only functions and their locals are declared: module globals
# declared here would stop being attributes of the module.
cimport cython

@cython.locals(values=list, end=Py_ssize_t)
cpdef list plain_decode(data, Py_ssize_t pos)

@cython.locals(marker=cython.uchar, stop=Py_ssize_t, count=Py_ssize_t, items=list)
cdef tuple _read(bytes data, Py_ssize_t pos, Py_ssize_t end, int depth)

@cython.locals(out=bytearray, seen=set)
cpdef bytes plain_encode(values)

@cython.locals(raw=bytes)
cdef _write(value, bytearray out, set seen, int depth)

@cython.locals(size=Py_ssize_t, raw=bytes)
cdef _write_utf8(str text, bytearray out)
