/* Compiled hot paths of the heuristic filters and language ID (issue 13, speed).
 *
 * Every function here is an exact re-implementation of a pure-Python reference kept in
 * the package (named in each docstring); tests/test_filters_native.py holds each equal to
 * its reference field by field on generated text.  Character classes are CPython's own:
 * Py_UNICODE_ISSPACE is what str.split() splits on, Py_UNICODE_ISALPHA what str.isalpha()
 * tests, Py_UNICODE_ISSPACE what str.strip() strips, so no Unicode table of ours can drift
 * from Python's.
 *
 * Hashing is deterministic (FNV-1a and a polynomial hash mod 2**64, never Python's hash())
 * and every hash match is confirmed by comparing the code points, so a collision costs a
 * comparison, never a wrong answer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                         */

static inline uint64_t mix64(uint64_t x)
{ /* splitmix64's finaliser: every output bit depends on every input bit */
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

static Py_ssize_t table_size(Py_ssize_t items)
{ /* a power of two >= 2 * items (load factor <= 0.5) */
    Py_ssize_t size = 16;
    while (size < 2 * items)
        size <<= 1;
    return size;
}

/* Py_UNICODE_ISALPHA / Py_UNICODE_ISSPACE of the first 256 code points, filled from those
 * very predicates when the module loads (they are function calls; the tables are not). */
static unsigned char LATIN1_ALPHA[256], LATIN1_SPACE[256];

static void fill_latin1_tables(void)
{
    for (Py_UCS4 ch = 0; ch < 256; ch++) {
        LATIN1_ALPHA[ch] = Py_UNICODE_ISALPHA(ch) ? 1 : 0;
        LATIN1_SPACE[ch] = Py_UNICODE_ISSPACE(ch) ? 1 : 0;
    }
}

static inline int is_alpha(Py_UCS4 ch)
{
    return ch < 256 ? LATIN1_ALPHA[ch] : Py_UNICODE_ISALPHA(ch);
}

static inline int is_space(Py_UCS4 ch)
{
    return ch < 256 ? LATIN1_SPACE[ch] : Py_UNICODE_ISSPACE(ch);
}

/* Characters of scripts written without spaces: text.NO_SPACE_SCRIPTS (one word each). */
static const Py_UCS4 NO_SPACE_RANGES[][2] = {
    {0x0E00, 0x0E7F}, {0x0E80, 0x0EFF}, {0x1000, 0x109F}, {0x1780, 0x17FF},
    {0x3040, 0x309F}, {0x30A0, 0x30FF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF},
    {0x4E00, 0x9FFF}, {0xF900, 0xFAFF}, {0xFF66, 0xFF9F}, {0x20000, 0x2EBEF},
};

static inline int is_no_space(Py_UCS4 ch)
{
    if (ch < 0x0E00)
        return 0;
    for (size_t k = 0; k < sizeof(NO_SPACE_RANGES) / sizeof(NO_SPACE_RANGES[0]); k++)
        if (ch >= NO_SPACE_RANGES[k][0] && ch <= NO_SPACE_RANGES[k][1])
            return 1;
    return 0;
}

/* A str's code points as CPython stores them (PEP 393): kind is the bytes per code
 * point (1, 2 or 4), data the code points, n how many. */
typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
} Text;

static inline Text text_of(PyObject *str)
{
    Text t = {PyUnicode_KIND(str), PyUnicode_DATA(str), PyUnicode_GET_LENGTH(str)};
    return t;
}

/* *t = text_of(arg), or -1 with TypeError "<fn>: text must be str". */
static int text_arg(PyObject *arg, const char *fn, Text *t)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s: text must be str", fn);
        return -1;
    }
    *t = text_of(arg);
    return 0;
}

/* The arguments (str, int) of a METH_VARARGS function: 0, or -1 with Python's error. */
static int text_and_size(PyObject *args, Text *t, Py_ssize_t *size)
{
    PyObject *str;
    if (!PyArg_ParseTuple(args, "Un", &str, size))
        return -1;
    *t = text_of(str);
    return 0;
}

/* Whether t holds a character of a script written without spaces. */
static int holds_no_space(Text t)
{
    if (t.kind == PyUnicode_1BYTE_KIND)  /* a 1-byte string holds nothing >= 0x100 */
        return 0;
    for (Py_ssize_t i = 0; i < t.n; i++)
        if (is_no_space(PyUnicode_READ(t.kind, t.data, i)))
            return 1;
    return 0;
}

/* has_no_space_script(text) -> bool */
static PyObject *has_no_space_script(PyObject *self, PyObject *arg)
{
    Text t;
    if (text_arg(arg, "has_no_space_script", &t) < 0)
        return NULL;
    return PyBool_FromLong(holds_no_space(t));
}

/* ------------------------------------------------------------------------------------ */
/* Word splitting: text.analyse_words' fast path                                         */

PyDoc_STRVAR(analyse_words_doc,
"analyse_words(text, cache, special) -> (words, symbols, symbol_chars, no_alpha, chars) or None\n\n"
"The fast path of transforms.reduction.filters.text.analyse_words: the chunks of\n"
"text.split(); a chunk for which str.isalpha() holds (and that is not 'cannot' in any\n"
"case) is its own token; any other chunk's (tokens, symbols, symbol_chars, no_alpha)\n"
"come from cache[chunk], or special(chunk) when absent (special memoises into cache).\n"
"None when text holds a character of a script written without spaces (the caller\n"
"then takes the per-chunk rules).");

/* A direct-mapped cache of chunk strings (2**15 slots, a slot keeps the last chunk that
 * hashed to it): a chunk seen before is the same str object again instead of a new one
 * (a str is immutable, so an equal object is the same value; its hash is then already
 * computed for the dict and set lookups that follow).  Bounded: at most 2**15 strs of at
 * most CHUNK_CACHE_LEN characters. */
#define CHUNK_CACHE_SLOTS (1 << 15)
#define CHUNK_CACHE_LEN 32

typedef struct {
    uint64_t hash;
    PyObject *str;
} ChunkSlot;

static ChunkSlot CHUNKS[CHUNK_CACHE_SLOTS];

/* text[start:start + len] as a str: the cached object when its code points match. */
static PyObject *chunk_str(PyObject *text, int kind, const void *data, Py_ssize_t start,
                           Py_ssize_t len, uint64_t hash)
{
    if (len > CHUNK_CACHE_LEN)
        return PyUnicode_Substring(text, start, start + len);
    ChunkSlot *slot = &CHUNKS[hash & (CHUNK_CACHE_SLOTS - 1)];
    PyObject *old = slot->str;
    if (old != NULL && slot->hash == hash && PyUnicode_GET_LENGTH(old) == len) {
        int okind = PyUnicode_KIND(old);
        const void *odata = PyUnicode_DATA(old);
        Py_ssize_t k = 0;
        while (k < len && PyUnicode_READ(okind, odata, k) == PyUnicode_READ(kind, data, start + k))
            k++;
        if (k == len)
            return Py_NewRef(old);
    }
    PyObject *str = PyUnicode_Substring(text, start, start + len);
    if (str == NULL)
        return NULL;
    slot->str = Py_NewRef(str);
    slot->hash = hash;
    Py_XDECREF(old);
    return str;
}

