/*
 * The per-record loops of a Kafka v2 record batch, in C.
 *
 * Same contract as the pure-Python reference ``pykaf/protocol/_record_codec.py`` (read its
 * module docstring): ``encode_records`` and ``decode_records``. ``_records`` loads this
 * module when it was built and falls back to the reference otherwise; the tests run both
 * on the same inputs and demand identical bytes, records and exception types.
 *
 * Deliberate differences, all on inputs the batch layer never produces:
 * - encode: a timestamp that does not fit int64, or a timestamp delta that overflows
 *   int64, raises OverflowError (the reference would write a silently wrapped varint).
 * - decode: ``start``/``end`` outside the buffer raise ValueError; a ``count`` that cannot
 *   fit in ``end - start`` bytes (each record takes at least 7) raises ValueError before
 *   anything is allocated, so a hostile count cannot make us allocate a huge list.
 * - decode: records (and their header tuples) are untracked by the cyclic GC at birth when
 *   they cannot be part of a cycle; see make_record.
 *
 * Robustness rules followed throughout:
 * - Every read is bounds-checked against the current record's end (never past ``end``).
 * - Python code can run while a record is gathered (custom sequences, ``__len__``,
 *   ``__bool__``), so every object whose bytes we will copy is held by a strong reference
 *   or a buffer export until the record is written, and the records sequence is re-sized
 *   on every step (a list may shrink under us).
 * - No global mutable state: the module has no per-interpreter state at all.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Kafka encodes a record in at least 7 bytes: length, attributes, timestamp delta,
 * offset delta, key length, value length, header count (one byte each at minimum). */
#define MIN_RECORD_SIZE 7
/* Headers gathered on the stack before we fall back to the heap. */
#define INLINE_HEADERS 8

/* ------------------------------------------------------------------------------------ */
/* Varints                                                                              */
/* ------------------------------------------------------------------------------------ */

static inline uint64_t
zigzag(int64_t v)
{
    /* Written with unsigned arithmetic only: shifting a negative signed value is UB. */
    uint64_t u = (uint64_t)v;
    return (u << 1) ^ ((uint64_t)0 - (u >> 63));
}

static inline Py_ssize_t
uvarint_size(uint64_t z)
{
    Py_ssize_t n = 1;
    while (z >= 0x80) {
        z >>= 7;
        n++;
    }
    return n;
}

static inline char *
put_uvarint(char *p, uint64_t z)
{
    while (z >= 0x80) {
        *p++ = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *p++ = (char)z;
    return p;
}

/* Read one varint of at most 10 bytes at *pos (before end). On success store the low 64
 * bits of the raw (still zigzagged) value in *raw and the bits the 10th byte carries above
 * bit 63 in *high (the reference keeps them: it decodes with Python ints), then advance
 * *pos. */
static inline int
read_uvarint(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end, uint64_t *raw,
             unsigned *high)
{
    Py_ssize_t p = *pos;
    if (p < end && buf[p] < 0x80) { /* the common case: one byte */
        *raw = buf[p];
        *high = 0;
        *pos = p + 1;
        return 0;
    }
    uint64_t value = 0;
    unsigned shift = 0;
    for (;;) {
        if (p >= end) {
            PyErr_SetString(PyExc_ValueError, "truncated varint");
            return -1;
        }
        unsigned char byte = buf[p++];
        if (shift == 63) {
            value |= (uint64_t)(byte & 1) << 63;
            *high = (unsigned)(byte & 0x7F) >> 1;
        }
        else {
            value |= (uint64_t)(byte & 0x7F) << shift;
            *high = 0;
        }
        if (byte < 0x80) {
            break;
        }
        shift += 7;
        if (shift > 63) {
            PyErr_SetString(PyExc_ValueError, "varint longer than 10 bytes");
            return -1;
        }
    }
    *raw = value;
    *pos = p;
    return 0;
}

static inline int64_t
unzigzag(uint64_t raw)
{
    return (int64_t)((raw >> 1) ^ ((uint64_t)0 - (raw & 1)));
}

/* A signed varint used as a length or a count: values beyond int64 (the 10th byte had
 * high bits) saturate, which sends them down the same error paths the reference takes. */
static inline int
read_varint_clamped(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end,
                    int64_t *out)
{
    uint64_t raw;
    unsigned high;
    if (read_uvarint(buf, pos, end, &raw, &high) < 0) {
        return -1;
    }
    if (high) {
        *out = (raw & 1) ? INT64_MIN : INT64_MAX;
    }
    else {
        *out = unzigzag(raw);
    }
    return 0;
}

/* A signed varint as an exact Python int: only needed for the rare varint whose value
 * lies beyond int64 (10th byte with high bits). */
static PyObject *
wide_varint_to_pylong(uint64_t raw, unsigned high)
{
    /* value = (R >> 1) ^ -(R & 1) with R = high * 2**64 + raw, i.e. M or -(M + 1) with
     * M = high * 2**63 + (raw >> 1). */
    PyObject *hi = NULL, *shift = NULL, *shifted = NULL, *lo = NULL, *m = NULL, *res = NULL;
    hi = PyLong_FromUnsignedLong(high);
    shift = PyLong_FromLong(63);
    if (hi == NULL || shift == NULL) {
        goto done;
    }
    shifted = PyNumber_Lshift(hi, shift);
    lo = PyLong_FromUnsignedLongLong(raw >> 1);
    if (shifted == NULL || lo == NULL) {
        goto done;
    }
    m = PyNumber_Or(shifted, lo);
    if (m == NULL) {
        goto done;
    }
    res = (raw & 1) ? PyNumber_Invert(m) : Py_NewRef(m); /* ~M == -(M + 1) */
done:
    Py_XDECREF(hi);
    Py_XDECREF(shift);
    Py_XDECREF(shifted);
    Py_XDECREF(lo);
    Py_XDECREF(m);
    return res;
}

/* ------------------------------------------------------------------------------------ */
/* Encoding                                                                             */
/* ------------------------------------------------------------------------------------ */

/* The bytes of one key, value or header part, kept alive until the record is written. */
typedef struct {
    const char *ptr;
    Py_ssize_t len; /* -1: null */
    PyObject *owner; /* strong reference keeping ptr valid, or NULL */
    int has_view;
    Py_buffer view; /* a buffer export (bytearray, memoryview): blocks resizes */
} Slice;

static inline void
slice_init(Slice *s)
{
    s->ptr = NULL;
    s->len = -1;
    s->owner = NULL;
    s->has_view = 0;
}

static inline void
slice_release(Slice *s)
{
    if (s->has_view) {
        PyBuffer_Release(&s->view);
        s->has_view = 0;
    }
    Py_CLEAR(s->owner);
    s->ptr = NULL;
    s->len = -1; /* ready for reuse by the next record */
}

static inline Py_ssize_t
slice_size(const Slice *s)
{
    if (s->len < 0) {
        return 1;
    }
    return uvarint_size((uint64_t)s->len << 1) + s->len;
}

static inline char *
slice_put(char *p, const Slice *s)
{
    if (s->len < 0) {
        *p++ = 1; /* zigzag(-1) */
        return p;
    }
    p = put_uvarint(p, (uint64_t)s->len << 1);
    if (s->len) {
        memcpy(p, s->ptr, (size_t)s->len);
    }
    return p + s->len;
}

/* Fill *s from a key, value or header part: None, bytes, str (UTF-8), bytearray or
 * memoryview, exactly the types the reference's ``_as_bytes`` accepts. */
static int
slice_from(PyObject *obj, Slice *s, const char *what, Py_ssize_t index)
{
    if (obj == Py_None) {
        return 0;
    }
    if (PyBytes_CheckExact(obj)) {
        s->ptr = PyBytes_AS_STRING(obj);
        s->len = PyBytes_GET_SIZE(obj);
        s->owner = Py_NewRef(obj);
        return 0;
    }
    if (PyUnicode_Check(obj)) {
        /* The UTF-8 form is cached on the str, which owner keeps alive. */
        Py_ssize_t len;
        const char *ptr = PyUnicode_AsUTF8AndSize(obj, &len);
        if (ptr == NULL) {
            return -1;
        }
        s->ptr = ptr;
        s->len = len;
        s->owner = Py_NewRef(obj);
        return 0;
    }
    if (PyByteArray_Check(obj) || PyMemoryView_Check(obj)) {
        if (PyObject_GetBuffer(obj, &s->view, PyBUF_SIMPLE) == 0) {
            s->has_view = 1;
            s->ptr = (const char *)s->view.buf;
            s->len = s->view.len;
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_BufferError)) {
            return -1;
        }
        /* A non-contiguous memoryview: copy it in C order, as bytes() does. */
        PyErr_Clear();
        PyObject *copy = PyBytes_FromObject(obj);
        if (copy == NULL) {
            return -1;
        }
        s->ptr = PyBytes_AS_STRING(copy);
        s->len = PyBytes_GET_SIZE(copy);
        s->owner = copy;
        return 0;
    }
    PyErr_Format(PyExc_TypeError,
                 "record %zd: %s must be bytes, bytearray, memoryview, str or None, not %.200s",
                 index, what, Py_TYPE(obj)->tp_name);
    return -1;
}

/* The output: one bytes object, grown geometrically, shrunk to size at the end. */
typedef struct {
    PyObject *bytes;
    Py_ssize_t len;
    Py_ssize_t cap;
} Writer;

