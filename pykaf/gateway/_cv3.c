/*
 * The hot path of Confluent v3's streaming produce route, in C: the common record in,
 * its delivery reports out.
 *
 * Same contract as the pure-Python twins in ``pykaf/gateway/_v3_fast.py`` (read its
 * module docstring), which the tests run on the same inputs and demand identical
 * results of. Our own code because it is measurably faster: per record of 100 bytes,
 * the JSON decoder and ``parse_binary`` took 1.3 us and the reports' f-strings 0.3 us,
 * a third of the route's whole CPU; here both are a few tens of nanoseconds.
 *
 * ``take_binary_values`` accepts a subset of what the Python path accepts: anything it
 * is not sure of (an escape in a string, padding it does not expect, a value split by
 * the end of the text) stops it, and the Python path decides that value. So it can never
 * accept what the Python path would refuse, nor decode differently.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* take_binary_values                                                                   */
/* ------------------------------------------------------------------------------------ */

PyDoc_STRVAR(take_binary_values_doc,
"take_binary_values(text, pos, limit, out, /) -> int\n\n"
"From pos on, append to out the bytes of each value of the form\n"
"{\"value\": {\"type\": \"BINARY\", \"data\": \"<base64>\"}} (whitespace between\n"
"tokens, type and data in either order) whose JSON is at most limit characters,\n"
"skipping the whitespace between them; returns where the first other value starts\n"
"(or len(text)).");

/* 0-63 for the base64 alphabet, 64 for '=', 255 for the rest. */
static unsigned char b64_value[256];

static void
b64_init(void)
{
    memset(b64_value, 255, sizeof b64_value);
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; i++) {
        b64_value[(unsigned char)alphabet[i]] = (unsigned char)i;
    }
    b64_value['='] = 64;
}

static inline int
is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A cursor over 1-byte text: ``at`` never passes ``end``. */
typedef struct {
    const unsigned char *at;
    const unsigned char *end;
} Cursor;

static inline void
skip_blanks(Cursor *c)
{
    while (c->at < c->end && is_blank(*c->at)) {
        c->at++;
    }
}

static inline int
take_char(Cursor *c, unsigned char want)
{
    skip_blanks(c);
    if (c->at < c->end && *c->at == want) {
        c->at++;
        return 1;
    }
    return 0;
}

/* A string literal with no escape in it: its content [*start, *start + *size). */
static int
take_plain_string(Cursor *c, const unsigned char **start, Py_ssize_t *size)
{
    if (!take_char(c, '"')) {
        return 0;
    }
    const unsigned char *from = c->at;
    const unsigned char *quote = memchr(from, '"', (size_t)(c->end - from));
    if (quote == NULL || memchr(from, '\\', (size_t)(quote - from)) != NULL) {
        return 0;
    }
    *start = from;
    *size = quote - from;
    c->at = quote + 1;
    return 1;
}

static inline int
take_word(Cursor *c, const char *word)
{
    const unsigned char *start;
    Py_ssize_t size;
    Py_ssize_t want = (Py_ssize_t)strlen(word);
    return take_plain_string(c, &start, &size) && size == want && memcmp(start, word, (size_t)want) == 0;
}

/* Base64 as ``binascii.a2b_base64(strict_mode=True)`` decodes it, for the plain form
 * only: a multiple of 4 characters, the alphabet, one or two '=' at the very end.
 * Anything else is left to binascii. The size the plain form decodes to, or -1. */
static Py_ssize_t
b64_decoded_size(const unsigned char *data, Py_ssize_t size, Py_ssize_t *pads_out)
{
    if (size % 4 != 0) {
        return -1;
    }
    Py_ssize_t pads = 0;
    if (size > 0 && data[size - 1] == '=') {
        pads = (size > 1 && data[size - 2] == '=') ? 2 : 1;
    }
    *pads_out = pads;
    return size / 4 * 3 - pads;
}

/* Decode in one pass, checking as it goes (every table value OR-ed: 64 and 255 both
 * set a bit above the six of a digit): 0, or -1 when a character is not base64 (one
 * '=' before the padding included). */