static PyObject *analyse_words(PyObject *self, PyObject *args)
{
    PyObject *text, *cache, *special;
    if (!PyArg_ParseTuple(args, "UO!O", &text, &PyDict_Type, &cache, &special))
        return NULL;
    Text t = text_of(text);
    int kind = t.kind;
    const void *data = t.data;
    Py_ssize_t n = t.n;
    if (holds_no_space(t))
        Py_RETURN_NONE;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t symbols = 0, symbol_chars = 0, no_alpha = 0, chars = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        while (i < n && is_space(PyUnicode_READ(kind, data, i)))
            i++;
        if (i >= n)
            break;
        Py_ssize_t start = i;
        int alpha = 1, ascii = 1;
        uint64_t hash = 0xCBF29CE484222325ULL;
        while (i < n) {
            Py_UCS4 ch = PyUnicode_READ(kind, data, i);
            if (is_space(ch))
                break;
            if (alpha && !is_alpha(ch))
                alpha = 0;
            if (ch >= 128)
                ascii = 0;
            hash = (hash ^ ch) * 0x100000001B3ULL;
            i++;
        }
        Py_ssize_t len = i - start;
        PyObject *chunk = chunk_str(text, kind, data, start, len, mix64(hash));
        if (chunk == NULL)
            goto fail;
        int plain = alpha;
        if (alpha && len == 6) {  /* 'cannot' in any case is split by the rules: can|not */
            if (ascii) {
                static const char cannot[] = "cannot";
                int same = 1;
                for (Py_ssize_t k = 0; k < 6 && same; k++) {
                    Py_UCS4 ch = PyUnicode_READ(kind, data, start + k);
                    if (ch >= 'A' && ch <= 'Z')
                        ch += 'a' - 'A';
                    same = ch == (Py_UCS4)cannot[k];
                }
                plain = !same;
            } else {  /* str.lower() itself, as the reference does */
                PyObject *lower = PyObject_CallMethod(chunk, "lower", NULL);
                if (lower == NULL) {
                    Py_DECREF(chunk);
                    goto fail;
                }
                plain = PyUnicode_CompareWithASCIIString(lower, "cannot") != 0;
                Py_DECREF(lower);
            }
        }
        if (plain) {
            int rc = PyList_Append(out, chunk);
            Py_DECREF(chunk);
            if (rc < 0)
                goto fail;
            chars += len;
            continue;
        }
        PyObject *found = PyDict_GetItemWithError(cache, chunk);  /* borrowed */
        if (found != NULL) {
            Py_INCREF(found);
        } else {
            if (PyErr_Occurred()) {
                Py_DECREF(chunk);
                goto fail;
            }
            found = PyObject_CallOneArg(special, chunk);
        }
        Py_DECREF(chunk);
        if (found == NULL)
            goto fail;
        if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 4
                || !PyList_Check(PyTuple_GET_ITEM(found, 0))) {
            Py_DECREF(found);
            PyErr_SetString(PyExc_TypeError,
                            "analyse_words: special(chunk) must give (tokens, symbols, symbol_chars, no_alpha)");
            goto fail;
        }
        PyObject *tokens = PyTuple_GET_ITEM(found, 0);
        Py_ssize_t counts[3];
        for (int k = 0; k < 3; k++) {
            counts[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(found, k + 1));
            if (counts[k] == -1 && PyErr_Occurred()) {
                Py_DECREF(found);
                goto fail;
            }
        }
        symbols += counts[0];
        symbol_chars += counts[1];
        no_alpha += counts[2];
        Py_ssize_t n_tokens = PyList_GET_SIZE(tokens);
        for (Py_ssize_t k = 0; k < n_tokens; k++) {
            PyObject *token = PyList_GET_ITEM(tokens, k);
            if (!PyUnicode_Check(token)) {
                Py_DECREF(found);
                PyErr_SetString(PyExc_TypeError, "analyse_words: a token is not str");
                goto fail;
            }
            chars += PyUnicode_GET_LENGTH(token);
            if (PyList_Append(out, token) < 0) {
                Py_DECREF(found);
                goto fail;
            }
        }
        Py_DECREF(found);
    }
    return Py_BuildValue("Nnnnn", out, symbols, symbol_chars, no_alpha, chars);
fail:
    Py_DECREF(out);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Gopher repetition: word n-gram figures (ngrams.top_ngram_chars / duplicate_ngram_chars) */
/*
 * The words are laid out once as S = "".join(words) (code points), with each word's
 * polynomial hash (mod 2**64, Horner: h = h * B + c + 1) and two word-level prefix hashes:
 * PJ over S, and PT over S with a space after every word.  The hash of any word-aligned
 * n-gram, joined without separator (the duplicate rule's key) or with single spaces and a
 * trailing one (the top rule's key, a one-to-one function of the spaced n-gram), is then
 * O(1).  Equal n-grams always hash equal; a hash match is confirmed on the code points.
 */

typedef struct {
    uint32_t hash;      /* the high half of the n-gram's hash (the low bits pick the slot) */
    int32_t first;      /* start position (word index) of the first occurrence */
    int32_t count;
    uint32_t gen;       /* the slot is in use when gen is the table's current generation */
} Slot;

/* One open-addressing table reused by every call and every n: a slot is empty unless its
 * gen is the current generation, so starting a new table costs one increment, not a
 * clear.  Only touched while the GIL is held and no Python code runs. */
static Slot *TABLE = NULL;
static Py_ssize_t TABLE_SIZE = 0;
static uint32_t TABLE_GEN = 0;