static int
writer_reserve(Writer *w, Py_ssize_t need)
{
    if (w->cap - w->len >= need) {
        return 0;
    }
    if (need > PY_SSIZE_T_MAX - w->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t want = w->len + need;
    Py_ssize_t cap = w->cap <= PY_SSIZE_T_MAX / 2 ? w->cap * 2 : PY_SSIZE_T_MAX;
    if (cap < want) {
        cap = want;
    }
    /* On failure _PyBytes_Resize frees the object and sets w->bytes to NULL. */
    if (_PyBytes_Resize(&w->bytes, cap) < 0) {
        return -1;
    }
    w->cap = cap;
    return 0;
}

/* A first guess at the output size, so that the common case allocates once: an upper
 * bound for records of bytes/None without headers, a rough guess for anything else. */
static Py_ssize_t
estimate_size(PyObject *seq)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *rec = items[i];
        /* length 5 + attributes 1 + timestamp delta 10 + offset delta 5 + key length 5
         * + value length 5 + header count 1 */
        total += 32;
        if (PyTuple_CheckExact(rec) && PyTuple_GET_SIZE(rec) == 4) {
            PyObject *key = PyTuple_GET_ITEM(rec, 0);
            PyObject *value = PyTuple_GET_ITEM(rec, 1);
            if (PyBytes_CheckExact(key)) {
                total += (size_t)PyBytes_GET_SIZE(key);
            }
            if (PyBytes_CheckExact(value)) {
                total += (size_t)PyBytes_GET_SIZE(value);
            }
            if (PyTuple_GET_ITEM(rec, 2) != Py_None) {
                total += 64;
            }
        }
        else {
            total += 64;
        }
        if (total > (size_t)1 << 30) {
            break; /* a guess only: past 1 GiB let the writer grow as needed */
        }
    }
    return total < 64 ? 64 : (Py_ssize_t)total;
}

/* The timestamp of record ``index`` as int64: ``obj`` or the default when None. */
static int
record_timestamp(PyObject *obj, int64_t default_ts, Py_ssize_t index, int64_t *out)
{
    if (obj == Py_None) {
        *out = default_ts;
        return 0;
    }
    if (!PyLong_CheckExact(obj)) {
        PyErr_Format(PyExc_TypeError, "record %zd: timestamp must be an int (ms) or None",
                     index);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow) {
        PyErr_Format(PyExc_OverflowError, "record %zd: timestamp %R does not fit in int64",
                     index, obj);
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* a - b, or an OverflowError naming the record when it does not fit int64. */
static int
timestamp_delta(int64_t a, int64_t b, Py_ssize_t index, int64_t *out)
{
    if ((b < 0 && a > INT64_MAX + b) || (b > 0 && a < INT64_MIN + b)) {
        PyErr_Format(PyExc_OverflowError,
                     "record %zd: timestamp %lld is too far from the base timestamp %lld",
                     index, (long long)a, (long long)b);
        return -1;
    }
    *out = a - b;
    return 0;
}

/* Everything one record needs, gathered before a single byte is written. */
typedef struct {
    Slice key;
    Slice value;
    Py_ssize_t n_headers;     /* pairs gathered so far */
    Py_ssize_t headers_cap;   /* pairs the headers array can hold */
    Slice *headers;           /* 2 * headers_cap slices: key, value, key, value... */
    Slice inline_headers[2 * INLINE_HEADERS];
} Gathered;

static void
gathered_release(Gathered *g)
{
    slice_release(&g->key);
    slice_release(&g->value);
    for (Py_ssize_t i = 0; i < 2 * g->n_headers; i++) {
        slice_release(&g->headers[i]);
    }
    g->n_headers = 0;
}

static int
gathered_grow(Gathered *g, Py_ssize_t want)
{
    if (want <= g->headers_cap) {
        return 0;
    }
    if (want > PY_SSIZE_T_MAX / (Py_ssize_t)(2 * sizeof(Slice))) {
        PyErr_NoMemory();
        return -1;
    }
    Slice *bigger = PyMem_Malloc((size_t)want * 2 * sizeof(Slice));
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* Slices hold no pointers into themselves, so a plain copy moves them. */
    memcpy(bigger, g->headers, (size_t)g->n_headers * 2 * sizeof(Slice));
    if (g->headers != g->inline_headers) {
        PyMem_Free(g->headers);
    }
    g->headers = bigger;
    g->headers_cap = want;
    return 0;
}

/* A sequence as PySequence_Fast, with a TypeError that names the record. */
static PyObject *
as_fast_sequence(PyObject *obj, Py_ssize_t index, const char *what)
{
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
        return Py_NewRef(obj);
    }
    PyObject *seq = PySequence_Fast(obj, "");
    if (seq == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Format(PyExc_TypeError, "record %zd: %s, not %.200s", index, what,
                     Py_TYPE(obj)->tp_name);
    }
    return seq;
}

static int
gather_headers(Gathered *g, PyObject *headers, Py_ssize_t index)
{
    /* The reference writes no headers for any falsy value and calls len() on the rest. */
    if (headers == Py_None) {
        return 0;
    }
    if (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers)) {
        int truth = PyObject_IsTrue(headers);
        if (truth <= 0) {
            return truth;
        }
        if (PyObject_Length(headers) < 0) {
            return -1;
        }
    }
    PyObject *seq = as_fast_sequence(headers, index, "headers must be a sequence of pairs");
    if (seq == NULL) {
        return -1;
    }
    int rc = -1;
    /* Re-read the size each step: a list may change while Python code runs below. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *header = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        PyObject *pair = as_fast_sequence(header, index, "a header must be a (key, value) pair");
        Py_DECREF(header);
        if (pair == NULL) {
            goto done;
        }
        if (PySequence_Fast_GET_SIZE(pair) != 2) {
            Py_DECREF(pair);
            PyErr_Format(PyExc_TypeError, "record %zd: a header must be a (key, value) pair",
                         index);
            goto done;
        }
        if (g->n_headers == g->headers_cap && gathered_grow(g, 2 * g->headers_cap) < 0) {
            Py_DECREF(pair);
            goto done;
        }
        Slice *hk = &g->headers[2 * g->n_headers];
        Slice *hv = hk + 1;
        slice_init(hk);
        slice_init(hv);
        g->n_headers++; /* counted now so that gathered_release frees what follows */
        /* Owned: a buffer exporter run by slice_from could change a list pair. */
        PyObject *hkey = Py_NewRef(PySequence_Fast_GET_ITEM(pair, 0));
        PyObject *hvalue = Py_NewRef(PySequence_Fast_GET_ITEM(pair, 1));
        Py_DECREF(pair);
        int bad = slice_from(hkey, hk, "header key", index) < 0;
        if (!bad && hkey == Py_None) {
            PyErr_Format(PyExc_TypeError, "record %zd: a header key cannot be None", index);
            bad = 1;
        }
        if (!bad) {
            bad = slice_from(hvalue, hv, "header value", index) < 0;
        }
        Py_DECREF(hkey);
        Py_DECREF(hvalue);
        if (bad) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

static int
encode_one(Writer *w, Gathered *g, PyObject *record, Py_ssize_t index, int64_t base_ts,
           int64_t default_ts, int64_t *max_ts)
{
    PyObject *seq = as_fast_sequence(record, index,
                                     "must be a (key, value, headers, timestamp) sequence");
    if (seq == NULL) {
        return -1;
    }
    int rc = -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n != 4) {
        PyErr_Format(PyExc_TypeError,
                     "record %zd must be (key, value, headers, timestamp), got %zd items",
                     index, n);
        goto done;
    }
    /* Own the four items: a list record could be changed by Python code that runs while
     * we gather (a buffer exporter, a custom header sequence). */
    PyObject *items[4];
    for (int k = 0; k < 4; k++) {
        items[k] = Py_NewRef(PySequence_Fast_GET_ITEM(seq, k));
    }
    /* Same order of checks as the reference: timestamp, key, value, headers. */
    int64_t ts = 0, delta = 0;
    int bad = record_timestamp(items[3], default_ts, index, &ts) < 0 ||
              timestamp_delta(ts, base_ts, index, &delta) < 0;
    if (!bad) {
        if (ts > *max_ts) {
            *max_ts = ts;
        }
        bad = slice_from(items[0], &g->key, "key", index) < 0 ||
              slice_from(items[1], &g->value, "value", index) < 0 ||
              gather_headers(g, items[2], index) < 0;
    }
    for (int k = 0; k < 4; k++) {
        Py_DECREF(items[k]); /* what we copy from is held by the slices now */
    }
    if (bad) {
        goto done;
    }

    /* Everything is held: size the record, then write it without running Python code. */
    uint64_t zdelta = zigzag(delta);
    uint64_t zindex = zigzag((int64_t)index);
    Py_ssize_t body = 1 + uvarint_size(zdelta) + uvarint_size(zindex) + slice_size(&g->key) +
                      slice_size(&g->value) +
                      uvarint_size(zigzag((int64_t)g->n_headers));
    for (Py_ssize_t i = 0; i < 2 * g->n_headers; i++) {
        Py_ssize_t part = slice_size(&g->headers[i]);
        if (part > PY_SSIZE_T_MAX - 16 - body) {
            PyErr_NoMemory();
            goto done;
        }
        body += part;
    }
    Py_ssize_t total = uvarint_size(zigzag((int64_t)body)) + body;
    if (writer_reserve(w, total) < 0) {
        goto done;
    }
    char *p = PyBytes_AS_STRING(w->bytes) + w->len;
    p = put_uvarint(p, zigzag((int64_t)body));
    *p++ = 0; /* attributes: unused, always 0 */
    p = put_uvarint(p, zdelta);
    p = put_uvarint(p, zindex);
    p = slice_put(p, &g->key);
    p = slice_put(p, &g->value);
    p = put_uvarint(p, zigzag((int64_t)g->n_headers));
    for (Py_ssize_t i = 0; i < 2 * g->n_headers; i++) {
        p = slice_put(p, &g->headers[i]);
    }
    w->len += total;
    rc = 0;
done:
    gathered_release(g);
    Py_DECREF(seq);
    return rc;
}

static int
arg_int64(PyObject *obj, const char *name, int64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Format(PyExc_OverflowError, "%s %R does not fit in int64", name, obj);
        }
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

PyDoc_STRVAR(encode_records_doc,
"encode_records(records, base_timestamp, default_timestamp, /) -> (bytes, int)\n\n"
"Encode (key, value, headers, timestamp) records as the records section of a v2 batch;\n"
"return it and the largest timestamp. See pykaf.protocol._record_codec.");