static int
b64_decode(const unsigned char *data, Py_ssize_t size, Py_ssize_t pads, unsigned char *out)
{
    Py_ssize_t whole = (size / 4 - (pads ? 1 : 0)) * 4;
    unsigned int seen = 0;
    Py_ssize_t i = 0;
    for (; i < whole; i += 4) {
        unsigned int a = b64_value[data[i]], b = b64_value[data[i + 1]];
        unsigned int c = b64_value[data[i + 2]], d = b64_value[data[i + 3]];
        seen |= a | b | c | d;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        *out++ = (unsigned char)(v >> 16);
        *out++ = (unsigned char)(v >> 8);
        *out++ = (unsigned char)v;
    }
    if (pads) {
        unsigned int a = b64_value[data[i]], b = b64_value[data[i + 1]];
        unsigned int c = pads == 1 ? b64_value[data[i + 2]] : 0;
        seen |= a | b | c;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        *out++ = (unsigned char)(v >> 16);
        if (pads == 1) {
            *out++ = (unsigned char)(v >> 8);
        }
    }
    return (seen & 0xC0) ? -1 : 0;
}

/* One common value at c->at (blanks before it skipped); its base64 data, or 0. */
static int
take_common(Cursor *c, const unsigned char **data, Py_ssize_t *size)
{
    if (!take_char(c, '{') || !take_word(c, "value") || !take_char(c, ':') || !take_char(c, '{')) {
        return 0;
    }
    int have_type = 0, have_data = 0;
    for (int member = 0; member < 2; member++) {
        if (member == 1 && !take_char(c, ',')) {
            return 0;
        }
        const unsigned char *name;
        Py_ssize_t name_size;
        if (!take_plain_string(c, &name, &name_size) || !take_char(c, ':')) {
            return 0;
        }
        if (name_size == 4 && memcmp(name, "type", 4) == 0 && !have_type) {
            if (!take_word(c, "BINARY")) {
                return 0;
            }
            have_type = 1;
        }
        else if (name_size == 4 && memcmp(name, "data", 4) == 0 && !have_data) {
            if (!take_plain_string(c, data, size)) {
                return 0;
            }
            have_data = 1;
        }
        else {
            return 0;
        }
    }
    return take_char(c, '}') && take_char(c, '}');
}

static PyObject *
take_binary_values(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "take_binary_values() takes 4 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    PyObject *out = args[3];
    if (!PyUnicode_CheckExact(text) || !PyList_CheckExact(out)) {
        PyErr_SetString(PyExc_TypeError, "take_binary_values() wants (str, int, int, list)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if ((pos == -1 || limit == -1) && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (pos < 0 || pos > length) {
        PyErr_SetString(PyExc_ValueError, "take_binary_values(): pos outside the text");
        return NULL;
    }
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND) {
        /* Wider text: the blanks are skipped, but the common record is never looked for. */
        int kind = PyUnicode_KIND(text);
        const void *data = PyUnicode_DATA(text);
        while (pos < length) {
            Py_UCS4 c = PyUnicode_READ(kind, data, pos);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                break;
            }
            pos++;
        }
        return PyLong_FromSsize_t(pos);
    }
    /* Text is immutable and nothing below runs Python code: the buffer stays put. */
    const unsigned char *base = PyUnicode_1BYTE_DATA(text);
    Cursor c = {base + pos, base + length};
    while (1) {
        skip_blanks(&c);
        const unsigned char *start = c.at;
        const unsigned char *data;
        Py_ssize_t size;
        if (start == c.end || !take_common(&c, &data, &size) || c.at - start > limit) {
            return PyLong_FromSsize_t(start - base);
        }
        Py_ssize_t pads;
        Py_ssize_t decoded = b64_decoded_size(data, size, &pads);
        if (decoded < 0) {
            return PyLong_FromSsize_t(start - base);
        }
        PyObject *value = PyBytes_FromStringAndSize(NULL, decoded);
        if (value == NULL) {
            return NULL;
        }
        if (b64_decode(data, size, pads, (unsigned char *)PyBytes_AS_STRING(value)) < 0) {
            Py_DECREF(value);
            return PyLong_FromSsize_t(start - base);
        }
        int failed = PyList_Append(out, value);
        Py_DECREF(value);
        if (failed) {
            return NULL;
        }
    }
}

/* ------------------------------------------------------------------------------------ */
/* delivered_reports                                                                    */
/* ------------------------------------------------------------------------------------ */

PyDoc_STRVAR(delivered_reports_doc,
"delivered_reports(head, partition, offset, when, values, start, stop, /) -> str\n\n"
"The reports of values[start:stop], delivered to partition from offset on (each the\n"
"next; -1 for all when offset is -1), one per line: head, the partition, the offset,\n"
"when, and the value's type BINARY and size. head and when must be ASCII.");

static Py_ssize_t
decimal_size(long long v)
{
    Py_ssize_t n = v < 0 ? 2 : 1;
    unsigned long long u = v < 0 ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v;
    while (u >= 10) {
        u /= 10;
        n++;
    }
    return n;
}