static int new_table(Py_ssize_t items, Py_ssize_t *mask)
{
    Py_ssize_t size = table_size(items);
    if (size > TABLE_SIZE || (TABLE_SIZE > (1 << 16) && size <= (1 << 16))) {
        /* grown for this document, or shrunk back after a very long one */
        Slot *t = PyMem_Calloc((size_t)size, sizeof(Slot));
        if (t == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        PyMem_Free(TABLE);
        TABLE = t;
        TABLE_SIZE = size;
        TABLE_GEN = 0;
    }
    if (++TABLE_GEN == 0) {  /* wrapped: clear once every 2**32 tables */
        memset(TABLE, 0, (size_t)TABLE_SIZE * sizeof(Slot));
        TABLE_GEN = 1;
    }
    *mask = size - 1;
    return 0;
}

#define POLY_BASE 0x9E3779B97F4A7C15ULL
#define POLY_BASE2 (POLY_BASE * POLY_BASE)  /* mod 2**64 */
#define FP_CHARS 16   /* characters of a position's prefix fingerprint */

static uint64_t *POWERS = NULL;        /* POLY_BASE**k mod 2**64, k < POWERS_LEN */
static Py_ssize_t POWERS_LEN = 0;

static int ensure_powers(Py_ssize_t length)
{
    if (POWERS_LEN >= length)
        return 0;
    Py_ssize_t size = POWERS_LEN ? POWERS_LEN : 4096;
    while (size < length)
        size *= 2;
    uint64_t *p = PyMem_Malloc((size_t)size * sizeof(uint64_t));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    p[0] = 1;
    for (Py_ssize_t k = 1; k < size; k++)
        p[k] = p[k - 1] * POLY_BASE;
    PyMem_Free(POWERS);
    POWERS = p;
    POWERS_LEN = size;
    return 0;
}

typedef struct {
    Py_ssize_t n_words, total;
    int has_space;        /* a word holds ' ' (then spaced n-grams may equal across other splits) */
    Py_UCS4 *codes;       /* S, then FP_CHARS zeros */
    Py_ssize_t *start;    /* start[i]: word i's start in S; start[n_words] = total */
    uint64_t *pj, *pt;    /* word-level prefix hashes (joined; spaced with trailing spaces) */
} Layout;

static void free_layout(Layout *lay)
{
    PyMem_Free(lay->codes);
    PyMem_Free(lay->start);
    PyMem_Free(lay->pj);
    PyMem_Free(lay->pt);
}

static int layout_words(PyObject *words, Layout *lay)
{
    Py_ssize_t n_words = PyList_GET_SIZE(words), total = 0;
    for (Py_ssize_t i = 0; i < n_words; i++)
        total += PyUnicode_GET_LENGTH(PyList_GET_ITEM(words, i));
    lay->n_words = n_words;
    lay->total = total;
    lay->codes = PyMem_Malloc((size_t)(total + FP_CHARS) * sizeof(Py_UCS4));
    lay->start = PyMem_Malloc((size_t)(n_words + 1) * sizeof(Py_ssize_t));
    lay->pj = PyMem_Malloc((size_t)(n_words + 1) * sizeof(uint64_t));
    lay->pt = PyMem_Malloc((size_t)(n_words + 1) * sizeof(uint64_t));
    if (!lay->codes || !lay->start || !lay->pj || !lay->pt) {
        PyErr_NoMemory();
        return -1;
    }
    if (ensure_powers(total + n_words + 1) < 0)
        return -1;
    Py_UCS4 *codes = lay->codes;
    Py_ssize_t at = 0;
    uint64_t pj = 0, pt = 0;
    int space = 0;
    lay->pj[0] = lay->pt[0] = 0;
    for (Py_ssize_t i = 0; i < n_words; i++) {
        PyObject *w = PyList_GET_ITEM(words, i);
        Py_ssize_t len = PyUnicode_GET_LENGTH(w);
        uint64_t h = 0;
        lay->start[i] = at;
        switch (PyUnicode_KIND(w)) {
        case PyUnicode_1BYTE_KIND: {
            const Py_UCS1 *d = PyUnicode_1BYTE_DATA(w);
            Py_ssize_t k = 0;
            for (; k + 1 < len; k += 2) {  /* two characters a step: half the multiply chain */
                codes[at + k] = d[k];
                codes[at + k + 1] = d[k + 1];
                space |= (d[k] == ' ') | (d[k + 1] == ' ');
                h = h * POLY_BASE2 + ((uint64_t)d[k] + 1) * POLY_BASE + (uint64_t)d[k + 1] + 1;
            }
            for (; k < len; k++) {
                codes[at + k] = d[k];
                space |= d[k] == ' ';
                h = h * POLY_BASE + (uint64_t)d[k] + 1;
            }
            break;
        }
        case PyUnicode_2BYTE_KIND: {
            const Py_UCS2 *d = PyUnicode_2BYTE_DATA(w);
            for (Py_ssize_t k = 0; k < len; k++) {
                codes[at + k] = d[k];
                space |= d[k] == ' ';
                h = h * POLY_BASE + (uint64_t)d[k] + 1;
            }
            break;
        }
        default: {
            const Py_UCS4 *d = PyUnicode_4BYTE_DATA(w);
            for (Py_ssize_t k = 0; k < len; k++) {
                codes[at + k] = d[k];
                space |= d[k] == ' ';
                h = h * POLY_BASE + (uint64_t)d[k] + 1;
            }
        }
        }
        at += len;
        pj = pj * POWERS[len] + h;
        pt = (pt * POWERS[len] + h) * POLY_BASE + (uint64_t)' ' + 1;
        lay->pj[i + 1] = pj;
        lay->pt[i + 1] = pt;
    }
    lay->start[n_words] = at;
    lay->has_space = space != 0;
    memset(codes + total, 0, FP_CHARS * sizeof(Py_UCS4));
    return 0;
}

/* Characters of the n-gram at word i: joined (spaced = 0) or with single spaces (1). */
static inline Py_ssize_t gram_chars(const Layout *lay, Py_ssize_t i, Py_ssize_t n, int spaced)
{
    return lay->start[i + n] - lay->start[i] + (spaced ? n - 1 : 0);
}

static inline uint64_t gram_hash(const Layout *lay, Py_ssize_t i, Py_ssize_t n, int spaced)
{
    Py_ssize_t chars = lay->start[i + n] - lay->start[i];
    if (spaced)
        return mix64(lay->pt[i + n] - lay->pt[i] * POWERS[chars + n]);
    return mix64(lay->pj[i + n] - lay->pj[i] * POWERS[chars]);
}

/* The code point at offset t of the spaced n-gram at word i (t < its length). */
typedef struct {
    const Layout *lay;
    Py_ssize_t word, offset;
} Cursor;

static inline Py_UCS4 cursor_next(Cursor *c)
{
    Py_ssize_t len = c->lay->start[c->word + 1] - c->lay->start[c->word];
    if (c->offset < len)
        return c->lay->codes[c->lay->start[c->word] + c->offset++];
    c->word++;      /* past the word's end: the separator, then the next word */
    c->offset = 0;
    return ' ';
}

static int same_gram(const Layout *lay, Py_ssize_t i, Py_ssize_t j, Py_ssize_t n, int spaced)
{
    Py_ssize_t a = lay->start[i], b = lay->start[j];
    Py_ssize_t chars = lay->start[i + n] - a;
    if (!spaced)
        return chars == lay->start[j + n] - b
            && memcmp(lay->codes + a, lay->codes + b, (size_t)chars * sizeof(Py_UCS4)) == 0;
    if (gram_chars(lay, i, n, 1) != gram_chars(lay, j, n, 1))
        return 0;
    int same_lengths = 1;  /* the same word lengths: the spaced grams equal iff the joined do */
    for (Py_ssize_t k = 0; k < n && same_lengths; k++)
        same_lengths = lay->start[i + k + 1] - lay->start[i + k]
            == lay->start[j + k + 1] - lay->start[j + k];
    if (same_lengths)
        return memcmp(lay->codes + a, lay->codes + b, (size_t)chars * sizeof(Py_UCS4)) == 0;
    /* words holding spaces can join to the same spaced text: compare it character by character */
    Cursor ci = {lay, i, 0}, cj = {lay, j, 0};
    Py_ssize_t length = gram_chars(lay, i, n, 1);
    for (Py_ssize_t t = 0; t < length; t++)
        if (cursor_next(&ci) != cursor_next(&cj))
            return 0;
    return 1;
}

/* The slot of the n-gram at word i: found (gen current), or the empty slot where it goes. */
static inline Slot *find_slot(Py_ssize_t mask, const Layout *lay, Py_ssize_t i, Py_ssize_t n,
                              int spaced, uint32_t *tag)
{
    uint64_t h = gram_hash(lay, i, n, spaced);
    *tag = (uint32_t)(h >> 32);
    Py_ssize_t k = (Py_ssize_t)(h & (uint64_t)mask);
    for (;;) {
        Slot *s = &TABLE[k];
        if (s->gen != TABLE_GEN)
            return s;
        if (s->hash == *tag && same_gram(lay, i, s->first, n, spaced))
            return s;
        k = (k + 1) & mask;
    }
}

/* out[i] >= how many of hashes[0:count] equal hashes[i]: counted in 2**16 saturating byte
 * counters picked by the hash's top bits (two keys may share a counter; a counter at
 * 255 answers count, the most it can be), so never below the true count.  The counters
 * are left zero again. */
static uint8_t COUNTERS[1 << 16];

static int hash_counts(const uint64_t *hashes, Py_ssize_t count, int32_t *out)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        uint8_t *c = &COUNTERS[hashes[i] >> 48];
        if (*c < 255)
            (*c)++;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        uint8_t c = COUNTERS[hashes[i] >> 48];
        out[i] = c == 255 ? (int32_t)count : c;
    }
    for (Py_ssize_t i = 0; i < count; i++)
        COUNTERS[hashes[i] >> 48] = 0;
    return 0;
}