static PyObject *
encode_records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "encode_records() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    int64_t base_ts, default_ts;
    if (arg_int64(args[1], "base_timestamp", &base_ts) < 0 ||
        arg_int64(args[2], "default_timestamp", &default_ts) < 0) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "records must be a sequence of records");
    if (seq == NULL) {
        return NULL;
    }
    Writer w = {NULL, 0, 0};
    w.cap = estimate_size(seq);
    w.bytes = PyBytes_FromStringAndSize(NULL, w.cap);
    if (w.bytes == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    Gathered g;
    slice_init(&g.key);
    slice_init(&g.value);
    g.n_headers = 0;
    g.headers_cap = INLINE_HEADERS;
    g.headers = g.inline_headers;

    int64_t max_ts = INT64_MIN;
    PyObject *result = NULL;
    /* Re-read the size each step: a list may shrink while Python code runs (as the
     * reference's enumerate() over a list would see it). */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *record = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        int rc = encode_one(&w, &g, record, i, base_ts, default_ts, &max_ts);
        Py_DECREF(record);
        if (rc < 0) {
            goto done;
        }
    }
    if (w.len != w.cap && _PyBytes_Resize(&w.bytes, w.len) < 0) {
        goto done;
    }
    PyObject *max_obj = PyLong_FromLongLong(max_ts);
    if (max_obj == NULL) {
        goto done;
    }
    result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(max_obj);
        goto done;
    }
    PyTuple_SET_ITEM(result, 0, w.bytes);
    PyTuple_SET_ITEM(result, 1, max_obj);
    w.bytes = NULL; /* stolen by the tuple */
done:
    if (g.headers != g.inline_headers) {
        PyMem_Free(g.headers);
    }
    Py_XDECREF(w.bytes);
    Py_DECREF(seq);
    return result;
}

/* ------------------------------------------------------------------------------------ */
/* Decoding                                                                             */
/* ------------------------------------------------------------------------------------ */

/* A base (offset or timestamp) that is added to a delta: int64 when it fits (the fast
 * path), otherwise the Python int, so the result is exact for any base, as in the
 * reference. */
typedef struct {
    PyObject *obj;
    int64_t value;
    int fits;
} Base;

static int
base_from(PyObject *obj, const char *name, Base *b)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    b->obj = obj;
    b->value = (int64_t)v;
    b->fits = !overflow;
    return 0;
}

/* base + delta as a Python int; delta is the varint (raw, high). */
static PyObject *
base_plus(const Base *b, uint64_t raw, unsigned high)
{
    if (!high && b->fits) {
        int64_t d = unzigzag(raw);
        int64_t a = b->value;
        if (!((d < 0 && a < INT64_MIN - d) || (d > 0 && a > INT64_MAX - d))) {
            return PyLong_FromLongLong(a + d);
        }
    }
    PyObject *d = high ? wide_varint_to_pylong(raw, high) : PyLong_FromLongLong(unzigzag(raw));
    if (d == NULL) {
        return NULL;
    }
    PyObject *sum = PyNumber_Add(b->obj, d);
    Py_DECREF(d);
    return sum;
}

/* A length-prefixed part of a record: ptr and len, or len == -1 for null. */
static int
read_sized(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end, const char *what,
           const unsigned char **ptr, Py_ssize_t *len)
{
    int64_t length;
    if (read_varint_clamped(buf, pos, end, &length) < 0) {
        return -1;
    }
    if (length < 0) {
        if (length != -1) {
            PyErr_Format(PyExc_ValueError, "negative %s length %lld", what, (long long)length);
            return -1;
        }
        *len = -1;
        return 0;
    }
    if (length > (int64_t)(end - *pos)) {
        PyErr_Format(PyExc_ValueError, "%s of %lld bytes runs past the record", what,
                     (long long)length);
        return -1;
    }
    *ptr = buf + *pos;
    *len = (Py_ssize_t)length;
    *pos += (Py_ssize_t)length;
    return 0;
}

static inline PyObject *
bytes_or_none(const unsigned char *ptr, Py_ssize_t len)
{
    if (len < 0) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize((const char *)ptr, len);
}

/* A header key that is not valid UTF-8 (librdkafka, Go and Java byte-array producers can
 * write one): never a reason to fail the batch, as in Java's reader. The reference's
 * UndecodableHeaderKey (text with U+FFFD replacements, the wire bytes in .raw) is built by
 * calling it, so both codecs return the same objects. Looked up on each such key rather
 * than cached: the module keeps no state, and the path is rare. */
static PyObject *
undecodable_header_key(const unsigned char *ptr, Py_ssize_t len)
{
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        return NULL; /* a MemoryError stays one */
    }
    PyErr_Clear();
    PyObject *raw = PyBytes_FromStringAndSize((const char *)ptr, len);
    if (raw == NULL) {
        return NULL;
    }
    PyObject *module = PyImport_ImportModule("pykaf.protocol._record_codec");
    PyObject *type = module ? PyObject_GetAttrString(module, "UndecodableHeaderKey") : NULL;
    Py_XDECREF(module);
    PyObject *key = type ? PyObject_CallOneArg(type, raw) : NULL;
    Py_XDECREF(type);
    Py_DECREF(raw);
    return key;
}

static PyObject *
read_headers(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t record_end, int64_t limit)
{
    int64_t n;
    if (read_varint_clamped(buf, pos, record_end, &n) < 0) {
        return NULL;
    }
    if (n < 0 || n > limit) {
        PyErr_Format(PyExc_ValueError, "bad header count %lld", (long long)n);
        return NULL;
    }
    /* n <= the record's length, itself within the buffer: a bounded allocation. */
    PyObject *headers = PyTuple_New((Py_ssize_t)n);
    /* Whether every key is an exact str: an UndecodableHeaderKey has a __dict__, so the
     * tuples holding one stay tracked by the cyclic GC (and so does the record, whose
     * untracking CPython then leaves to the collector). */
    int plain = 1;
    if (headers == NULL || n == 0) {
        return headers; /* the empty tuple singleton when there are no headers */
    }
    for (Py_ssize_t i = 0; i < (Py_ssize_t)n; i++) {
        const unsigned char *kptr = NULL, *vptr = NULL;
        Py_ssize_t klen, vlen;
        if (read_sized(buf, pos, record_end, "header key", &kptr, &klen) < 0) {
            goto fail;
        }
        if (klen < 0) {
            PyErr_SetString(PyExc_ValueError, "null header key");
            goto fail;
        }
        if (read_sized(buf, pos, record_end, "header value", &vptr, &vlen) < 0) {
            goto fail;
        }
        PyObject *key = PyUnicode_DecodeUTF8((const char *)kptr, klen, NULL);
        if (key == NULL) {
            key = undecodable_header_key(kptr, klen);
            if (key == NULL) {
                goto fail;
            }
            plain = 0;
        }
        PyObject *value = bytes_or_none(vptr, vlen);
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(key);
            Py_DECREF(value);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, key);
        PyTuple_SET_ITEM(pair, 1, value);
        if (plain) {
            PyObject_GC_UnTrack(pair); /* str and bytes/None: no cycle possible, see untrack */
        }
        PyTuple_SET_ITEM(headers, i, pair);
    }
    if (plain) {
        PyObject_GC_UnTrack(headers);
    }
    return headers;
fail:
    Py_DECREF(headers); /* unset items are NULL, which tuple dealloc skips */
    return NULL;
}

/* Whether instances of a tuple subclass are plain tuples in memory: no __dict__, no extra
 * slots, so their only references are their items. */
static int
is_plain_tuple_type(PyTypeObject *type)
{
    return type == &PyTuple_Type || (type->tp_basicsize == PyTuple_Type.tp_basicsize &&
                                     type->tp_itemsize == PyTuple_Type.tp_itemsize &&
                                     type->tp_dictoffset == 0);
}

/* A new instance of the record type (a tuple subclass) holding the five items, which it
 * steals; on failure they are released.
 *
 * ``untrack``: take the record out of the cyclic GC. A decoded record holds ints, bytes,
 * None and untracked header tuples of str and bytes: immutable leaves that can never be
 * part of a cycle, so the collector has nothing to find in it (CPython untracks such
 * tuples itself, but only when a collection first walks them). Untracked at birth, a
 * consumer holding a million records does not pay for the collector walking them over
 * and over, which otherwise costs more than decoding them. */
static PyObject *
make_record(PyTypeObject *type, PyObject *items[5], int untrack)
{
    PyObject *rec;
    if (type == &PyTuple_Type) {
        rec = PyTuple_New(5);
    }
    else {
        rec = type->tp_alloc(type, 5);
#if PY_VERSION_HEX >= 0x030E0000
        /* 3.14 caches a tuple's hash in the object; zeroed memory would read as a
         * cached hash of 0 (tuple_subtype_new resets it the same way). */
        if (rec != NULL) {
            ((PyTupleObject *)rec)->ob_hash = -1;
        }
#endif
    }
    if (rec == NULL) {
        for (int i = 0; i < 5; i++) {
            Py_DECREF(items[i]);
        }
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        PyTuple_SET_ITEM(rec, i, items[i]);
    }
    /* offset and timestamp may come from PyNumber_Add on an int subclass or be the caller's
     * fixed timestamp: untrack only when they are exact ints too. */
    if (untrack && PyLong_CheckExact(items[0]) && PyLong_CheckExact(items[1])) {
        PyObject_GC_UnTrack(rec);
    }
    return rec;
}

