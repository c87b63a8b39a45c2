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
    unsigned char *scratch = NULL;
    Py_ssize_t capacity = 0;

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
        if (size > capacity) {
            PyMem_Free(scratch);
            capacity = size < 4096 ? 4096 : size;
            scratch = PyMem_Malloc(capacity);
            if (scratch == NULL) {
                PyErr_NoMemory();
                Py_CLEAR(result);
                goto done;
            }
        }
        Py_ssize_t out = 0;
        int pending = 0;
        for (Py_ssize_t k = 0; k < size; k++) {
            unsigned char c = map[data[k]];
            if (c == ' ') {
                pending = out > 0;
            } else {
                if (pending) {
                    scratch[out++] = ' ';
                    pending = 0;
                }
                scratch[out++] = c;
            }
        }
        PyObject *folded = PyBytes_FromStringAndSize((const char *)scratch, out);
        if (folded == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, folded);
    }
done:
    PyMem_Free(scratch);
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