/* top_ngram_chars(words, n) for n <= n_words. */
static int top_figure(const Layout *lay, Py_ssize_t n, long long *figure)
{
    Py_ssize_t m = lay->n_words - n + 1, mask;
    if (new_table(m, &mask) < 0)
        return -1;
    Py_ssize_t best_count = 0, best_first = 0, best_len = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        uint32_t tag;
        Slot *s = find_slot(mask, lay, i, n, 1, &tag);
        if (s->gen != TABLE_GEN) {
            s->gen = TABLE_GEN;
            s->first = (int32_t)i;
            s->hash = tag;
            s->count = 0;
        }
        s->count++;
        /* Counter.most_common(1): the largest count, ties to the n-gram inserted first */
        if (s->count > best_count || (s->count == best_count && s->first < best_first)) {
            best_count = s->count;
            best_first = s->first;
            best_len = gram_chars(lay, i, n, 1);
        }
    }
    *figure = (long long)best_len * best_count;
    return 0;
}

/* duplicate_ngram_chars(words, n) for n <= n_words; shared[i] < 2: no other word start
 * has position i's first FP_CHARS characters. */
static int duplicate_figure(const Layout *lay, Py_ssize_t n, const int32_t *shared,
                            long long *figure)
{
    Py_ssize_t m = lay->n_words - n + 1, mask;
    if (new_table(m, &mask) < 0)
        return -1;
    long long repeated = 0;
    Py_ssize_t idx = 0;
    while (idx < m) {
        Py_ssize_t chars = gram_chars(lay, idx, n, 0);
        if (shared[idx] < 2 && chars >= FP_CHARS) {
            /* an n-gram of FP_CHARS characters or more equal to another starts with the
             * same FP_CHARS characters: this one repeats none and none repeats it */
            idx += 1;
            continue;
        }
        uint32_t tag;
        Slot *s = find_slot(mask, lay, idx, n, 0, &tag);
        if (s->gen == TABLE_GEN) {
            repeated += chars;
            idx += n;
        } else {
            s->gen = TABLE_GEN;
            s->first = (int32_t)idx;
            s->hash = tag;
            idx += 1;
        }
    }
    *figure = repeated;
    return 0;
}

static int parse_ns(PyObject *seq, PyObject **fast_out)
{
    PyObject *fast = PySequence_Fast(seq, "ngram_figures: n values must be a sequence");
    if (fast == NULL)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t n = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(fast, k));
        if (n == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (n < 1) {
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "ngram_figures: n must be >= 1, got %zd", n);
            return -1;
        }
    }
    *fast_out = fast;
    return 0;
}

PyDoc_STRVAR(ngram_figures_doc,
"ngram_figures(words, top_ns, dup_ns, top_fires=None) -> ({n: top figure}, {n: duplicate figure})\n\n"
"Exactly the string algorithms of transforms.reduction.filters.ngrams for every n asked:\n"
"top_ngram_chars(words, n) (characters of the most frequent n-gram, words joined by ' ',\n"
"times its count, ties to the n-gram seen first as Counter.most_common(1); 0 when\n"
"len(words) < n) and duplicate_ngram_chars(words, n) (the left-to-right scan over n-grams\n"
"joined without separator, skipping n words after a repeat).  top_fires(n, chars): when\n"
"given and false for an upper bound of the top figure (each n-gram's characters times\n"
"the count of its first bigrams, or of its word for n = 1, counted by hash; only when no\n"
"word holds a space), the figure is not computed and is None.  Every hash match is confirmed on the code points; a\n"
"position whose first 16 characters begin no other word is passed over by the duplicate\n"
"scan (it cannot start a repeat of 16 characters or more, nor be repeated).");