static PyObject *
decode_one(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end, const Base *offset_base,
           const Base *ts_base, PyObject *fixed_ts, PyTypeObject *record_type, int untrack)
{
    int64_t length;
    Py_ssize_t p = *pos;
    if (read_varint_clamped(buf, &p, end, &length) < 0) {
        return NULL;
    }
    if (length < 1 || length > (int64_t)(end - p)) {
        PyErr_Format(PyExc_ValueError, "record length %lld does not fit the batch",
                     (long long)length);
        return NULL;
    }
    Py_ssize_t record_end = p + (Py_ssize_t)length;
    p += 1; /* attributes, unused */
    uint64_t ts_raw, off_raw;
    unsigned ts_high, off_high;
    const unsigned char *kptr = NULL, *vptr = NULL;
    Py_ssize_t klen, vlen;
    if (read_uvarint(buf, &p, record_end, &ts_raw, &ts_high) < 0 ||
        read_uvarint(buf, &p, record_end, &off_raw, &off_high) < 0 ||
        read_sized(buf, &p, record_end, "key", &kptr, &klen) < 0 ||
        read_sized(buf, &p, record_end, "value", &vptr, &vlen) < 0) {
        return NULL;
    }
    PyObject *headers = read_headers(buf, &p, record_end, length);
    if (headers == NULL) {
        return NULL;
    }
    if (p != record_end) {
        Py_DECREF(headers);
        PyErr_SetString(PyExc_ValueError, "record length does not match its contents");
        return NULL;
    }
    PyObject *items[5] = {NULL, NULL, NULL, NULL, headers};
    items[0] = base_plus(offset_base, off_raw, off_high);
    items[1] = fixed_ts != Py_None ? Py_NewRef(fixed_ts) : base_plus(ts_base, ts_raw, ts_high);
    items[2] = items[0] && items[1] ? bytes_or_none(kptr, klen) : NULL;
    items[3] = items[2] ? bytes_or_none(vptr, vlen) : NULL;
    if (items[3] == NULL) {
        for (int i = 0; i < 5; i++) {
            Py_XDECREF(items[i]);
        }
        return NULL;
    }
    *pos = record_end;
    /* Headers holding an UndecodableHeaderKey stay tracked (read_headers): so does the record. */
    return make_record(record_type, items, untrack && !PyObject_GC_IsTracked(headers));
}

PyDoc_STRVAR(decode_records_doc,
"decode_records(buf, start, end, count, base_offset, base_timestamp, fixed_timestamp,\n"
"               record_type, /) -> list\n\n"
"Decode count records from buf[start:end], which must be used up exactly; each one an\n"
"instance of record_type (a tuple subclass of 5 fields). Malformed input raises\n"
"ValueError. See pykaf.protocol._record_codec.");

static PyObject *
decode_records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "decode_records() takes 8 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyLong_Check(args[3])) {
        PyErr_Format(PyExc_TypeError, "count must be an int, not %.200s",
                     Py_TYPE(args[3])->tp_name);
        return NULL;
    }
    /* Any count is accepted as the reference does: negative means none, and one that is
     * too large fails the size check below with ValueError. */
    int overflow;
    long long count = PyLong_AsLongLongAndOverflow(args[3], &overflow);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow) {
        count = overflow > 0 ? LLONG_MAX : 0;
    }
    if (count < 0) {
        count = 0;
    }
    Base offset_base, ts_base;
    if (base_from(args[4], "base_offset", &offset_base) < 0 ||
        base_from(args[5], "base_timestamp", &ts_base) < 0) {
        return NULL;
    }
    PyObject *fixed_ts = args[6];
    PyObject *type_obj = args[7];
    if (!PyType_Check(type_obj) || !PyType_IsSubtype((PyTypeObject *)type_obj, &PyTuple_Type)) {
        PyErr_Format(PyExc_TypeError, "record_type must be a tuple subclass, not %R",
                     type_obj);
        return NULL;
    }
    PyTypeObject *record_type = (PyTypeObject *)type_obj;
    int untrack = is_plain_tuple_type(record_type);

    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *out = NULL;
    if (start < 0 || end < start || end > view.len) {
        PyErr_Format(PyExc_ValueError,
                     "records span [%zd, %zd) lies outside the buffer of %zd bytes", start,
                     end, view.len);
        goto done;
    }
    if (count > (long long)((end - start) / MIN_RECORD_SIZE)) {
        PyErr_Format(PyExc_ValueError,
                     "%lld records cannot fit in %zd bytes (a record takes at least %d)",
                     count, end - start, MIN_RECORD_SIZE);
        goto done;
    }
    out = PyList_New((Py_ssize_t)count);
    if (out == NULL) {
        goto done;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t pos = start;
    for (Py_ssize_t i = 0; i < (Py_ssize_t)count; i++) {
        PyObject *rec = decode_one(buf, &pos, end, &offset_base, &ts_base, fixed_ts,
                                   record_type, untrack);
        if (rec == NULL) {
            Py_CLEAR(out); /* unset items are NULL, which list dealloc skips */
            goto done;
        }
        PyList_SET_ITEM(out, i, rec);
    }
    if (pos != end) {
        PyErr_Format(PyExc_ValueError, "%zd bytes left over after %lld records", end - pos,
                     count);
        Py_CLEAR(out);
    }
done:
    PyBuffer_Release(&view);
    return out;
}

/* ------------------------------------------------------------------------------------ */
/* murmur2 (the key hash of Kafka's default partitioner)                                */
/* ------------------------------------------------------------------------------------ */

/* Kafka's Java ``Utils.murmur2``: MurmurHash2 with seed 0x9747b28c over little-endian 4-byte
 * words. All arithmetic is on uint32_t, where wrap-around is defined (Java's int overflow
 * wraps the same way; Java's ``>>>`` is our unsigned ``>>``). It lives here, not in its
 * own extension, so pykaf keeps one optional C module; the pure-Python twin is
 * ``pykaf._core._partitioner.murmur2_python`` and the tests demand equal results. */
static uint32_t
murmur2_java(const unsigned char *data, size_t len)
{
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t words = len / 4;
    for (size_t i = 0; i < words; i++) {
        const unsigned char *p = data + 4 * i;
        /* Byte by byte, never a cast to uint32_t*: endian- and alignment-neutral. */
        uint32_t k = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
                     | ((uint32_t)p[3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *tail = data + 4 * words;
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= m;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

PyDoc_STRVAR(murmur2_doc,
"murmur2(data, /) -> int\n\n"
"Kafka's Java Utils.murmur2 of a bytes-like object, as Java's signed 32-bit int.");

/* METH_O: one positional argument, no argument-tuple parsing on the per-record path. */
static PyObject *
murmur2(PyObject *module, PyObject *arg)
{
    uint32_t h;
    if (PyBytes_CheckExact(arg)) {
        /* The common case (keys are bytes by the time they are partitioned): no buffer
         * export needed, bytes are immutable. */
        h = murmur2_java((const unsigned char *)PyBytes_AS_STRING(arg),
                         (size_t)PyBytes_GET_SIZE(arg));
    }
    else {
        Py_buffer view;
        /* PyBUF_SIMPLE demands C-contiguous bytes and refuses anything else with a
         * TypeError/BufferError, as Java's byte[] input implies. */
        if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        h = murmur2_java((const unsigned char *)view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
    }
    /* Java's int: reinterpret the 32 bits as two's complement without relying on the
     * implementation-defined uint32_t -> int32_t conversion. */
    long value = (h & 0x80000000u) ? -(long)(~h) - 1 : (long)h;
    return PyLong_FromLong(value);
}

/* ------------------------------------------------------------------------------------ */
/* Journal RECORD entries (pykaf/_producer/journal/_format.py)                          */
/* ------------------------------------------------------------------------------------ */

/* The produce path of custody "journal" writes one RECORD entry per record straight into
 * a shared memory map; in Python that is a struct pack, four slice copies and a CRC call
 * (about 0.9 us for 1 KiB), here one call. The layout and the contract are those of
 * ``_format.encode_record_into_python`` (its docstring), and the tests demand the same
 * bytes and the same exceptions from both.
 *
 * The CRC is CRC32C (Castagnoli), as the ``crc32c`` package computes it for the Python
 * twin. Only the SSE4.2 instruction makes it worth doing in C, so the function exists
 * only where that path compiles (x86-64 with GCC or Clang): elsewhere the module lacks
 * it and the journal uses the Python twin. A CPU without SSE4.2 (before 2008) still gets
 * the right CRC from a bitwise loop: slow, never wrong. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PYKAF_JOURNAL_RECORDS 1

#define CRC32C_POLY 0x82F63B78u /* Castagnoli, reflected */
#define JOURNAL_PREFIX 8        /* u32 length, u32 crc */
#define JOURNAL_RECORD_FIXED 33 /* u8 kind, u64, i32, i64, u16, i32, i32, u16 */
#define JOURNAL_RECORD_KIND 1
#define JOURNAL_IDENTITY_FIXED 41 /* u8 kind, i64, i16, i32, i32, u64, u64, u32, u16 */
#define JOURNAL_IDENTITY_KIND 2

__attribute__((target("sse4.2"))) static uint32_t
crc32c_sse42(uint32_t crc, const unsigned char *p, size_t n)
{
#if defined(__x86_64__)
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8); /* unaligned-safe; the compiler makes it one load */
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
#endif
    while (n--) {
        crc = __builtin_ia32_crc32qi(crc, *p++);
    }
    return crc;
}

static uint32_t
crc32c_bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n--) {
        crc ^= *p++;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (CRC32C_POLY & (0u - (crc & 1u)));
        }
    }
    return crc;
}

static uint32_t
crc32c_of(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    crc = __builtin_cpu_supports("sse4.2") ? crc32c_sse42(crc, p, n) : crc32c_bitwise(crc, p, n);
    return crc ^ 0xFFFFFFFFu;
}

/* The CRC of a RECORD entry's body from its parts: the fixed fields as written, then the
 * topic, key and value from where they came from, not read back from the target. */
static uint32_t
crc32c_of_parts(const unsigned char *fixed, size_t fixed_len, const char *name,
                Py_ssize_t name_len, const Slice *key, const Slice *value)
{
    uint32_t crc = 0xFFFFFFFFu;
    int hw = __builtin_cpu_supports("sse4.2");
    crc = hw ? crc32c_sse42(crc, fixed, fixed_len) : crc32c_bitwise(crc, fixed, fixed_len);
    const unsigned char *parts[3] = {(const unsigned char *)name,
                                     (const unsigned char *)key->ptr,
                                     (const unsigned char *)value->ptr};
    Py_ssize_t lens[3] = {name_len, key->len, value->len};
    for (int i = 0; i < 3; i++) {
        if (lens[i] > 0) {
            crc = hw ? crc32c_sse42(crc, parts[i], (size_t)lens[i])
                     : crc32c_bitwise(crc, parts[i], (size_t)lens[i]);
        }
    }
    return crc ^ 0xFFFFFFFFu;
}

/* Little-endian stores, byte by byte: right on any host; compilers merge them. */
static inline unsigned char *
put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
    return p + bytes;
}

