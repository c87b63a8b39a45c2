/* Compiled hot path of the exact-dedup text key (issue 10, exact-only speed).
 *
 * fold_spaces(parts, table) is the byte pass of transforms.core.hashing.text_keys: the
 * pure-Python/numpy path in that module is the reference and the fallback, and
 * tests/test_hashing.py holds the two (and text_key) equal on generated text.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

PyDoc_STRVAR(fold_spaces_doc,
"fold_spaces(parts, table) -> list[bytes]\n\n"
"Each part (bytes, or a str of ASCII characters only) mapped byte by byte through\n"
"``table`` (256 bytes), then its runs of spaces (b' ' after the mapping) collapsed to\n"
"one and the spaces at both ends dropped: ``b' '.join(part.translate(table).split(b' '))``\n"
"without empty words.  Raises TypeError for a part of another type or a str with a\n"
"non-ASCII character, ValueError when table is not 256 bytes.");

static PyObject *fold_spaces(PyObject *self, PyObject *args)
{
    PyObject *parts, *seq = NULL, *result = NULL;
    Py_buffer table = {0};

    if (!PyArg_ParseTuple(args, "Oy*", &parts, &table))
        return NULL;
    if (table.len != 256) {
        PyErr_SetString(PyExc_ValueError, "fold_spaces: table must be 256 bytes");
        goto done;
    }
    seq = PySequence_Fast(parts, "fold_spaces: parts must be a sequence");
    if (seq == NULL)
        goto done;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    result = PyList_New(count);
    if (result == NULL)
        goto done;
    const unsigned char *map = (const unsigned char *)table.buf;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *part = PySequence_Fast_GET_ITEM(seq, i);
        const unsigned char *data;
        Py_ssize_t size;
        if (PyBytes_Check(part)) {
            data = (const unsigned char *)PyBytes_AS_STRING(part);
            size = PyBytes_GET_SIZE(part);
        } else if (PyUnicode_Check(part) && PyUnicode_IS_ASCII(part)) {
            data = (const unsigned char *)PyUnicode_DATA(part);
            size = PyUnicode_GET_LENGTH(part);
        } else {
            PyErr_Format(PyExc_TypeError,
                         "fold_spaces: part %zd is %.100s, expected bytes or an ASCII str",
                         i, Py_TYPE(part)->tp_name);
            Py_CLEAR(result);
            goto done;
        }
        /* The folded part is at most as long as the part: written straight into a
         * bytes object of that size, then shrunk (no scratch buffer, no copy). */
        PyObject *folded = PyBytes_FromStringAndSize(NULL, size);
        if (folded == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(folded);
        Py_ssize_t n = 0;
        /* Branch-free: every mapped byte is written, and the write position moves
         * on unless the byte is a space following a space (or starting the part);
         * so runs of spaces leave one, leading spaces none, and at most one space
         * is left at the end, dropped below.  (The branchy form mispredicted at
         * every word boundary: about 2x slower on prose.) */
        int after_space = 1;
        for (Py_ssize_t k = 0; k < size; k++) {
            unsigned char c = map[data[k]];
            int space = (c == ' ');
            out[n] = c;
            n += !(space & after_space);
            after_space = space;
        }
        if (n > 0 && out[n - 1] == ' ')
            n--;
        if (n != size && _PyBytes_Resize(&folded, n) < 0) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, folded);
    }
done:
    Py_XDECREF(seq);
    PyBuffer_Release(&table);
    return result;
}

static PyMethodDef methods[] = {
    {"fold_spaces", fold_spaces, METH_VARARGS, fold_spaces_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastcore",
    "Compiled hot path of the exact-dedup text key (see transforms/core/hashing.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__fastcore(void)
{
    return PyModule_Create(&module);
}