static PyObject *ngram_figures(PyObject *self, PyObject *args)
{
    PyObject *words, *top_arg, *dup_arg, *top_fires = Py_None, *top_ns = NULL, *dup_ns = NULL;
    PyObject *top = NULL, *dup = NULL;
    Layout lay = {0};
    uint64_t *hashes = NULL;
    int32_t *shared = NULL, *bigrams = NULL, *freq = NULL;
    if (!PyArg_ParseTuple(args, "O!OO|O", &PyList_Type, &words, &top_arg, &dup_arg, &top_fires))
        return NULL;
    Py_ssize_t n_words = PyList_GET_SIZE(words);
    for (Py_ssize_t i = 0; i < n_words; i++)
        if (!PyUnicode_Check(PyList_GET_ITEM(words, i))) {
            PyErr_SetString(PyExc_TypeError, "ngram_figures: words must be a list of str");
            return NULL;
        }
    if (n_words >= INT32_MAX / 2) {
        PyErr_SetString(PyExc_OverflowError, "ngram_figures: too many words");
        return NULL;
    }
    if (parse_ns(top_arg, &top_ns) < 0 || parse_ns(dup_arg, &dup_ns) < 0)
        goto fail;
    top = PyDict_New();
    dup = PyDict_New();
    if (top == NULL || dup == NULL)
        goto fail;
    if (n_words) {
        if (layout_words(words, &lay) < 0)
            goto fail;
        hashes = PyMem_Malloc((size_t)n_words * sizeof(uint64_t));
        if (hashes == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    for (int which = 0; which < 2; which++) {
        PyObject *ns = which == 0 ? top_ns : dup_ns;
        PyObject *into = which == 0 ? top : dup;
        Py_ssize_t count = PySequence_Fast_GET_SIZE(ns);
        for (Py_ssize_t q = 0; q < count; q++) {
            PyObject *key = PySequence_Fast_GET_ITEM(ns, q);
            Py_ssize_t n = PyLong_AsSsize_t(key);
            long long figure = 0;
            int skipped = 0;
            if (n <= n_words && which == 0) {
                if (top_fires != Py_None && !lay.has_space) {
                    /* an upper bound: count(n-gram at i) <= the count of each bigram (or,
                     * for n = 1, word) in it, those counted by hash (never too low) */
                    int32_t *counts;
                    if (n == 1) {
                        if (freq == NULL) {
                            freq = PyMem_Malloc((size_t)n_words * sizeof(int32_t));
                            if (freq == NULL) {
                                PyErr_NoMemory();
                                goto fail;
                            }
                            for (Py_ssize_t i = 0; i < n_words; i++)
                                hashes[i] = gram_hash(&lay, i, 1, 0);
                            if (hash_counts(hashes, n_words, freq) < 0)
                                goto fail;
                        }
                        counts = freq;
                    } else {
                        if (bigrams == NULL) {
                            bigrams = PyMem_Malloc((size_t)n_words * sizeof(int32_t));
                            if (bigrams == NULL) {
                                PyErr_NoMemory();
                                goto fail;
                            }
                            for (Py_ssize_t i = 0; i + 1 < n_words; i++)
                                hashes[i] = gram_hash(&lay, i, 2, 1);
                            if (hash_counts(hashes, n_words - 1, bigrams) < 0)
                                goto fail;
                        }
                        counts = bigrams;
                    }
                    Py_ssize_t span = n == 1 ? 1 : (n - 1 < 3 ? n - 1 : 3);
                    long long bound = 0;
                    for (Py_ssize_t i = 0; i + n <= n_words; i++) {
                        int32_t least = counts[i];
                        for (Py_ssize_t k = 1; k < span; k++)
                            if (counts[i + k] < least)
                                least = counts[i + k];
                        long long chars = (long long)gram_chars(&lay, i, n, 1) * least;
                        if (chars > bound)
                            bound = chars;
                    }
                    PyObject *fires = PyObject_CallFunction(top_fires, "OL", key, bound);
                    if (fires == NULL)
                        goto fail;
                    int truth = PyObject_IsTrue(fires);
                    Py_DECREF(fires);
                    if (truth < 0)
                        goto fail;
                    skipped = !truth;
                }
                if (!skipped && top_figure(&lay, n, &figure) < 0)
                    goto fail;
            } else if (n <= n_words) {
                if (shared == NULL) {  /* each word start's first FP_CHARS characters, by hash */
                    shared = PyMem_Malloc((size_t)n_words * sizeof(int32_t));
                    if (shared == NULL) {
                        PyErr_NoMemory();
                        goto fail;
                    }
                    static const uint64_t K[FP_CHARS / 2] = {  /* odd constants */
                        0x9E3779B97F4A7C15ULL, 0xBF58476D1CE4E5B9ULL, 0x94D049BB133111EBULL,
                        0xD6E8FEB86659FD93ULL, 0xA0761D6478BD642FULL, 0xE7037ED1A0B428DBULL,
                        0x8EBC6AF09C88C6E3ULL, 0x589965CC75374CC3ULL};
                    for (Py_ssize_t i = 0; i < n_words; i++) {
                        const Py_UCS4 *c = lay.codes + lay.start[i];
                        uint64_t h = 0;
                        for (int k = 0; k < FP_CHARS / 2; k++)  /* independent products */
                            h += ((uint64_t)c[2 * k] | ((uint64_t)c[2 * k + 1] << 32)) * K[k];
                        hashes[i] = mix64(h);
                    }
                    if (hash_counts(hashes, n_words, shared) < 0)
                        goto fail;
                }
                if (duplicate_figure(&lay, n, shared, &figure) < 0)
                    goto fail;
            }
            PyObject *value = skipped ? Py_NewRef(Py_None) : PyLong_FromLongLong(figure);
            if (value == NULL || PyDict_SetItem(into, key, value) < 0) {
                Py_XDECREF(value);
                goto fail;
            }
            Py_DECREF(value);
        }
    }
    free_layout(&lay);
    PyMem_Free(hashes);
    PyMem_Free(shared);
    PyMem_Free(bigrams);
    PyMem_Free(freq);
    Py_DECREF(top_ns);
    Py_DECREF(dup_ns);
    return Py_BuildValue("NN", top, dup);
fail:
    free_layout(&lay);
    PyMem_Free(hashes);
    PyMem_Free(shared);
    PyMem_Free(bigrams);
    PyMem_Free(freq);
    Py_XDECREF(top_ns);
    Py_XDECREF(dup_ns);
    Py_XDECREF(top);
    Py_XDECREF(dup);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Gopher repetition: duplicate paragraphs and lines (gopher.find_duplicates over splits)  */

typedef struct {
    Py_ssize_t start, len;
} Piece;

typedef struct {
    uint64_t hash;
    Py_ssize_t piece;  /* -1: empty */
} PieceSlot;

static uint64_t piece_hash(int kind, const void *data, Piece p)
{ /* over the piece's bytes (all pieces come from one str: one kind), 8 at a time in four
   * independent lanes, then mixed */
    const unsigned char *b = (const unsigned char *)data + (size_t)p.start * kind;
    size_t size = (size_t)p.len * kind, k = 0;
    uint64_t lane[4] = {0x9E3779B97F4A7C15ULL, 0xBF58476D1CE4E5B9ULL, 0x94D049BB133111EBULL,
                        0xD6E8FEB86659FD93ULL};
    for (; k + 32 <= size; k += 32)
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, b + k + 8 * l, 8);
            lane[l] = (lane[l] ^ w) * 0x100000001B3ULL;
        }
    for (; k + 8 <= size; k += 8) {
        uint64_t w;
        memcpy(&w, b + k, 8);
        lane[0] = (lane[0] ^ w) * 0x100000001B3ULL;
    }
    uint64_t tail = 0;
    for (; k < size; k++)
        tail = (tail << 8) | b[k];
    return mix64(mix64(lane[0] ^ tail) + mix64(lane[1]) * 3 + mix64(lane[2]) * 5
                 + mix64(lane[3]) * 7 + (uint64_t)p.len);
}

/* find_duplicates over the pieces: (repeats after the first, their characters). */
static int piece_duplicates(int kind, const void *data, const Piece *pieces, Py_ssize_t count,
                            Py_ssize_t *dups, Py_ssize_t *dup_chars)
{
    Py_ssize_t mask = table_size(count) - 1;
    PieceSlot *table = PyMem_Malloc((size_t)(mask + 1) * sizeof(PieceSlot));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(table, 0xff, (size_t)(mask + 1) * sizeof(PieceSlot));
    *dups = *dup_chars = 0;
    for (Py_ssize_t q = 0; q < count; q++) {
        Piece p = pieces[q];
        uint64_t h = piece_hash(kind, data, p);
        Py_ssize_t k = (Py_ssize_t)(h & (uint64_t)mask);
        for (;;) {
            PieceSlot *s = &table[k];
            if (s->piece < 0) {
                s->piece = q;
                s->hash = h;
                break;
            }
            Piece o = pieces[s->piece];
            if (s->hash == h && o.len == p.len
                    && memcmp((const char *)data + (size_t)o.start * kind,
                              (const char *)data + (size_t)p.start * kind,
                              (size_t)p.len * kind) == 0) {
                *dups += 1;
                *dup_chars += p.len;
                break;
            }
            k = (k + 1) & mask;
        }
    }
    PyMem_Free(table);
    return 0;
}

/* Pieces of data[a:b] split at runs of at least `min_run` '\n' (re.split(r"\n{min_run,}")). */
static Py_ssize_t split_newline_runs(int kind, const void *data, Py_ssize_t a, Py_ssize_t b,
                                     Py_ssize_t min_run, Piece *out)
{
    Py_ssize_t count = 0, piece_start = a, i = a;
    while (i < b) {
        if (PyUnicode_READ(kind, data, i) == '\n') {
            Py_ssize_t j = i;
            while (j < b && PyUnicode_READ(kind, data, j) == '\n')
                j++;
            if (j - i >= min_run) {
                out[count].start = piece_start;
                out[count].len = i - piece_start;
                count++;
                piece_start = j;
            }
            i = j;
        } else {
            i++;
        }
    }
    out[count].start = piece_start;
    out[count].len = b - piece_start;
    return count + 1;
}

PyDoc_STRVAR(repetition_lines_doc,
"repetition_lines(text) -> (paragraphs, dup_paragraphs, dup_paragraph_chars, lines, dup_lines, dup_line_chars)\n\n"
"Gopher repetition's paragraph and line counts, exactly as\n"
"gopher.find_duplicates(re.split(r'\\n{2,}', text.strip())) and\n"
"gopher.find_duplicates(re.split(r'\\n+', text)), with the number of pieces of each split.");

static PyObject *repetition_lines(PyObject *self, PyObject *arg)
{
    Text t;
    if (text_arg(arg, "repetition_lines", &t) < 0)
        return NULL;
    int kind = t.kind;
    const void *data = t.data;
    Py_ssize_t n = t.n;
    Py_ssize_t newlines = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        newlines += PyUnicode_READ(kind, data, i) == '\n';
    Piece *pieces = PyMem_Malloc((size_t)(newlines + 2) * sizeof(Piece));
    if (pieces == NULL)
        return PyErr_NoMemory();
    Py_ssize_t a = 0, b = n;  /* text.strip(): str's whitespace */
    while (a < b && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, a)))
        a++;
    while (b > a && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, b - 1)))
        b--;
    Py_ssize_t paras = split_newline_runs(kind, data, a, b, 2, pieces), dup_paras, dup_para_chars;
    if (piece_duplicates(kind, data, pieces, paras, &dup_paras, &dup_para_chars) < 0) {
        PyMem_Free(pieces);
        return NULL;
    }
    Py_ssize_t lines = split_newline_runs(kind, data, 0, n, 1, pieces), dup_lines, dup_line_chars;
    if (piece_duplicates(kind, data, pieces, lines, &dup_lines, &dup_line_chars) < 0) {
        PyMem_Free(pieces);
        return NULL;
    }
    PyMem_Free(pieces);
    return Py_BuildValue("nnnnnn", paras, dup_paras, dup_para_chars, lines, dup_lines,
                         dup_line_chars);
}