/* Fill *s from a key or value of a journal record: None or any contiguous buffer (the
 * accumulator hands bytes; the Python twin takes what slicing into a memoryview takes). */
static int
journal_part(PyObject *obj, Slice *s)
{
    if (obj == Py_None) {
        return 0;
    }
    if (PyBytes_CheckExact(obj)) {
        s->ptr = PyBytes_AS_STRING(obj);
        s->len = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, &s->view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    s->has_view = 1;
    s->ptr = (const char *)s->view.buf;
    s->len = s->view.len;
    return 0;
}

/* The ValueError of a field out of range, worded as the Python twin's. */
static void
journal_out_of_range(PyObject *serial, PyObject *name, PyObject *partition, const char *why)
{
    PyObject *topic = NULL;
    if (PyBytes_Check(name)) {
        topic = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), "replace");
    }
    if (topic == NULL) {
        PyErr_Clear();
        topic = PyObject_Repr(name);
        if (topic == NULL) {
            return;
        }
    }
    PyErr_Format(PyExc_ValueError,
                 "cannot journal record %R for %U[%R]: a field is out of range (%s)", serial,
                 topic, partition, why);
    Py_DECREF(topic);
}

/* The body of a RECORD entry without headers (its 8-byte prefix not counted). */
static inline Py_ssize_t
journal_body_size(Py_ssize_t name_len, Py_ssize_t key_len, Py_ssize_t value_len)
{
    return JOURNAL_RECORD_FIXED + name_len + (key_len > 0 ? key_len : 0)
           + (value_len > 0 ? value_len : 0);
}

/* The bytes ``headers`` (a list of ``(str, bytes | None)`` tuples, exactly those types, as
 * the producer checks them) take in a RECORD entry, each a u16 name length, an i32 value
 * length (-1 for None), the name's UTF-8 and the value; -1 when they are of another shape
 * or out of range (the caller's Python path then says what is wrong). No exception is
 * left set, and nothing here runs Python code: a str's UTF-8 is cached in it, a buffer
 * that ``PyUnicode_AsUTF8AndSize`` allocates is not a collected object. */
static Py_ssize_t
journal_headers_size(PyObject *headers)
{
    if (!PyList_CheckExact(headers) || PyList_GET_SIZE(headers) > 0xFFFF) {
        return -1;
    }
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
            return -1;
        }
        PyObject *name = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        if (!PyUnicode_CheckExact(name) || (value != Py_None && !PyBytes_CheckExact(value))) {
            return -1;
        }
        Py_ssize_t name_len;
        if (PyUnicode_AsUTF8AndSize(name, &name_len) == NULL) {
            PyErr_Clear(); /* a lone surrogate */
            return -1;
        }
        Py_ssize_t value_len = value == Py_None ? 0 : PyBytes_GET_SIZE(value);
        if (name_len > 0xFFFF || value_len > INT32_MAX || size > INT32_MAX) {
            return -1;
        }
        size += 6 + name_len + value_len;
    }
    return size;
}

/* Write ``headers`` (checked by ``journal_headers_size``) at ``p``; returns the end. */
static unsigned char *
journal_write_headers(unsigned char *p, PyObject *headers)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        PyObject *value = PyTuple_GET_ITEM(item, 1);
        Py_ssize_t name_len;
        const char *name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(item, 0), &name_len);
        Py_ssize_t value_len = value == Py_None ? -1 : PyBytes_GET_SIZE(value);
        p = put_le(p, (uint64_t)name_len, 2);
        p = put_le(p, (uint64_t)(uint32_t)(int32_t)value_len, 4);
        memcpy(p, name, (size_t)name_len);
        p += name_len;
        if (value_len > 0) {
            memcpy(p, PyBytes_AS_STRING(value), (size_t)value_len);
            p += value_len;
        }
    }
    return p;
}

/* Write one RECORD entry of ``body`` bytes (``journal_body_size``, plus
 * ``journal_headers_size`` when ``headers`` is not NULL) at ``at``; every field was
 * range-checked by the caller. The length and CRC go in last: a process killed before
 * that point leaves a zero length (the segment's unused bytes are zeros), a torn tail. */
static void
journal_write_record(unsigned char *at, Py_ssize_t body, unsigned long long serial,
                     int32_t partition, long long timestamp, const char *name,
                     Py_ssize_t name_len, const Slice *key, const Slice *value,
                     PyObject *headers)
{
    unsigned char *start = at + JOURNAL_PREFIX;
    unsigned char *p = start;
    *p++ = JOURNAL_RECORD_KIND;
    p = put_le(p, serial, 8);
    p = put_le(p, (uint64_t)(uint32_t)partition, 4);
    p = put_le(p, (uint64_t)timestamp, 8);
    p = put_le(p, (uint64_t)name_len, 2);
    p = put_le(p, (uint64_t)(uint32_t)(int32_t)key->len, 4); /* -1 for None */
    p = put_le(p, (uint64_t)(uint32_t)(int32_t)value->len, 4);
    p = put_le(p, headers == NULL ? 0 : (uint64_t)PyList_GET_SIZE(headers), 2);
    memcpy(p, name, (size_t)name_len);
    p += name_len;
    if (key->len > 0) {
        memcpy(p, key->ptr, (size_t)key->len);
        p += key->len;
    }
    if (value->len > 0) {
        memcpy(p, value->ptr, (size_t)value->len);
        p += value->len;
    }
    uint32_t crc;
    if (headers == NULL) {
        crc = crc32c_of_parts(start, JOURNAL_RECORD_FIXED, name, name_len, key, value);
    } else {
        journal_write_headers(p, headers);
        crc = crc32c_of(start, (size_t)body); /* the body as written, headers and all */
    }
    /* The barrier keeps the compiler from moving these stores before the copies above. */
    __asm__ __volatile__("" ::: "memory");
    put_le(put_le(at, (uint64_t)body, 4), crc, 4);
}

PyDoc_STRVAR(journal_record_into_doc,
"journal_record_into(target, pos, limit, serial, name, partition, timestamp_ms, key, value, /)"
" -> int\n\n"
"Write one journal RECORD entry without headers at ``pos`` of the writable buffer\n"
"``target`` and return where it ends; -1 (nothing written) when it would end past\n"
"``limit``. ``name`` is the topic, encoded. ValueError when a field is out of range\n"
"(nothing written). The length and CRC go in last.");

static PyObject *
journal_record_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_Format(PyExc_TypeError, "journal_record_into expected 9 arguments, got %zd",
                     nargs);
        return NULL;
    }
    PyObject *serial_obj = args[3], *name = args[4], *partition_obj = args[5];
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyBytes_Check(name)) {
        PyErr_Format(PyExc_TypeError, "the topic name must be bytes, not %.100s",
                     Py_TYPE(name)->tp_name);
        return NULL;
    }
    if (!PyLong_Check(serial_obj) || !PyLong_Check(partition_obj) || !PyLong_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "serial, partition and timestamp_ms must be ints");
        return NULL;
    }
    /* Every range is checked before a byte is written: the target stays untouched. */
    unsigned long long serial = PyLong_AsUnsignedLongLong(serial_obj);
    if (serial == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        journal_out_of_range(serial_obj, name, partition_obj, "serial not in 0..2**64-1");
        return NULL;
    }
    int overflow = 0;
    long long partition = PyLong_AsLongLongAndOverflow(partition_obj, &overflow);
    if (overflow || partition < INT32_MIN || partition > INT32_MAX) {
        journal_out_of_range(serial_obj, name, partition_obj, "partition not an int32");
        return NULL;
    }
    long long timestamp = PyLong_AsLongLongAndOverflow(args[6], &overflow);
    if (overflow) {
        journal_out_of_range(serial_obj, name, partition_obj, "timestamp not an int64");
        return NULL;
    }
    Py_ssize_t name_len = PyBytes_GET_SIZE(name);
    if (name_len > 0xFFFF) {
        journal_out_of_range(serial_obj, name, partition_obj, "topic longer than 65535 bytes");
        return NULL;
    }
    Slice key, value;
    slice_init(&key);
    slice_init(&value);
    Py_buffer target;
    int has_target = 0;
    PyObject *result = NULL;
    if (journal_part(args[7], &key) < 0 || journal_part(args[8], &value) < 0) {
        goto done;
    }
    if (key.len > INT32_MAX || value.len > INT32_MAX) {
        journal_out_of_range(serial_obj, name, partition_obj, "key or value over 2 GiB");
        goto done;
    }
    if (PyObject_GetBuffer(args[0], &target, PyBUF_WRITABLE) < 0) {
        goto done;
    }
    has_target = 1;
    if (pos < 0 || limit > target.len) {
        PyErr_Format(PyExc_ValueError, "pos %zd and limit %zd do not fit a buffer of %zd bytes",
                     pos, limit, target.len);
        goto done;
    }
    Py_ssize_t body = journal_body_size(name_len, key.len, value.len);
    if (body > limit - pos - JOURNAL_PREFIX) {
        result = PyLong_FromLong(-1);
        goto done;
    }
    journal_write_record((unsigned char *)target.buf + pos, body, serial, (int32_t)partition,
                         timestamp, PyBytes_AS_STRING(name), name_len, &key, &value, NULL);
    result = PyLong_FromSsize_t(pos + JOURNAL_PREFIX + body);