static char *
put_decimal(char *at, long long v)
{
    char digits[24];
    int n = 0;
    unsigned long long u = v < 0 ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *at++ = '-';
    }
    while (n) {
        *at++ = digits[--n];
    }
    return at;
}

static const char OFFSET_TEXT[] = ",\"offset\":";
static const char SIZE_TEXT[] = ",\"value\":{\"type\":\"BINARY\",\"size\":";

static PyObject *
delivered_reports(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "delivered_reports() takes 7 arguments");
        return NULL;
    }
    PyObject *head = args[0], *when = args[3], *values = args[4];
    if (!PyUnicode_CheckExact(head) || !PyUnicode_CheckExact(when) || !PyList_CheckExact(values)
        || !PyUnicode_IS_ASCII(head) || !PyUnicode_IS_ASCII(when)) {
        PyErr_SetString(PyExc_TypeError,
                        "delivered_reports() wants (ASCII str, int, int, ASCII str, list, int, int)");
        return NULL;
    }
    long long partition = PyLong_AsLongLong(args[1]);
    long long offset = PyLong_AsLongLong(args[2]);
    Py_ssize_t start = PyLong_AsSsize_t(args[5]);
    Py_ssize_t stop = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (start < 0 || stop > PyList_GET_SIZE(values) || start > stop) {
        PyErr_SetString(PyExc_ValueError, "delivered_reports(): start and stop outside values");
        return NULL;
    }
    if (offset < -1 || offset > INT64_MAX - (stop - start)) {
        PyErr_SetString(PyExc_ValueError, "delivered_reports(): offset out of range");
        return NULL;
    }
    Py_ssize_t head_size = PyUnicode_GET_LENGTH(head), when_size = PyUnicode_GET_LENGTH(when);
    Py_ssize_t fixed = head_size + decimal_size(partition) + (Py_ssize_t)sizeof OFFSET_TEXT - 1
                       + when_size + (Py_ssize_t)sizeof SIZE_TEXT - 1 + 2 + 1;  /* "}}" "\n" */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = start; i < stop; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        if (!PyBytes_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "delivered_reports(): values must be bytes");
            return NULL;
        }
        long long at = offset < 0 ? -1 : offset + (i - start);
        total += fixed + decimal_size(at) + decimal_size(PyBytes_GET_SIZE(value));
    }
    if (total > 0) {
        total -= 1;  /* no newline after the last */
    }
    PyObject *text = PyUnicode_New(total, 127);
    if (text == NULL) {
        return NULL;
    }
    char *at = (char *)PyUnicode_1BYTE_DATA(text);
    const char *head_data = (const char *)PyUnicode_1BYTE_DATA(head);
    const char *when_data = (const char *)PyUnicode_1BYTE_DATA(when);
    for (Py_ssize_t i = start; i < stop; i++) {
        if (i > start) {
            *at++ = '\n';
        }
        memcpy(at, head_data, (size_t)head_size);
        at = put_decimal(at + head_size, partition);
        memcpy(at, OFFSET_TEXT, sizeof OFFSET_TEXT - 1);
        at = put_decimal(at + sizeof OFFSET_TEXT - 1, offset < 0 ? -1 : offset + (i - start));
        memcpy(at, when_data, (size_t)when_size);
        at += when_size;
        memcpy(at, SIZE_TEXT, sizeof SIZE_TEXT - 1);
        at = put_decimal(at + sizeof SIZE_TEXT - 1, PyBytes_GET_SIZE(PyList_GET_ITEM(values, i)));
        *at++ = '}';
        *at++ = '}';
    }
    return text;
}

/* ------------------------------------------------------------------------------------ */
/* Module                                                                               */
/* ------------------------------------------------------------------------------------ */

static PyMethodDef cv3_methods[] = {
    {"take_binary_values", (PyCFunction)(void (*)(void))take_binary_values, METH_FASTCALL,
     take_binary_values_doc},
    {"delivered_reports", (PyCFunction)(void (*)(void))delivered_reports, METH_FASTCALL,
     delivered_reports_doc},
    {NULL, NULL, 0, NULL},
};

static int
cv3_exec(PyObject *Py_UNUSED(module))
{
    b64_init();  /* the same table every time: idempotent */
    return 0;
}

static PyModuleDef_Slot cv3_slots[] = {
    {Py_mod_exec, cv3_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef cv3_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pykaf.gateway._cv3",
    .m_doc = "The v3 streaming produce route's per-record loops (see _v3_fast.py).",
    .m_size = 0,
    .m_methods = cv3_methods,
    .m_slots = cv3_slots,
};

PyMODINIT_FUNC
PyInit__cv3(void)
{
    return PyModuleDef_Init(&cv3_module);
}