/* ------------------------------------------------------------------------------------ */
/* Gopher quality's stop words, C4's whitespace words                                     */

PyDoc_STRVAR(count_present_doc,
"count_present(words, candidates) -> int\n\n"
"len(frozenset(candidates).intersection(words)): how many distinct strings of the tuple\n"
"candidates equal some word of the list words (str equality).");

static PyObject *count_present(PyObject *self, PyObject *args)
{
    PyObject *words, *candidates;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &words, &PyTuple_Type, &candidates))
        return NULL;
    Py_ssize_t n_cand = PyTuple_GET_SIZE(candidates);
    enum { MAX_CANDIDATES = 64 };
    if (n_cand > MAX_CANDIDATES) {  /* a long list: the set does it */
        PyObject *set = PyFrozenSet_New(candidates);
        if (set == NULL)
            return NULL;
        PyObject *found = PyObject_CallMethod(set, "intersection", "O", words);
        Py_DECREF(set);
        if (found == NULL)
            return NULL;
        Py_ssize_t size = PySet_Size(found);
        Py_DECREF(found);
        return size < 0 ? NULL : PyLong_FromSsize_t(size);
    }
    char seen[MAX_CANDIDATES] = {0};
    Py_ssize_t found = 0, distinct = 0;
    for (Py_ssize_t c = 0; c < n_cand; c++) {
        PyObject *cand = PyTuple_GET_ITEM(candidates, c);
        if (!PyUnicode_CheckExact(cand)) {
            PyErr_SetString(PyExc_TypeError, "count_present: candidates must be str");
            return NULL;
        }
        int repeat = 0;  /* a candidate listed twice counts once, as in a set */
        for (Py_ssize_t d = 0; d < c && !repeat; d++)
            repeat = PyUnicode_Compare(cand, PyTuple_GET_ITEM(candidates, d)) == 0;
        if (repeat)
            seen[c] = 1;
        else
            distinct++;
    }
    Py_ssize_t n_words = PyList_GET_SIZE(words);
    for (Py_ssize_t i = 0; i < n_words && found < distinct; i++) {
        PyObject *w = PyList_GET_ITEM(words, i);
        if (!PyUnicode_CheckExact(w)) {
            PyErr_SetString(PyExc_TypeError, "count_present: words must be str");
            return NULL;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(w);
        int kind = PyUnicode_KIND(w);
        for (Py_ssize_t c = 0; c < n_cand; c++) {
            PyObject *cand = PyTuple_GET_ITEM(candidates, c);
            if (seen[c] || PyUnicode_GET_LENGTH(cand) != len || PyUnicode_KIND(cand) != kind)
                continue;  /* (equal strs have equal lengths and kinds: canonical storage) */
            if (memcmp(PyUnicode_DATA(cand), PyUnicode_DATA(w), (size_t)(len * kind)) == 0) {
                seen[c] = 1;
                found++;
            }
        }
    }
    return PyLong_FromSsize_t(found);
}

PyDoc_STRVAR(line_marks_doc,
"line_marks(lines, prefixes, suffixes) -> (starting, ending)\n\n"
"sum(1 for s in lines if s.lstrip().startswith(prefixes)) and\n"
"sum(1 for s in lines if s.rstrip().endswith(suffixes)); prefixes and suffixes: tuples of str.");