done:
    if (has_target) {
        PyBuffer_Release(&target);
    }
    slice_release(&key);
    slice_release(&value);
    return result;
}

/* ------------------------------------------------------------------------------------ */
/* JournalTail: the produce path's appends to the newest segment, in one call            */
/* ------------------------------------------------------------------------------------ */

/* ``JournalStore`` keeps its state in Python, under its own lock; taking that lock,
 * checking, writing and indexing cost about 2 us a record in Python
 * (benchmarks/custody.py's journal level). A tail is armed by the store, under its lock,
 * with the mapped segment, where the next entry goes and how far it may go; ``append``
 * then writes a RECORD entry there without the lock: under the GIL this call cannot
 * interleave with any Python code. The store settles the tail (``settle``: disarm and
 * hand back where it got to and the runs of serials it wrote, per partition) first thing
 * whenever it takes its lock, so every Python section sees the state as if the appends
 * had been its own. Anything unusual (not armed, a serial out of order, an entry that does
 * not fit, a field of another type or out of range) returns -1 with nothing written: the
 * store's Python path then does it, and says what is wrong. */

/* What ``append`` and ``identity`` note for ``settle`` is kept in C arrays, not Python
 * lists: between their checks and their write nothing may run Python code. A list or
 * tuple allocated there could start a collection, whose finalizers run Python code that
 * may let go of the GIL; another thread could then settle the tail and unmap the segment
 * before the entry was written (a SIGSEGV in tail_append, once in a full test run).
 * PyMem_Realloc never collects. */
typedef struct {
    PyObject *topic; /* strong */
    long partition;
    unsigned long long first;
    unsigned long long end;
} TailRun;

typedef struct {
    PyObject *topic; /* strong */
    long long partition;
    long long producer_id;
    long long epoch;
    long long base_sequence;
    unsigned long long first;
    unsigned long long last;
    long long count;
} TailIdentity;

typedef struct {
    PyObject_HEAD
    int armed;
    int has_buf;
    int settling;               /* settle() is building its lists: applied() must wait */
    Py_buffer buf;              /* the mapped segment, while armed */
    Py_ssize_t pos;             /* where the next entry goes */
    Py_ssize_t limit;           /* no entry ends past this */
    Py_ssize_t drop_at;         /* an entry ending past this disarms (the store drops pages) */
    unsigned long long next_serial;
    Py_ssize_t added;           /* bytes written since the last settle */
    Py_ssize_t records;         /* records written since the last settle */
    TailRun *runs;              /* finished runs, in order */
    Py_ssize_t run_count;
    Py_ssize_t run_capacity;
    TailIdentity *identities;   /* IDENTITY entries written, in order */
    Py_ssize_t identity_count;
    Py_ssize_t identity_capacity;
    PyObject *run_topic;        /* the open run's topic (strong), or NULL */
    long run_partition;
    unsigned long long run_first;
    unsigned long long run_end;
} JournalTail;

static void
tail_release(JournalTail *self)
{
    if (self->has_buf) {
        PyBuffer_Release(&self->buf);
        self->has_buf = 0;
    }
    self->armed = 0;
}

/* Forget the noted runs and identities (their topics' references too). */
static void
tail_forget(JournalTail *self)
{
    for (Py_ssize_t i = 0; i < self->run_count; i++) {
        Py_DECREF(self->runs[i].topic);
    }
    self->run_count = 0;
    for (Py_ssize_t i = 0; i < self->identity_count; i++) {
        Py_DECREF(self->identities[i].topic);
    }
    self->identity_count = 0;
}