/* Does text[a:b] start (at_end = 0) or end (1) with one of the strs of the tuple? */
static int has_affix(int kind, const void *data, Py_ssize_t a, Py_ssize_t b, PyObject *affixes,
                     int at_end)
{
    Py_ssize_t count = PyTuple_GET_SIZE(affixes);
    for (Py_ssize_t q = 0; q < count; q++) {
        PyObject *affix = PyTuple_GET_ITEM(affixes, q);
        Py_ssize_t len = PyUnicode_GET_LENGTH(affix);
        if (len > b - a)
            continue;
        int akind = PyUnicode_KIND(affix);
        const void *adata = PyUnicode_DATA(affix);
        Py_ssize_t at = at_end ? b - len : a, k = 0;
        while (k < len && PyUnicode_READ(kind, data, at + k) == PyUnicode_READ(akind, adata, k))
            k++;
        if (k == len)
            return 1;
    }
    return 0;
}

static PyObject *line_marks(PyObject *self, PyObject *args)
{
    PyObject *lines, *prefixes, *suffixes;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &lines, &PyTuple_Type, &prefixes,
                          &PyTuple_Type, &suffixes))
        return NULL;
    for (int t = 0; t < 2; t++) {
        PyObject *affixes = t ? suffixes : prefixes;
        for (Py_ssize_t q = 0; q < PyTuple_GET_SIZE(affixes); q++)
            if (!PyUnicode_Check(PyTuple_GET_ITEM(affixes, q))) {
                PyErr_SetString(PyExc_TypeError, "line_marks: prefixes and suffixes must be str");
                return NULL;
            }
    }
    Py_ssize_t starting = 0, ending = 0, n_lines = PyList_GET_SIZE(lines);
    for (Py_ssize_t i = 0; i < n_lines; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyUnicode_Check(line)) {
            PyErr_SetString(PyExc_TypeError, "line_marks: lines must be str");
            return NULL;
        }
        int kind = PyUnicode_KIND(line);
        const void *data = PyUnicode_DATA(line);
        Py_ssize_t a = 0, b = PyUnicode_GET_LENGTH(line);
        while (a < b && is_space(PyUnicode_READ(kind, data, a)))
            a++;
        starting += has_affix(kind, data, a, PyUnicode_GET_LENGTH(line), prefixes, 0);
        while (b > 0 && is_space(PyUnicode_READ(kind, data, b - 1)))
            b--;
        ending += has_affix(kind, data, 0, b, suffixes, 1);
    }
    return Py_BuildValue("nn", starting, ending);
}

PyDoc_STRVAR(sentence_end_doc,
"sentence_end(line, pos) -> None or (start, head_end, punct_end, end)\n\n"
"The next match at or after pos of c4._SENT_END_RE,\n"
"(\\S*?)([.!?\\u3002\\uff01\\uff1f]+)[^\\w\\s]*(?=\\s+\\W*\\w)|(?<=[a-z])\\.(?=[A-Z]),\n"
"as re's search would find it (leftmost start; the first alternative first; the lazy\n"
"group as short as a match allows; \\w and \\s as re's for str: Py_UNICODE_ISALNUM or '_',\n"
"Py_UNICODE_ISSPACE): group 1 is line[start:head_end], group 2 line[head_end:punct_end],\n"
"the match line[start:end]; for the second alternative head_end = punct_end = -1.");

static inline int is_word_char(Py_UCS4 ch)
{
    return ch == '_' || Py_UNICODE_ISALNUM(ch);
}

static inline int is_sentence_punct(Py_UCS4 ch)
{
    return ch == '.' || ch == '!' || ch == '?' || ch == 0x3002 || ch == 0xFF01 || ch == 0xFF1F;
}

static PyObject *sentence_end(PyObject *self, PyObject *args)
{
    Text t;
    Py_ssize_t pos;
    if (text_and_size(args, &t, &pos) < 0)
        return NULL;
    int kind = t.kind;
    const void *data = t.data;
    Py_ssize_t n = t.n;
    if (pos < 0)
        pos = 0;
    /* the lookahead (?=\s+\W*\w) at q: line[q] is whitespace and a word character follows
     * somewhere after q (every character before the first one is \W) */
    Py_ssize_t last_word = -1;
    for (Py_ssize_t k = n - 1; k >= pos; k--)
        if (is_word_char(PyUnicode_READ(kind, data, k))) {
            last_word = k;
            break;
        }
    Py_ssize_t i = pos;
    while (i < n) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (is_space(ch)) {  /* neither alternative starts at whitespace */
            i++;
            continue;
        }
        /* first alternative at i: the lazy \S*? reaches j (line[i:j] all \S), line[j] a
         * punctuation mark; the greedy runs end at E (punctuation from j, then [^\w\s]);
         * inside them nothing is whitespace, so the lookahead can only hold at E */
        Py_ssize_t run_end = i;
        while (run_end < n && !is_space(PyUnicode_READ(kind, data, run_end)))
            run_end++;
        for (Py_ssize_t j = i; j < run_end; j++) {
            if (!is_sentence_punct(PyUnicode_READ(kind, data, j)))
                continue;
            Py_ssize_t r = j;
            while (r < n && is_sentence_punct(PyUnicode_READ(kind, data, r)))
                r++;
            Py_ssize_t e = r;
            while (e < n) {
                Py_UCS4 c = PyUnicode_READ(kind, data, e);
                if (is_word_char(c) || is_space(c))
                    break;
                e++;
            }
            if (e < n && is_space(PyUnicode_READ(kind, data, e)) && last_word > e)
                return Py_BuildValue("nnnn", i, j, r, e);
        }
        /* the first alternative fails at i and at every later start inside this run (its
         * candidates are a subset): the second alternative at each of them, in order */
        for (Py_ssize_t k = i; k < run_end; k++) {
            if (k > i) {
                /* (a start inside the run: the first alternative was tried above for the
                 * run's start; from k its candidates j >= k all failed too) */
            }
            if (PyUnicode_READ(kind, data, k) == '.' && k > 0 && k + 1 < n) {
                Py_UCS4 before = PyUnicode_READ(kind, data, k - 1);
                Py_UCS4 after = PyUnicode_READ(kind, data, k + 1);
                if (before >= 'a' && before <= 'z' && after >= 'A' && after <= 'Z')
                    return Py_BuildValue("nnnn", k, (Py_ssize_t)-1, (Py_ssize_t)-1, k + 1);
            }
        }
        i = run_end;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(split_stats_doc,
"split_stats(text, at_most) -> (chunks, longest)\n\n"
"min(len(text.split()), at_most) and max(map(len, text.split()), default=0) (the\n"
"longest chunk is only measured when at_most is below 0: then chunks is the full count;\n"
"at_most 0 counts 1 for a text with a chunk, as len(text.split(None, 0)) does).");

static PyObject *split_stats(PyObject *self, PyObject *args)
{
    Text t;
    Py_ssize_t at_most;
    if (text_and_size(args, &t, &at_most) < 0)
        return NULL;
    int kind = t.kind;
    const void *data = t.data;
    Py_ssize_t n = t.n, chunks = 0, longest = 0, i = 0;
    while (i < n) {
        while (i < n && is_space(PyUnicode_READ(kind, data, i)))
            i++;
        if (i >= n)
            break;
        Py_ssize_t start = i;
        while (i < n && !is_space(PyUnicode_READ(kind, data, i)))
            i++;
        chunks++;
        if (i - start > longest)
            longest = i - start;
        if (at_most >= 0 && chunks >= at_most)
            break;
    }
    return Py_BuildValue("nn", chunks, longest);
}

/* ------------------------------------------------------------------------------------ */
/* Language ID: py3langid's visit_counts                                                  */

PyDoc_STRVAR(langid_features_doc,
"langid_features(data, nextmove, rowbase, output, depth=0) -> (ids, counts)\n\n"
"py3langid's visit_counts(nm, rowbase, out, data) as two byte strings: the feature ids\n"
"(native int64) in order of first occurrence (the Counter's order) and their counts\n"
"(native float32).  data: bytes; nextmove: uint32 buffer (tk_nextmove); rowbase: int64\n"
"buffer (tk_row << 8); output: int32 buffer (tk_output).  depth > 0 declares the automaton\n"
"an Aho-Corasick automaton of that depth (the state after byte i is the walk from the\n"
"root over bytes i-depth+1..i; langid.MODEL_DEPTH, proven on the model by the tests): the\n"
"walk then runs as several interleaved walks over segments of the bytes, each started\n"
"depth-1 bytes early, which gives the same states.  Raises ValueError when the model\n"
"sends the walk outside its tables.");

typedef struct {
    int32_t feature;   /* -1: empty */
    int32_t slot;      /* index into the output arrays */
} FeatureSlot;

#define LANES 8          /* walks interleaved (their table reads overlap in memory) */
#define SEGMENT 192      /* bytes per walk */

static PyObject *langid_features(PyObject *self, PyObject *args)
{
    Py_buffer text, nm, rows, outb;
    Py_ssize_t depth = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*y*|n", &text, &nm, &rows, &outb, &depth))
        return NULL;
    PyObject *result = NULL;
    const uint8_t *bytes = text.buf;
    Py_ssize_t n = text.len;
    const uint32_t *nextmove = nm.buf;
    Py_ssize_t n_moves = nm.len / (Py_ssize_t)sizeof(uint32_t);
    const int64_t *rowbase = rows.buf;
    Py_ssize_t n_states = rows.len / (Py_ssize_t)sizeof(int64_t);
    const int32_t *output = outb.buf;
    Py_ssize_t n_out = outb.len / (Py_ssize_t)sizeof(int32_t);
    if (n_out < n_states)
        n_states = n_out;  /* a state must index both tables */
    Py_ssize_t mask = table_size(n) - 1;
    FeatureSlot *table = PyMem_Malloc((size_t)(mask + 1) * sizeof(FeatureSlot));
    int64_t *ids = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
    int32_t *tally = PyMem_Malloc((size_t)(n + 1) * sizeof(int32_t));
    float *counts = PyMem_Malloc((size_t)(n + 1) * sizeof(float));
    int32_t *feats = PyMem_Malloc((size_t)(n + 1) * sizeof(int32_t));
    if (table == NULL || ids == NULL || tally == NULL || counts == NULL || feats == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* 1. the feature (or -1) after every byte */
    Py_ssize_t segment = depth > 0 ? SEGMENT : n + 1;
    for (Py_ssize_t group = 0; group < n; group += segment * LANES) {
        int64_t state[LANES];
        Py_ssize_t pos[LANES], from[LANES], end[LANES];
        int lanes = 0;
        for (int l = 0; l < LANES; l++) {
            Py_ssize_t p = group + (Py_ssize_t)l * segment;
            if (p >= n)
                break;
            from[l] = p;
            end[l] = p + segment < n ? p + segment : n;
            pos[l] = p > depth - 1 && depth > 0 ? p - (depth - 1) : 0;  /* warm-up start */
            if (depth <= 0)
                pos[l] = p;
            state[l] = 0;
            lanes++;
        }
        int live = lanes;
        while (live) {
            live = 0;
            for (int l = 0; l < lanes; l++) {
                if (pos[l] >= end[l])
                    continue;
                live++;
                int64_t st = state[l];
                if (st < 0 || st >= n_states) {
                    PyErr_SetString(PyExc_ValueError, "langid_features: state outside the model");
                    goto done;
                }
                int64_t move = rowbase[st] + bytes[pos[l]];
                if (move < 0 || move >= n_moves) {
                    PyErr_SetString(PyExc_ValueError, "langid_features: move outside the model");
                    goto done;
                }
                st = nextmove[move];
                if (st >= n_states) {
                    PyErr_SetString(PyExc_ValueError, "langid_features: state outside the model");
                    goto done;
                }
                state[l] = st;
                if (pos[l] >= from[l])
                    feats[pos[l]] = output[st];
                pos[l]++;
            }
        }
    }
    /* 2. their counts, in order of first occurrence */
    memset(table, 0xff, (size_t)(mask + 1) * sizeof(FeatureSlot));
    Py_ssize_t distinct = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t f = feats[i];
        if (f < 0)
            continue;
        Py_ssize_t k = (Py_ssize_t)(mix64((uint64_t)f) & (uint64_t)mask);
        for (;;) {
            FeatureSlot *s = &table[k];
            if (s->feature < 0) {
                s->feature = f;
                s->slot = (int32_t)distinct;
                ids[distinct] = f;
                tally[distinct] = 1;
                distinct++;
                break;
            }
            if (s->feature == f) {
                tally[s->slot]++;
                break;
            }
            k = (k + 1) & mask;
        }
    }
    for (Py_ssize_t k = 0; k < distinct; k++)
        counts[k] = (float)tally[k];  /* as numpy makes a float32 of a Python int */
    result = Py_BuildValue("y#y#", (const char *)ids, distinct * (Py_ssize_t)sizeof(int64_t),
                           (const char *)counts, distinct * (Py_ssize_t)sizeof(float));
done:
    PyMem_Free(table);
    PyMem_Free(ids);
    PyMem_Free(tally);
    PyMem_Free(counts);
    PyMem_Free(feats);
    PyBuffer_Release(&text);
    PyBuffer_Release(&nm);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&outb);
    return result;
}

/* ------------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"has_no_space_script", has_no_space_script, METH_O,
     "has_no_space_script(text) -> bool: text.has_no_space_script."},
    {"analyse_words", analyse_words, METH_VARARGS, analyse_words_doc},
    {"ngram_figures", ngram_figures, METH_VARARGS, ngram_figures_doc},
    {"repetition_lines", repetition_lines, METH_O, repetition_lines_doc},
    {"langid_features", langid_features, METH_VARARGS, langid_features_doc},
    {"count_present", count_present, METH_VARARGS, count_present_doc},
    {"split_stats", split_stats, METH_VARARGS, split_stats_doc},
    {"line_marks", line_marks, METH_VARARGS, line_marks_doc},
    {"sentence_end", sentence_end, METH_VARARGS, sentence_end_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastfilters",
    "Compiled hot paths of the heuristic filters and language ID (exact re-implementations "
    "of pure-Python references; see transforms/reduction/filters/native.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__fastfilters(void)
{
    fill_latin1_tables();
    return PyModule_Create(&module);
}