static void
tail_dealloc(JournalTail *self)
{
    PyTypeObject *type = Py_TYPE(self);
    tail_release(self);
    tail_forget(self);
    PyMem_Free(self->runs);
    PyMem_Free(self->identities);
    Py_CLEAR(self->run_topic);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* ``items`` with room for one more than ``count`` (grown when full), or NULL with
 * ``items`` unchanged and no exception set (no memory). */
static void *
tail_room(void *items, Py_ssize_t count, Py_ssize_t *capacity, size_t item_size)
{
    if (count < *capacity) {
        return items;
    }
    Py_ssize_t bigger = *capacity < 8 ? 8 : *capacity * 2;
    if ((size_t)bigger > PY_SSIZE_T_MAX / item_size) {
        return NULL;
    }
    void *grown = PyMem_Realloc(items, (size_t)bigger * item_size);
    if (grown != NULL) {
        *capacity = bigger;
    }
    return grown;
}

/* Close the open run into ``runs``; 0, or -1 with MemoryError. Runs no Python code. */
static int
tail_close_run(JournalTail *self)
{
    if (self->run_topic == NULL) {
        return 0;
    }
    TailRun *runs = tail_room(self->runs, self->run_count, &self->run_capacity, sizeof(TailRun));
    if (runs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->runs = runs;
    TailRun *run = &runs[self->run_count++];
    run->topic = self->run_topic; /* the reference moves */
    run->partition = self->run_partition;
    run->first = self->run_first;
    run->end = self->run_end;
    self->run_topic = NULL;
    return 0;
}

PyDoc_STRVAR(tail_arm_doc,
"arm(target, pos, limit, next_serial, drop_at, /)\n\n"
"Let ``append`` write at ``pos`` of the writable buffer ``target``, entries ending at\n"
"``limit`` at most, serials from ``next_serial`` on; an entry ending past ``drop_at``\n"
"disarms it. Only a settled tail may be armed (RuntimeError otherwise).");

static PyObject *
tail_arm(JournalTail *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "arm expected 5 arguments, got %zd", nargs);
        return NULL;
    }
    if (self->added || self->run_topic != NULL || self->run_count || self->identity_count) {
        PyErr_SetString(PyExc_RuntimeError, "the journal tail must be settled before it is armed");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    unsigned long long next_serial = PyLong_AsUnsignedLongLong(args[3]);
    Py_ssize_t drop_at = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    tail_release(self);
    if (PyObject_GetBuffer(args[0], &self->buf, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    self->has_buf = 1;
    if (pos < 0 || limit > self->buf.len || pos > limit) {
        tail_release(self);
        PyErr_Format(PyExc_ValueError, "pos %zd and limit %zd do not fit a buffer of %zd bytes",
                     pos, limit, self->buf.len);
        return NULL;
    }
    self->pos = pos;
    self->limit = limit;
    self->drop_at = drop_at;
    self->next_serial = next_serial;
    self->armed = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(tail_append_doc,
"append(serial, topic, partition, timestamp_ms, key, value, headers=None, /) -> int\n\n"
"Write one RECORD entry where the tail is armed and return where it ends; -1 with\n"
"nothing written when the store's Python path must do it (see the type's doc). ``key``\n"
"and ``value`` are bytes or None, ``topic`` a str, ``headers`` None or a list of\n"
"``(str, bytes | None)`` tuples.");

static PyObject *
tail_append(JournalTail *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 && nargs != 7) {
        PyErr_Format(PyExc_TypeError, "append expected 6 or 7 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *headers = nargs == 7 && args[6] != Py_None ? args[6] : NULL;
    PyObject *topic = args[1];
    if (!self->armed || !PyLong_CheckExact(args[0]) || !PyUnicode_CheckExact(topic)
        || !PyLong_CheckExact(args[2]) || !PyLong_CheckExact(args[3])) {
        return PyLong_FromLong(-1);
    }
    unsigned long long serial = PyLong_AsUnsignedLongLong(args[0]);
    int overflow = 0;
    long long partition = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    int overflow_ts = 0;
    long long timestamp = PyLong_AsLongLongAndOverflow(args[3], &overflow_ts);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return PyLong_FromLong(-1);
    }
    if (serial < self->next_serial || overflow || overflow_ts || partition < 0
        || partition > INT32_MAX) {
        return PyLong_FromLong(-1);
    }
    Slice key, value;
    slice_init(&key);
    slice_init(&value);
    if (args[4] != Py_None) {
        if (!PyBytes_CheckExact(args[4])) {
            return PyLong_FromLong(-1);
        }
        key.ptr = PyBytes_AS_STRING(args[4]);
        key.len = PyBytes_GET_SIZE(args[4]);
    }
    if (args[5] != Py_None) {
        if (!PyBytes_CheckExact(args[5])) {
            return PyLong_FromLong(-1);
        }
        value.ptr = PyBytes_AS_STRING(args[5]);
        value.len = PyBytes_GET_SIZE(args[5]);
    }
    Py_ssize_t name_len;
    const char *name = PyUnicode_AsUTF8AndSize(topic, &name_len);
    if (name == NULL) {
        PyErr_Clear(); /* a lone surrogate: the Python path says so */
        return PyLong_FromLong(-1);
    }
    if (name_len > 0xFFFF || key.len > INT32_MAX || value.len > INT32_MAX) {
        return PyLong_FromLong(-1);
    }
    Py_ssize_t body = journal_body_size(name_len, key.len, value.len);
    if (headers != NULL) {
        Py_ssize_t extra = journal_headers_size(headers);
        if (extra < 0) {
            return PyLong_FromLong(-1);
        }
        body += extra;
    }
    if (body > self->limit - self->pos - JOURNAL_PREFIX) {
        return PyLong_FromLong(-1);
    }
    /* The run first: a failure there (memory) must leave nothing written. */
    if (self->run_topic == NULL || self->run_topic != topic || self->run_partition != partition
        || self->run_end != serial) {
        if (tail_close_run(self) < 0) {
            return NULL;
        }
        Py_INCREF(topic);
        self->run_topic = topic;
        self->run_partition = (long)partition;
        self->run_first = serial;
    }
    journal_write_record((unsigned char *)self->buf.buf + self->pos, body, serial,
                         (int32_t)partition, timestamp, name, name_len, &key, &value, headers);
    Py_ssize_t end = self->pos + JOURNAL_PREFIX + body;
    self->added += end - self->pos;
    self->pos = end;
    self->records += 1;
    self->next_serial = serial + 1;
    self->run_end = serial + 1;
    if (end > self->drop_at) {
        tail_release(self); /* the store's Python path drops the pages behind, and re-arms */
    }
    return PyLong_FromSsize_t(end);
}

PyDoc_STRVAR(tail_identity_doc,
"identity(topic, partition, producer_id, epoch, base_sequence, first_serial, last_serial,\n"
"         record_count, /) -> int\n\n"
"Write one IDENTITY entry where the tail is armed and return where it ends; -1 with\n"
"nothing written when the store's Python path must do it (not armed, no room, a field\n"
"of another type or out of range, no memory). ``settle`` hands the arguments back.");

/* The sender journals a batch's producer id, epoch and base sequence before each Produce
 * request (about one entry per 15 records of 1 KiB). Through the store's lock that cost
 * the event loop's thread about 7 us an entry (the entry built, encoded, the lock taken,
 * the tail settled), 9% of the journal level's throughput (benchmarks/custody.py); here,
 * under the GIL, it is one call. */
static PyObject *
tail_identity(JournalTail *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "identity expected 8 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *topic = args[0];
    if (!self->armed || !PyUnicode_CheckExact(topic)) {
        return PyLong_FromLong(-1);
    }
    for (Py_ssize_t i = 1; i < 8; i++) {
        if (!PyLong_CheckExact(args[i])) {
            return PyLong_FromLong(-1);
        }
    }
    int over[5] = {0, 0, 0, 0, 0};
    long long partition = PyLong_AsLongLongAndOverflow(args[1], &over[0]);
    long long producer_id = PyLong_AsLongLongAndOverflow(args[2], &over[1]);
    long long epoch = PyLong_AsLongLongAndOverflow(args[3], &over[2]);
    long long base_sequence = PyLong_AsLongLongAndOverflow(args[4], &over[3]);
    long long count = PyLong_AsLongLongAndOverflow(args[7], &over[4]);
    unsigned long long first = PyLong_AsUnsignedLongLong(args[5]);
    unsigned long long last = PyErr_Occurred() ? 0 : PyLong_AsUnsignedLongLong(args[6]);
    if (PyErr_Occurred()) {
        PyErr_Clear(); /* a negative serial: the Python path says so */
        return PyLong_FromLong(-1);
    }
    if (over[0] || over[1] || over[2] || over[3] || over[4] || partition < 0
        || partition > INT32_MAX || epoch < INT16_MIN || epoch > INT16_MAX
        || base_sequence < INT32_MIN || base_sequence > INT32_MAX || count < 0
        || count > (long long)UINT32_MAX) {
        return PyLong_FromLong(-1);
    }
    Py_ssize_t name_len;
    const char *name = PyUnicode_AsUTF8AndSize(topic, &name_len);
    if (name == NULL) {
        PyErr_Clear();
        return PyLong_FromLong(-1);
    }
    Py_ssize_t body = JOURNAL_IDENTITY_FIXED + name_len;
    if (name_len > 0xFFFF || body > self->limit - self->pos - JOURNAL_PREFIX) {
        return PyLong_FromLong(-1);
    }
    /* Noted first: a failure there (memory) must leave nothing written. */
    TailIdentity *identities = tail_room(self->identities, self->identity_count,
                                         &self->identity_capacity, sizeof(TailIdentity));
    if (identities == NULL) {
        return PyLong_FromLong(-1);
    }
    self->identities = identities;
    TailIdentity *noted = &identities[self->identity_count++];
    Py_INCREF(topic);
    noted->topic = topic;
    noted->partition = partition;
    noted->producer_id = producer_id;
    noted->epoch = epoch;
    noted->base_sequence = base_sequence;
    noted->first = first;
    noted->last = last;
    noted->count = count;
    unsigned char *at = (unsigned char *)self->buf.buf + self->pos;
    unsigned char *start = at + JOURNAL_PREFIX;
    unsigned char *p = start;
    *p++ = JOURNAL_IDENTITY_KIND;
    p = put_le(p, (uint64_t)producer_id, 8);
    p = put_le(p, (uint64_t)(uint16_t)(int16_t)epoch, 2);
    p = put_le(p, (uint64_t)(uint32_t)partition, 4);
    p = put_le(p, (uint64_t)(uint32_t)(int32_t)base_sequence, 4);
    p = put_le(p, first, 8);
    p = put_le(p, last, 8);
    p = put_le(p, (uint64_t)count, 4);
    p = put_le(p, (uint64_t)name_len, 2);
    memcpy(p, name, (size_t)name_len);
    uint32_t crc = crc32c_of(start, (size_t)body);
    __asm__ __volatile__("" ::: "memory"); /* the length and CRC last, as for a record */
    put_le(put_le(at, (uint64_t)body, 4), crc, 4);
    Py_ssize_t end = self->pos + JOURNAL_PREFIX + body;
    self->added += end - self->pos;
    self->pos = end;
    if (end > self->drop_at) {
        tail_release(self);
    }
    return PyLong_FromSsize_t(end);
}

PyDoc_STRVAR(tail_settle_doc,
"settle() -> tuple[int, int, int, list[tuple[str, int, int, int]] | None,\n"
"                 list[tuple[str, int, int, int, int, int, int, int]] | None] | None\n\n"
"Disarm; return None when nothing was written since the last ``applied``, else (pos,\n"
"next_serial, bytes written, runs, identities): each run a topic, a partition and the\n"
"serials [first, end) of records written to it, in order; each identity the arguments\n"
"of an ``identity`` call that wrote its entry, in order (None for no run or identity).\n"
"The state is kept until ``applied``: a settle whose apply was cut short (a signal\n"
"handler raising in Python) gets it again.");

/* The lists noted since the last ``applied`` (None for none); NULL with an exception.
 * Allocating them may run Python code (a collection's finalizers), and so let other
 * threads run: the tail is disarmed by then, so their appends refuse, and ``applied``
 * refuses while ``settling`` is set, so the arrays stay as they are. */
static PyObject *
tail_runs_list(JournalTail *self)
{
    if (self->run_count == 0) {
        Py_RETURN_NONE;
    }
    PyObject *runs = PyList_New(self->run_count);
    for (Py_ssize_t i = 0; runs != NULL && i < self->run_count; i++) {
        TailRun *run = &self->runs[i];
        PyObject *item = Py_BuildValue("(OlKK)", run->topic, run->partition, run->first,
                                       run->end);
        if (item == NULL) {
            Py_CLEAR(runs);
            break;
        }
        PyList_SET_ITEM(runs, i, item);
    }
    return runs;
}

static PyObject *
tail_identities_list(JournalTail *self)
{
    if (self->identity_count == 0) {
        Py_RETURN_NONE;
    }
    PyObject *identities = PyList_New(self->identity_count);
    for (Py_ssize_t i = 0; identities != NULL && i < self->identity_count; i++) {
        TailIdentity *noted = &self->identities[i];
        PyObject *item = Py_BuildValue("(OLLLLKKL)", noted->topic, noted->partition,
                                       noted->producer_id, noted->epoch, noted->base_sequence,
                                       noted->first, noted->last, noted->count);
        if (item == NULL) {
            Py_CLEAR(identities);
            break;
        }
        PyList_SET_ITEM(identities, i, item);
    }
    return identities;
}

static PyObject *
tail_settle(JournalTail *self, PyObject *Py_UNUSED(ignored))
{
    tail_release(self);
    if (self->added == 0) {
        Py_RETURN_NONE;
    }
    if (tail_close_run(self) < 0) {
        return NULL; /* memory: still dirty, the next settle tries again */
    }
    self->settling += 1;
    PyObject *runs = tail_runs_list(self);
    PyObject *identities = runs == NULL ? NULL : tail_identities_list(self);
    self->settling -= 1;
    if (identities == NULL) {
        Py_XDECREF(runs);
        return NULL;
    }
    return Py_BuildValue("(nKnNN)", self->pos, self->next_serial, self->added, runs, identities);
}

PyDoc_STRVAR(tail_applied_doc,
"applied()\n\n"
"The store took in what ``settle`` returned: forget it (the tail may be armed again).");

static PyObject *
tail_applied(JournalTail *self, PyObject *Py_UNUSED(ignored))
{
    if (self->settling) {
        PyErr_SetString(PyExc_RuntimeError, "applied() while settle() builds its lists");
        return NULL;
    }
    tail_forget(self);
    self->added = 0;
    self->records = 0;
    Py_RETURN_NONE;
}

static PyObject *
tail_get_next_serial(JournalTail *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->next_serial);
}

static PyObject *
tail_get_added(JournalTail *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->added);
}

static PyObject *
tail_get_records(JournalTail *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->records);
}

static PyObject *
tail_get_armed(JournalTail *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->armed);
}

static PyMethodDef tail_methods[] = {
    {"arm", (PyCFunction)(void (*)(void))tail_arm, METH_FASTCALL, tail_arm_doc},
    {"append", (PyCFunction)(void (*)(void))tail_append, METH_FASTCALL, tail_append_doc},
    {"identity", (PyCFunction)(void (*)(void))tail_identity, METH_FASTCALL, tail_identity_doc},
    {"settle", (PyCFunction)tail_settle, METH_NOARGS, tail_settle_doc},
    {"applied", (PyCFunction)tail_applied, METH_NOARGS, tail_applied_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tail_getset[] = {
    {"next_serial", (getter)tail_get_next_serial, NULL,
     "The serial after the last one written (as armed, or since).", NULL},
    {"added", (getter)tail_get_added, NULL, "Bytes written since the last applied.", NULL},
    {"records", (getter)tail_get_records, NULL, "Records written since the last applied.", NULL},
    {"armed", (getter)tail_get_armed, NULL, "Whether append may write.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(tail_doc,
"JournalTail()\n\n"
"The produce path's appends to a journal's newest segment, without the store's lock\n"
"(see pykaf/_producer/journal/_segments.py and this type's comment in _crecords.c).");

static PyType_Slot tail_slots[] = {
    {Py_tp_dealloc, tail_dealloc},
    {Py_tp_methods, tail_methods},
    {Py_tp_getset, tail_getset},
    {Py_tp_doc, (void *)tail_doc},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec tail_spec = {
    .name = "pykaf.protocol._crecords.JournalTail",
    .basicsize = sizeof(JournalTail),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = tail_slots,
};

static int
crecords_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &tail_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "JournalTail", type);
    Py_DECREF(type);
    return rc;
}
#endif /* x86 with GCC or Clang */

/* ------------------------------------------------------------------------------------ */
/* Running record sizes of plain values (the producer's produce_batch of bytes)          */
/* ------------------------------------------------------------------------------------ */

/* The twin of ``pykaf._producer._accumulator.plain_value_ends_python``: one pass where
 * Python needs four (type check, sizes, largest, running total), about 10 ns a value
 * instead of 100. Values that are not all exact bytes, or one larger than the limit,
 * give None: the caller then takes its per-item path, which checks and converts. */
PyDoc_STRVAR(plain_value_ends_doc,
"plain_value_ends(values, overhead, limit, /) -> list[int] | None\n\n"
"Running totals of overhead + len(value) over a list of bytes; None if the list is\n"
"empty, holds anything but bytes, or a value's overhead + len is above limit.");

static PyObject *
plain_value_ends(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "plain_value_ends() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *values = args[0];
    if (!PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "plain_value_ends() wants a list");
        return NULL;
    }
    Py_ssize_t overhead = PyLong_AsSsize_t(args[1]);
    if (overhead == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(values);
    if (count == 0) {
        Py_RETURN_NONE;
    }
    PyObject *ends = PyList_New(count);
    if (ends == NULL) {
        return NULL;
    }
    /* PyList_New may run a garbage collection, and with it any finaliser, which could
     * resize ``values``; nothing below runs Python code (ints are not collected). */
    if (PyList_GET_SIZE(values) != count) {
        Py_DECREF(ends);
        Py_RETURN_NONE;
    }
    long long total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        if (!PyBytes_CheckExact(value)) {
            Py_DECREF(ends);
            Py_RETURN_NONE;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(value) + overhead;
        if (size > limit) {
            Py_DECREF(ends);
            Py_RETURN_NONE;
        }
        total += size;
        PyObject *end = PyLong_FromLongLong(total);
        if (end == NULL) {
            Py_DECREF(ends);
            return NULL;
        }
        PyList_SET_ITEM(ends, i, end);
    }
    return ends;
}

/* ------------------------------------------------------------------------------------ */
/* The accumulator's records of plain values, out of the collector's sight               */
/* ------------------------------------------------------------------------------------ */

/* The twin of ``pykaf._producer._accumulator.extend_plain_records_python``. A record the
 * accumulator keeps is a tuple ``(key, value, headers, timestamp)``; for a plain value
 * that is ``(None, value, None, None)``, which can never be part of a reference cycle.
 * Made by Python, each such tuple is tracked by the cyclic collector until a collection
 * finds it holds nothing collectable: ``produce_batch`` of 1,000 values then paid for
 * about 1.4 young-generation collections that walked those tuples, about 20% of its CPU
 * (measured: 0.41 us a record against 0.32 with the collector's threshold raised). Made
 * here, they are untracked from birth: a collection has nothing of them to walk. */
PyDoc_STRVAR(extend_plain_records_doc,
"extend_plain_records(records, values, start, stop, /) -> None\n\n"
"records.extend((None, v, None, None) for v in values[start:stop]), the tuples\n"
"untracked by the cyclic collector (they hold no container).");

static PyObject *
extend_plain_records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "extend_plain_records() takes 4 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    PyObject *records = args[0], *values = args[1];
    if (!PyList_CheckExact(records) || !PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "extend_plain_records() wants two lists");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t stop = PyLong_AsSsize_t(args[3]);
    if (stop == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (start < 0 || stop < start || stop > PyList_GET_SIZE(values)) {
        PyErr_Format(PyExc_ValueError, "extend_plain_records(): %zd:%zd is outside 0:%zd",
                     start, stop, PyList_GET_SIZE(values));
        return NULL;
    }
    for (Py_ssize_t i = start; i < stop; i++) {
        /* PyTuple_New may run a collection, and with it finalisers, which could resize
         * ``values``: it is read only after, and checked again. */
        PyObject *record = PyTuple_New(4);
        if (record == NULL) {
            return NULL;
        }
        if (i >= PyList_GET_SIZE(values)) {
            Py_DECREF(record);
            PyErr_SetString(PyExc_RuntimeError,
                            "extend_plain_records(): the values changed while being taken");
            return NULL;
        }
        PyObject *value = PyList_GET_ITEM(values, i);
        Py_INCREF(value);
        Py_INCREF(Py_None);
        Py_INCREF(Py_None);
        Py_INCREF(Py_None);
        PyTuple_SET_ITEM(record, 0, Py_None);
        PyTuple_SET_ITEM(record, 1, value);
        PyTuple_SET_ITEM(record, 2, Py_None);
        PyTuple_SET_ITEM(record, 3, Py_None);
        if (PyBytes_CheckExact(value) || value == Py_None) {
            PyObject_GC_UnTrack(record); /* nothing in it can hold a cycle */
        }
        int failed = PyList_Append(records, record);
        Py_DECREF(record);
        if (failed) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------ */
/* A body's lines, for the gateway's batches of lines                                    */
/* ------------------------------------------------------------------------------------ */

/* The twin of ``pykaf.protocol._records.split_lines_python``. ``bytes.split(b"\n")``
 * steps through a one-byte separator a byte at a time: 51 us for 1,000 lines of 100
 * bytes, a tenth of ``/batch/async``'s CPU per request. ``memchr`` finds each newline,
 * and the list is made at its final size: 16 us (measured, the same body). */
PyDoc_STRVAR(split_lines_doc,
"split_lines(body, /) -> list[bytes]\n\n"
"The lines of body: split at each newline, a carriage return before it dropped, the\n"
"newline that ends the body not starting another (empty) line.");

static Py_ssize_t
line_count(const char *data, Py_ssize_t size)
{
    Py_ssize_t count = 0, at = 0;
    while (at < size) {
        const char *newline = memchr(data + at, '\n', (size_t)(size - at));
        count++;
        if (newline == NULL) {
            break;
        }
        at = newline - data + 1;
    }
    return count;
}

static PyObject *
split_lines(PyObject *Py_UNUSED(module), PyObject *body)
{
    if (!PyBytes_CheckExact(body)) {
        PyErr_Format(PyExc_TypeError, "split_lines() wants bytes, not %.100s",
                     Py_TYPE(body)->tp_name);
        return NULL;
    }
    /* Bytes are immutable: nothing below can change them, even a collection. */
    const char *data = PyBytes_AS_STRING(body);
    Py_ssize_t size = PyBytes_GET_SIZE(body);
    Py_ssize_t count = line_count(data, size);
    PyObject *lines = PyList_New(count);
    if (lines == NULL) {
        return NULL;
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *newline = memchr(data + at, '\n', (size_t)(size - at));
        Py_ssize_t end = newline == NULL ? size : newline - data;
        Py_ssize_t stop = end > at && data[end - 1] == '\r' ? end - 1 : end;
        PyObject *line = PyBytes_FromStringAndSize(data + at, stop - at);
        if (line == NULL) {
            Py_DECREF(lines);
            return NULL;
        }
        PyList_SET_ITEM(lines, i, line);
        at = end + 1;
    }
    return lines;
}

/* ------------------------------------------------------------------------------------ */
/* Module                                                                               */
/* ------------------------------------------------------------------------------------ */

static PyMethodDef crecords_methods[] = {
    {"encode_records", (PyCFunction)(void (*)(void))encode_records, METH_FASTCALL,
     encode_records_doc},
    {"decode_records", (PyCFunction)(void (*)(void))decode_records, METH_FASTCALL,
     decode_records_doc},
    {"murmur2", (PyCFunction)murmur2, METH_O, murmur2_doc},
    {"plain_value_ends", (PyCFunction)(void (*)(void))plain_value_ends, METH_FASTCALL,
     plain_value_ends_doc},
    {"extend_plain_records", (PyCFunction)(void (*)(void))extend_plain_records, METH_FASTCALL,
     extend_plain_records_doc},
    {"split_lines", (PyCFunction)split_lines, METH_O, split_lines_doc},
#ifdef PYKAF_JOURNAL_RECORDS
    {"journal_record_into", (PyCFunction)(void (*)(void))journal_record_into, METH_FASTCALL,
     journal_record_into_doc},
#endif
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot crecords_slots[] = {
#ifdef PYKAF_JOURNAL_RECORDS
    {Py_mod_exec, crecords_exec},
#endif
#if PY_VERSION_HEX >= 0x030C0000
    /* No module state at all, so every interpreter can share this code. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    /* Not Py_mod_gil/Py_MOD_GIL_NOT_USED: the loops read lists and tuples without taking
     * their critical sections, which is only safe under the GIL. */
    {0, NULL},
};

PyDoc_STRVAR(crecords_doc,
"The per-record loops of Kafka v2 record batches, in C (see _record_codec for the contract).");

static struct PyModuleDef crecords_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pykaf.protocol._crecords",
    .m_doc = crecords_doc,
    .m_size = 0,
    .m_methods = crecords_methods,
    .m_slots = crecords_slots,
};

PyMODINIT_FUNC
PyInit__crecords(void)
{
    return PyModuleDef_Init(&crecords_module);
}
