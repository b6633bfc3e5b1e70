/*
 * entitle._entitle: the CPython extension over the entitle C ABI (entitle.h).
 *
 * The Pythonic surface lives in entitle/__init__.py; this module holds what must be fast or must
 * own native memory:
 *
 *  - `Engine`, a type holding one `entitle_engine *`. The hot lookups (enabled, limit, allows,
 *    check) are METH_FASTCALL methods that keep the GIL (releasing it costs more than a lookup),
 *    pass strings as their cached UTF-8 (no copy, no allocation) and cross into the library once.
 *  - `Decision`, an immutable record that is a copy of an `entitle_decision`: creating one is an
 *    allocation and a struct copy; its Python values are made when they are read.
 *
 * Lifetime: Python code can run inside any call that holds the GIL (a datetime's Python tzinfo,
 * an object's timestamp() or __index__, a finalizer run by a collection at an allocation), and
 * that code, or another thread the interpreter switches to meanwhile, can close the engine. So
 * every method converts all its Python arguments first, and only then takes a lease on the native
 * engine (lease_begin: `self->busy` counts the calls using it) for as long as it uses it
 * (lease_end). `close()` during a lease hands the engine to `self->retired`, and the last lease
 * frees it: an engine is never freed under a running call, whether that call holds the GIL or
 * released it (loading, waiting, updates).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "entitle.h"

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *
Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#endif

/* ---------------------------------------------------------------------------------------------
 * Objects handed over by entitle/__init__.py through _setup() (strong references, kept for the
 * life of the process).
 */

#define N_REASONS 5
#define N_FEATURE_TYPES 3

static PyObject *reason_objs[N_REASONS];           /* Reason members, by entitle_reason code */
static PyObject *feature_type_objs[N_FEATURE_TYPES]; /* None, FeatureType.FLAG, .LIMIT */
static PyObject *unlimited_obj;                      /* entitle.UNLIMITED */
static PyObject *status_factory;                     /* called with the status fields */

/* Exception classes. */
static PyObject *err_base;     /* EntitleError */
static PyObject *err_catalog;  /* CatalogError: the catalog JSON is invalid */
static PyObject *err_format;   /* FormatError (a SnapshotError and a DeltaError): bytes unreadable */
static PyObject *err_delta;    /* DeltaError: a delta for another base or other features */
static PyObject *err_file;     /* FileError (also an OSError): a file could not be read */
static PyObject *err_connect;  /* ConnectError: invalid edge configuration */
static PyObject *err_argument; /* ArgumentError (also a ValueError) */
static PyObject *err_closed;   /* ClosedError (also a ValueError): the engine was closed */

static bool setup_done;

/* The exception class of a result code: a function of the code alone, whichever call failed
 * (the table is in docs/ffi.md). */
static PyObject *
error_class(entitle_result result)
{
    switch (result) {
    case ENTITLE_RESULT_NULL_PARAMETER:
    case ENTITLE_RESULT_INVALID_UTF8:
    case ENTITLE_RESULT_INVALID_PARAMETER:
        return err_argument;
    case ENTITLE_RESULT_IO:
        return err_file;
    case ENTITLE_RESULT_INVALID_CATALOG:
        return err_catalog;
    case ENTITLE_RESULT_BAD_MAGIC:
    case ENTITLE_RESULT_UNSUPPORTED_VERSION:
    case ENTITLE_RESULT_CORRUPT:
    case ENTITLE_RESULT_TOO_LARGE:
        return err_format;
    case ENTITLE_RESULT_WRONG_BASE:
    case ENTITLE_RESULT_FEATURE_MISMATCH:
        return err_delta;
    case ENTITLE_RESULT_INVALID_CONFIG:
        return err_connect;
    case ENTITLE_RESULT_CLOSED:
        return err_closed;
    default:
        /* PANIC, BUFFER_TOO_SMALL, OUT_OF_RANGE, TIMEOUT and codes of a newer library. */
        return err_base;
    }
}

/* Raises the exception for `result`, with the calling thread's detail from the library as its
 * message (the library records one for every failing call). Returns NULL. */
static PyObject *
raise_result(entitle_result result)
{
    PyObject *cls = error_class(result);

    size_t len = entitle_last_error_len();
    PyObject *message = NULL;
    if (len > 0) {
        char stack[512];
        char *buf = len <= sizeof stack ? stack : PyMem_Malloc(len);
        if (buf == NULL) {
            return PyErr_NoMemory();
        }
        size_t written = 0;
        if (entitle_last_error_message((uint8_t *)buf, len, &written) == ENTITLE_RESULT_OK) {
            message = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)written, "replace");
        }
        if (buf != stack) {
            PyMem_Free(buf);
        }
    }
    if (message == NULL) {
        PyErr_Clear();
        message = PyUnicode_FromString(entitle_result_message((uint32_t)result));
        if (message == NULL) {
            return NULL;
        }
    }
    PyObject *exc = PyObject_CallFunction(cls, "OI", message, (unsigned int)result);
    Py_DECREF(message);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Arguments
 */

/* Points `*ptr`/`*len` at the UTF-8 of a str (cached by CPython: no copy after the first call,
 * none at all for ASCII) or at the contents of a bytes object. Borrowed: valid while `o` lives. */
static inline int
text_arg(PyObject *o, const uint8_t **ptr, size_t *len, const char *what)
{
    if (PyUnicode_Check(o)) {
        if (PyUnicode_IS_COMPACT_ASCII(o)) {
            *ptr = (const uint8_t *)PyUnicode_DATA(o);
            *len = (size_t)PyUnicode_GET_LENGTH(o);
            return 0;
        }
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(o, &n);
        if (s == NULL) {
            return -1;
        }
        *ptr = (const uint8_t *)s;
        *len = (size_t)n;
        return 0;
    }
    if (PyBytes_Check(o)) {
        *ptr = (const uint8_t *)PyBytes_AS_STRING(o);
        *len = (size_t)PyBytes_GET_SIZE(o);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be str or bytes, not %.100s", what, Py_TYPE(o)->tp_name);
    return -1;
}

/* A file system path (os.fspath already applied): a new bytes reference to the path as the OS
 * takes it. A str is encoded as os.fsencode() does (so names that are not UTF-8, decoded by Python
 * with surrogate escapes, come back as their bytes); bytes are taken as they are. */
static PyObject *
path_arg(PyObject *o, const char *what)
{
    if (PyUnicode_Check(o)) {
        return PyUnicode_EncodeFSDefault(o);
    }
    if (PyBytes_Check(o)) {
        return Py_NewRef(o);
    }
    PyErr_Format(PyExc_TypeError, "%s must be str, bytes or os.PathLike, not %.100s", what,
                 Py_TYPE(o)->tp_name);
    return NULL;
}

/* A count (usage, requested): an int >= 0. Values above UINT64_MAX are read as UINT64_MAX, which
 * gives the same answer: no finite limit reaches either, and an unlimited one allows both. */
static int
count_arg(PyObject *o, uint64_t *out, const char *what)
{
    PyObject *n;
    if (PyLong_CheckExact(o)) {
        n = Py_NewRef(o);
    } else if (PyFloat_Check(o) || !PyIndex_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    } else {
        n = PyNumber_Index(o);
        if (n == NULL) {
            return -1;
        }
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(n);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            Py_DECREF(n);
            return -1;
        }
        PyErr_Clear();
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL) {
            Py_DECREF(n);
            return -1;
        }
        int negative = PyObject_RichCompareBool(n, zero, Py_LT);
        Py_DECREF(zero);
        if (negative < 0) {
            Py_DECREF(n);
            return -1;
        }
        if (negative) {
            PyErr_Format(err_argument, "%s must be >= 0, got %R", what, n);
            Py_DECREF(n);
            return -1;
        }
        v = UINT64_MAX;
    }
    Py_DECREF(n);
    *out = (uint64_t)v;
    return 0;
}

/* A time: unix seconds as an int (or a float, floored), or an object with a timestamp() method
 * such as datetime.datetime. */
static int
time_arg(PyObject *o, int64_t *out)
{
    PyObject *owned = NULL;
    if (!PyLong_Check(o) && !PyFloat_Check(o)) {
        if (PyObject_HasAttrString(o, "timestamp")) {
            owned = PyObject_CallMethod(o, "timestamp", NULL);
            if (owned == NULL) {
                return -1;
            }
            o = owned;
        } else {
            PyErr_Format(PyExc_TypeError,
                         "at must be unix seconds (int) or a datetime, not %.100s",
                         Py_TYPE(o)->tp_name);
            return -1;
        }
    }
    int rc = 0;
    if (PyFloat_Check(o)) {
        double f = floor(PyFloat_AS_DOUBLE(o));
        if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0)) {
            PyErr_SetString(PyExc_OverflowError, "at is out of the range of unix seconds (int64)");
            rc = -1;
        } else {
            *out = (int64_t)f;
        }
    } else {
        long long v = PyLong_AsLongLong(o);
        if (v == -1 && PyErr_Occurred()) {
            rc = -1;
        } else {
            *out = (int64_t)v;
        }
    }
    Py_XDECREF(owned);
    return rc;
}

/* Fills `out[0..nall]` from positional `args` and keyword `kwnames` for a function whose first
 * `npos` parameters may be positional and the rest keyword-only; absent ones are NULL. The first
 * `nreq` are required. Only reached when a call uses keywords or an unusual argument count. */
static int
parse_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *fname,
           const char *const *names, int npos, int nreq, int nall, PyObject **out)
{
    for (int i = 0; i < nall; i++) {
        out[i] = NULL;
    }
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)",
                     fname, npos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;
        for (int i = 0; i < nall; i++) {
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                found = i;
                break;
            }
        }
        if (found < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         key);
            return -1;
        }
        if (out[found] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[found]);
            return -1;
        }
        out[found] = args[nargs + k];
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    for (int i = nreq; i < nall; i++) {
        if (out[i] == Py_None) {
            out[i] = NULL; /* None means "not given" for every optional parameter */
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Decision
 */

typedef struct {
    PyObject_HEAD
    entitle_decision d;
} DecisionObject;

static PyTypeObject DecisionType;
static int put(PyObject *dict, const char *key, PyObject *value);

static PyObject *
decision_new(const entitle_decision *d)
{
    DecisionObject *self = PyObject_New(DecisionObject, &DecisionType);
    if (self != NULL) {
        self->d = *d;
    }
    return (PyObject *)self;
}

static inline PyObject *
reason_of(entitle_reason r)
{
    if (r < N_REASONS) {
        return Py_NewRef(reason_objs[r]);
    }
    return PyErr_Format(err_base, "unknown reason code %u from the library", (unsigned int)r);
}

static inline PyObject *
feature_type_of(entitle_feature_type t)
{
    return Py_NewRef(t < N_FEATURE_TYPES ? feature_type_objs[t] : Py_None);
}

/* A limit as Python sees it: an int, or UNLIMITED. */
static inline PyObject *
limit_of(uint64_t v)
{
    if (v == ENTITLE_UNLIMITED) {
        return Py_NewRef(unlimited_obj);
    }
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *
Decision_get_value(DecisionObject *self, void *Py_UNUSED(closure))
{
    switch (self->d.feature_type) {
    case ENTITLE_FEATURE_TYPE_FLAG:
        return PyBool_FromLong(self->d.value != 0);
    case ENTITLE_FEATURE_TYPE_LIMIT:
        return limit_of(self->d.value);
    default:
        Py_RETURN_NONE;
    }
}

static PyObject *
Decision_get_limit(DecisionObject *self, void *Py_UNUSED(closure))
{
    if (self->d.feature_type == ENTITLE_FEATURE_TYPE_LIMIT) {
        return limit_of(self->d.value);
    }
    Py_RETURN_NONE;
}

static PyObject *
Decision_get_enabled(DecisionObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->d.enabled);
}

static PyObject *
Decision_get_unlimited(DecisionObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->d.unlimited);
}

static PyObject *
Decision_get_reason(DecisionObject *self, void *Py_UNUSED(closure))
{
    return reason_of(self->d.reason);
}

static PyObject *
Decision_get_feature_type(DecisionObject *self, void *Py_UNUSED(closure))
{
    return feature_type_of(self->d.feature_type);
}

static PyObject *
Decision_get_version(DecisionObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->d.version);
}

static PyGetSetDef Decision_getset[] = {
    {"feature_type", (getter)Decision_get_feature_type, NULL,
     "FeatureType.FLAG or FeatureType.LIMIT; None when the feature is not in the data.", NULL},
    {"value", (getter)Decision_get_value, NULL,
     "A flag's bool, a limit's int or UNLIMITED, or None for an unknown feature.", NULL},
    {"enabled", (getter)Decision_get_enabled, NULL,
     "A flag's value; for a limit, unlimited or greater than 0; False for an unknown feature.",
     NULL},
    {"reason", (getter)Decision_get_reason, NULL, "Why the value is what it is (a Reason).", NULL},
    {"version", (getter)Decision_get_version, NULL,
     "The content version of the data that answered.", NULL},
    {"limit", (getter)Decision_get_limit, NULL,
     "For a limit feature its int or UNLIMITED; None for flags and unknown features.", NULL},
    {"unlimited", (getter)Decision_get_unlimited, NULL, "Whether the limit is UNLIMITED.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *
Decision_repr(DecisionObject *self)
{
    PyObject *ft = Decision_get_feature_type(self, NULL);
    PyObject *value = Decision_get_value(self, NULL);
    PyObject *reason = Decision_get_reason(self, NULL);
    PyObject *r = NULL;
    if (ft != NULL && value != NULL && reason != NULL) {
        r = PyUnicode_FromFormat("Decision(feature_type=%R, value=%R, enabled=%s, reason=%R, "
                                 "version=%llu)",
                                 ft, value, self->d.enabled ? "True" : "False", reason,
                                 (unsigned long long)self->d.version);
    }
    Py_XDECREF(ft);
    Py_XDECREF(value);
    Py_XDECREF(reason);
    return r;
}

static bool
decision_equal(const entitle_decision *a, const entitle_decision *b)
{
    return a->value == b->value && a->version == b->version && a->reason == b->reason &&
           a->feature_type == b->feature_type && a->enabled == b->enabled &&
           a->unlimited == b->unlimited;
}

static PyObject *
Decision_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(b, &DecisionType) ||
        !PyObject_TypeCheck(a, &DecisionType)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    bool eq = decision_equal(&((DecisionObject *)a)->d, &((DecisionObject *)b)->d);
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static Py_hash_t
Decision_hash(DecisionObject *self)
{
    /* The fields are plain integers; mix them like a tuple hash would. */
    uint64_t h = 0x27d4eb2f165667c5ULL;
    uint64_t parts[4] = {self->d.value, self->d.version,
                         ((uint64_t)self->d.reason << 32) | (uint64_t)self->d.feature_type,
                         ((uint64_t)self->d.enabled << 1) | (uint64_t)self->d.unlimited};
    for (int i = 0; i < 4; i++) {
        h ^= parts[i] + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    }
    Py_hash_t r = (Py_hash_t)(h & (uint64_t)PY_SSIZE_T_MAX);
    return r == -1 ? -2 : r;
}

static PyObject *
Decision_reduce(DecisionObject *self, PyObject *Py_UNUSED(ignored))
{
    /* Pickle through the module-level _decision() with the raw fields. */
    PyObject *mod = PyImport_ImportModule("entitle._entitle");
    if (mod == NULL) {
        return NULL;
    }
    PyObject *fn = PyObject_GetAttrString(mod, "_decision");
    Py_DECREF(mod);
    if (fn == NULL) {
        return NULL;
    }
    return Py_BuildValue("N(KKIIii)", fn, (unsigned long long)self->d.value,
                         (unsigned long long)self->d.version, (unsigned int)self->d.reason,
                         (unsigned int)self->d.feature_type, (int)self->d.enabled,
                         (int)self->d.unlimited);
}

/* to_dict(): the decision as JSON-ready values: "unlimited" for UNLIMITED (the catalog's
 * spelling), plain strings for the reason and the feature type. */
static PyObject *
Decision_to_dict(DecisionObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *value;
    switch (self->d.feature_type) {
    case ENTITLE_FEATURE_TYPE_FLAG:
        value = PyBool_FromLong(self->d.value != 0);
        break;
    case ENTITLE_FEATURE_TYPE_LIMIT:
        value = self->d.unlimited ? PyUnicode_FromString("unlimited")
                                  : PyLong_FromUnsignedLongLong(self->d.value);
        break;
    default:
        value = Py_NewRef(Py_None);
        break;
    }
    static const char *const type_names[N_FEATURE_TYPES] = {NULL, "flag", "limit"};
    const char *type_name =
        self->d.feature_type < N_FEATURE_TYPES ? type_names[self->d.feature_type] : NULL;
    PyObject *d = PyDict_New();
    if (d == NULL) {
        Py_XDECREF(value);
        return NULL;
    }
    if (put(d, "feature_type",
            type_name == NULL ? Py_NewRef(Py_None) : PyUnicode_FromString(type_name)) < 0 ||
        put(d, "value", value) < 0 ||
        put(d, "enabled", PyBool_FromLong(self->d.enabled)) < 0 ||
        put(d, "reason", PyUnicode_FromString(entitle_reason_name((uint32_t)self->d.reason))) < 0 ||
        put(d, "version", PyLong_FromUnsignedLongLong(self->d.version)) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyMethodDef Decision_methods[] = {
    {"__reduce__", (PyCFunction)Decision_reduce, METH_NOARGS, NULL},
    {"to_dict", (PyCFunction)Decision_to_dict, METH_NOARGS,
     "to_dict($self, /)\n--\n\n"
     "-> dict. The decision as JSON-ready values: feature_type (\"flag\", \"limit\" or None),\n"
     "value (a bool, an int, \"unlimited\" or None), enabled, reason (its name) and version."},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Decision_doc,
             "Decision: one evaluated answer, as returned by Engine.check().\n\n"
             "Immutable; compares equal to a Decision with the same fields. Attributes:\n"
             "feature_type, value, enabled, reason, version, and the conveniences limit and\n"
             "unlimited.");

static PyTypeObject DecisionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "entitle.Decision",
    .tp_basicsize = sizeof(DecisionObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Decision_doc,
    .tp_repr = (reprfunc)Decision_repr,
    .tp_richcompare = Decision_richcompare,
    .tp_hash = (hashfunc)Decision_hash,
    .tp_getset = Decision_getset,
    .tp_methods = Decision_methods,
    .tp_free = PyObject_Del,
};

/* _decision(value, version, reason, feature_type, enabled, unlimited): rebuilds a pickled
 * Decision. Checks the fields against each other so that no impossible Decision can exist. */
static PyObject *
mod_decision(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long long value, version;
    unsigned int reason, feature_type;
    int enabled, unlimited;
    if (!PyArg_ParseTuple(args, "KKIIpp:_decision", &value, &version, &reason, &feature_type,
                          &enabled, &unlimited)) {
        return NULL;
    }
    bool ok = reason < N_REASONS && feature_type < N_FEATURE_TYPES &&
              (unlimited ? feature_type == ENTITLE_FEATURE_TYPE_LIMIT && value == ENTITLE_UNLIMITED
                         : value <= INT64_MAX) &&
              (feature_type != ENTITLE_FEATURE_TYPE_FLAG || value <= 1) &&
              (feature_type != ENTITLE_FEATURE_TYPE_UNKNOWN || (value == 0 && !enabled)) &&
              (bool)enabled == (unlimited || value > 0);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "inconsistent Decision fields");
        return NULL;
    }
    entitle_decision d = {
        .value = value,
        .version = version,
        .reason = (entitle_reason)reason,
        .feature_type = (entitle_feature_type)feature_type,
        .enabled = enabled != 0,
        .unlimited = unlimited != 0,
    };
    return decision_new(&d);
}

/* ---------------------------------------------------------------------------------------------
 * Engine
 */

typedef struct {
    PyObject_HEAD
    entitle_engine *engine;  /* NULL once closed */
    entitle_engine *retired; /* closed during a lease: freed when the last lease ends */
    Py_ssize_t busy;         /* leases: calls using the engine (see "Lifetime" above) */
    pid_t pid;               /* the process whose threads the engine's threads belong to */
    bool connected;          /* syncs from an edge */
    PyObject *weakreflist;
} EngineObject;

static PyTypeObject EngineType;

/* Frees an engine nobody else can reach any more. Without the GIL: stopping its threads may
 * wait (for a sync thread in a TCP connect, up to its connect timeout). */
static void
free_engine(entitle_engine *e)
{
    if (e != NULL) {
        Py_BEGIN_ALLOW_THREADS
        entitle_engine_free(e);
        Py_END_ALLOW_THREADS
    }
}

static PyObject *
closed_error(void)
{
    PyErr_SetString(err_closed, "the engine is closed");
    return NULL;
}

/* Takes a lease on the native engine: returns it (or NULL with ClosedError set), and it stays
 * allocated until the matching lease_end(), even if close() runs meanwhile. Call it after every
 * Python argument has been converted. */
static entitle_engine *
lease_begin(EngineObject *self)
{
    if (self->engine == NULL) {
        closed_error();
        return NULL;
    }
    self->busy++;
    return self->engine;
}

/* Ends a lease; the last one frees an engine that close() retired meanwhile. */
static void
lease_end(EngineObject *self)
{
    if (self->busy > 0) { /* after_fork() in a child forgets the leases of the parent's threads */
        self->busy--;
    }
    if (self->busy == 0 && self->retired != NULL) {
        entitle_engine *e = self->retired;
        self->retired = NULL;
        free_engine(e);
    }
}

static PyObject *
Engine_new(PyTypeObject *Py_UNUSED(type), PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw))
{
    PyErr_SetString(PyExc_TypeError,
                    "create an Engine with Engine.from_file(), Engine.from_bytes(), "
                    "Engine.from_catalog() or Engine.connect()");
    return NULL;
}

/* Wraps a new engine in an instance of `cls` (Engine or a subclass). Takes ownership of `e`. */
static PyObject *
engine_wrap(PyObject *cls, entitle_engine *e, bool connected)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &EngineType)) {
        free_engine(e);
        PyErr_SetString(PyExc_TypeError, "cls must be a subclass of entitle._entitle.Engine");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    EngineObject *self = (EngineObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        free_engine(e);
        return NULL;
    }
    self->engine = e;
    self->retired = NULL;
    self->busy = 0;
    self->pid = getpid();
    self->connected = connected;
    self->weakreflist = NULL;
    return (PyObject *)self;
}

static void
Engine_dealloc(EngineObject *self)
{
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    /* No call is running: each one holds a reference to self. A retired engine cannot be left:
     * its last busy call would have freed it. Deallocation may run inside the garbage collector,
     * so the GIL is released only when a sync thread may have to be waited for; a static
     * engine's memory is freed at once. */
    entitle_engine *e = self->engine;
    self->engine = NULL;
    if (e != NULL) {
        if (self->connected) {
            free_engine(e);
        } else {
            entitle_engine_free(e);
        }
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
setup_check(void)
{
    if (!setup_done) {
        PyErr_SetString(PyExc_RuntimeError, "import entitle, not entitle._entitle");
        return -1;
    }
    return 0;
}

/* Engine._from_file(path): path is str or bytes (os.fspath already applied). */
static PyObject *
Engine_from_file(PyObject *cls, PyObject *path)
{
    if (setup_check() < 0) {
        return NULL;
    }
    PyObject *raw = path_arg(path, "path"); /* owned: keeps the bytes alive without the GIL */
    if (raw == NULL) {
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(raw);
    size_t n = (size_t)PyBytes_GET_SIZE(raw);
    entitle_engine *e = NULL;
    entitle_result r;
    Py_BEGIN_ALLOW_THREADS
    r = entitle_engine_from_file(p, n, &e);
    Py_END_ALLOW_THREADS
    Py_DECREF(raw);
    if (r != ENTITLE_RESULT_OK) {
        return raise_result(r);
    }
    return engine_wrap(cls, e, false);
}

/* Runs `fn` on a bytes-like object's contents, releasing the GIL when the contents are immutable
 * (bytes): a bytearray could be changed by another thread meanwhile. */
typedef entitle_result (*bytes_loader)(const uint8_t *, size_t, entitle_engine **);

static PyObject *
load_bytes(PyObject *cls, PyObject *data, bytes_loader fn, const char *what)
{
    if (setup_check() < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes-like, not %.100s", what,
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    entitle_engine *e = NULL;
    entitle_result r;
    if (PyBytes_Check(data)) {
        Py_BEGIN_ALLOW_THREADS
        r = fn((const uint8_t *)view.buf, (size_t)view.len, &e);
        Py_END_ALLOW_THREADS
    } else {
        r = fn((const uint8_t *)view.buf, (size_t)view.len, &e);
    }
    PyBuffer_Release(&view);
    if (r != ENTITLE_RESULT_OK) {
        return raise_result(r);
    }
    return engine_wrap(cls, e, false);
}

static PyObject *
Engine_from_snapshot(PyObject *cls, PyObject *data)
{
    return load_bytes(cls, data, entitle_engine_from_snapshot, "data");
}

static PyObject *
Engine_from_catalog_json(PyObject *cls, PyObject *json)
{
    if (PyUnicode_Check(json)) {
        const uint8_t *p;
        size_t n;
        if (setup_check() < 0 || text_arg(json, &p, &n, "catalog") < 0) {
            return NULL;
        }
        entitle_engine *e = NULL;
        entitle_result r = entitle_engine_from_catalog_json(p, n, &e);
        if (r != ENTITLE_RESULT_OK) {
            return raise_result(r);
        }
        return engine_wrap(cls, e, false);
    }
    return load_bytes(cls, json, entitle_engine_from_catalog_json, "catalog");
}

/* The hot path. Each method: two or more arguments, an optional keyword-only `at`. */

static const char *const names_lookup[] = {"customer", "feature", "at"};
static const char *const names_allows[] = {"customer", "feature", "usage", "requested", "at"};

PyDoc_STRVAR(Engine_enabled_doc,
             "enabled($self, customer, feature, *, at=None)\n--\n\n"
             "-> bool. Whether the customer may use the feature: a flag's value; for a limit, UNLIMITED\n"
             "or greater than 0. Unknown features are False; unknown customers get the\n"
             "feature's default. customer and feature are str (or UTF-8 bytes); at is unix\n"
             "seconds or a datetime (default: now).");

static PyObject *
Engine_enabled(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3];
    if (kwnames == NULL && nargs == 2) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = NULL;
    } else if (parse_args(args, nargs, kwnames, "enabled", names_lookup, 2, 2, 3, a) < 0) {
        return NULL;
    }
    const uint8_t *c, *f;
    size_t cn, fn;
    if (text_arg(a[0], &c, &cn, "customer") < 0 || text_arg(a[1], &f, &fn, "feature") < 0) {
        return NULL;
    }
    int64_t at = 0;
    if (a[2] != NULL && time_arg(a[2], &at) < 0) {
        return NULL;
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    bool r = a[2] == NULL ? entitle_engine_enabled(e, c, cn, f, fn)
                          : entitle_engine_enabled_at(e, c, cn, f, fn, at);
    lease_end(self);
    return Py_NewRef(r ? Py_True : Py_False);
}

PyDoc_STRVAR(Engine_limit_doc,
             "limit($self, customer, feature, *, at=None)\n--\n\n"
             "-> int | Unlimited. The customer's limit for the feature: an int, or UNLIMITED (which compares above\n"
             "every int). Flags and unknown features answer 0; use check() to tell them apart.");

static PyObject *
Engine_limit(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3];
    if (kwnames == NULL && nargs == 2) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = NULL;
    } else if (parse_args(args, nargs, kwnames, "limit", names_lookup, 2, 2, 3, a) < 0) {
        return NULL;
    }
    const uint8_t *c, *f;
    size_t cn, fn;
    if (text_arg(a[0], &c, &cn, "customer") < 0 || text_arg(a[1], &f, &fn, "feature") < 0) {
        return NULL;
    }
    int64_t at = 0;
    if (a[2] != NULL && time_arg(a[2], &at) < 0) {
        return NULL;
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    uint64_t v = a[2] == NULL ? entitle_engine_limit(e, c, cn, f, fn)
                              : entitle_engine_limit_at(e, c, cn, f, fn, at);
    lease_end(self);
    return limit_of(v);
}

PyDoc_STRVAR(Engine_allows_doc,
             "allows($self, customer, feature, usage, requested=1, *, at=None)\n--\n\n"
             "-> bool. Whether the customer may use `requested` more of the feature on top of `usage`:\n"
             "a flag allows when enabled; a limit when UNLIMITED or usage + requested <= limit.\n"
             "usage and requested are ints >= 0.");

static PyObject *
Engine_allows(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[5];
    if (kwnames == NULL && (nargs == 3 || nargs == 4)) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = args[2];
        a[3] = nargs == 4 ? args[3] : NULL;
        a[4] = NULL;
    } else if (parse_args(args, nargs, kwnames, "allows", names_allows, 4, 3, 5, a) < 0) {
        return NULL;
    }
    const uint8_t *c, *f;
    size_t cn, fn;
    uint64_t usage, requested = 1;
    int64_t at = 0;
    if (text_arg(a[0], &c, &cn, "customer") < 0 || text_arg(a[1], &f, &fn, "feature") < 0 ||
        count_arg(a[2], &usage, "usage") < 0 ||
        (a[3] != NULL && count_arg(a[3], &requested, "requested") < 0) ||
        (a[4] != NULL && time_arg(a[4], &at) < 0)) {
        return NULL;
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    bool r = a[4] == NULL ? entitle_engine_allows(e, c, cn, f, fn, usage, requested)
                          : entitle_engine_allows_at(e, c, cn, f, fn, usage, requested, at);
    lease_end(self);
    return Py_NewRef(r ? Py_True : Py_False);
}

PyDoc_STRVAR(Engine_check_doc,
             "check($self, customer, feature, *, at=None)\n--\n\n"
             "-> Decision. The whole answer: feature type, value, enabled, reason and data version.\n"
             "Unknown customers and features are answers (see Decision.reason), not errors.\n"
             "Raises ArgumentError for bytes that are not UTF-8.");

static PyObject *
Engine_check(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3];
    if (kwnames == NULL && nargs == 2) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = NULL;
    } else if (parse_args(args, nargs, kwnames, "check", names_lookup, 2, 2, 3, a) < 0) {
        return NULL;
    }
    const uint8_t *c, *f;
    size_t cn, fn;
    if (text_arg(a[0], &c, &cn, "customer") < 0 || text_arg(a[1], &f, &fn, "feature") < 0) {
        return NULL;
    }
    int64_t at = 0;
    if (a[2] != NULL && time_arg(a[2], &at) < 0) {
        return NULL;
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    entitle_decision d;
    entitle_result r = a[2] == NULL ? entitle_engine_check(e, c, cn, f, fn, &d)
                                    : entitle_engine_check_at(e, c, cn, f, fn, at, &d);
    lease_end(self);
    if (r != ENTITLE_RESULT_OK) {
        return raise_result(r);
    }
    return decision_new(&d);
}

static const char *const names_entitlements[] = {"customer", "at"};

PyDoc_STRVAR(Engine_entitlements_doc,
             "entitlements($self, customer, *, at=None)\n--\n\n"
             "-> dict[str, Decision]. Every feature's Decision for the customer, keyed by feature, in the data's feature\n"
             "order. An unknown customer gets each feature's default (reason\n"
             "CUSTOMER_NOT_FOUND).");

static PyObject *
Engine_entitlements(EngineObject *self, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    PyObject *a[2];
    if (parse_args(args, nargs, kwnames, "entitlements", names_entitlements, 1, 1, 2, a) < 0) {
        return NULL;
    }
    const uint8_t *c;
    size_t cn;
    if (text_arg(a[0], &c, &cn, "customer") < 0) {
        return NULL;
    }
    int64_t at = 0;
    if (a[1] != NULL && time_arg(a[1], &at) < 0) {
        return NULL;
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    /* The list owns what it names: it outlives the lease (building the dict runs Python code). */
    entitle_entitlements *list = NULL;
    entitle_result r = a[1] == NULL ? entitle_engine_entitlements(e, c, cn, &list)
                                    : entitle_engine_entitlements_at(e, c, cn, at, &list);
    lease_end(self);
    if (r != ENTITLE_RESULT_OK) {
        return raise_result(r);
    }
    PyObject *dict = PyDict_New();
    size_t n = entitle_entitlements_len(list);
    for (size_t i = 0; dict != NULL && i < n; i++) {
        entitle_entitlement item;
        r = entitle_entitlements_get(list, i, &item);
        if (r != ENTITLE_RESULT_OK) {
            Py_CLEAR(dict);
            raise_result(r);
            break;
        }
        PyObject *key = PyUnicode_DecodeUTF8((const char *)item.key, (Py_ssize_t)item.key_len,
                                             "strict");
        PyObject *value = key == NULL ? NULL : decision_new(&item.decision);
        if (value == NULL || PyDict_SetItem(dict, key, value) < 0) {
            Py_CLEAR(dict);
        }
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    entitle_entitlements_free(list);
    return dict;
}

static PyObject *
Engine_get_version(EngineObject *self, void *Py_UNUSED(closure))
{
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    uint64_t v = entitle_engine_version(e);
    lease_end(self);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *
Engine_get_closed(EngineObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->engine == NULL);
}

static PyObject *
Engine_get_connected(EngineObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->connected);
}

/* Runs an update (replace / apply_delta) on a bytes-like object, without the GIL when the bytes
 * are immutable. */
static PyObject *
update_bytes(EngineObject *self, PyObject *data, bool delta)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes-like, not %.100s",
                     delta ? "delta" : "snapshot", Py_TYPE(data)->tp_name);
        return NULL;
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    uint64_t version = 0;
    entitle_result r;
    const uint8_t *p = (const uint8_t *)view.buf;
    size_t n = (size_t)view.len;
    bool release = PyBytes_Check(data);
    PyThreadState *ts = release ? PyEval_SaveThread() : NULL;
    if (delta) {
        r = entitle_engine_apply_delta(e, p, n, &version);
    } else {
        r = entitle_engine_replace_snapshot(e, p, n);
    }
    if (release) {
        PyEval_RestoreThread(ts);
    }
    lease_end(self);
    PyBuffer_Release(&view);
    if (r != ENTITLE_RESULT_OK) {
        return raise_result(r);
    }
    if (delta) {
        return PyLong_FromUnsignedLongLong(version);
    }
    Py_RETURN_NONE;
}

static PyObject *
Engine_replace(EngineObject *self, PyObject *data)
{
    return update_bytes(self, data, false);
}

static PyObject *
Engine_apply_delta(EngineObject *self, PyObject *data)
{
    return update_bytes(self, data, true);
}

static PyObject *
Engine_replace_file(EngineObject *self, PyObject *path)
{
    PyObject *raw = path_arg(path, "path");
    if (raw == NULL) {
        return NULL;
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        Py_DECREF(raw);
        return NULL;
    }
    entitle_result r;
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(raw);
    size_t n = (size_t)PyBytes_GET_SIZE(raw);
    Py_BEGIN_ALLOW_THREADS
    r = entitle_engine_replace_file(e, p, n);
    Py_END_ALLOW_THREADS
    Py_DECREF(raw);
    lease_end(self);
    if (r != ENTITLE_RESULT_OK) {
        return raise_result(r);
    }
    Py_RETURN_NONE;
}

/* Closes `e`: stops its sync thread without the GIL (it waits for the thread) and wakes the
 * event listener. A static engine has no thread to wait for: closing only wakes its listener. */
static void
stop_sync(EngineObject *self, entitle_engine *e)
{
    if (!self->connected) {
        entitle_engine_close(e);
        return;
    }
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    entitle_engine_close(e);
    Py_END_ALLOW_THREADS
    self->busy--;
}

static PyObject *
Engine_close(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    entitle_engine *e = self->engine;
    if (e == NULL) {
        Py_RETURN_NONE;
    }
    /* From here on new calls see a closed engine; calls already running without the GIL keep
     * their pointer, so the memory goes only when the last of them is done. */
    self->engine = NULL;
    stop_sync(self, e);
    if (self->busy > 0) {
        self->retired = e;
    } else {
        free_engine(e);
    }
    Py_RETURN_NONE;
}

static PyObject *
Engine_stop_sync(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->engine != NULL) {
        stop_sync(self, self->engine);
    }
    Py_RETURN_NONE;
}

static PyObject *
Engine_after_fork(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
    pid_t now = getpid();
    if (self->pid == now) {
        Py_RETURN_FALSE; /* not a new process, or already restarted in it */
    }
    self->pid = now;
    /* Threads that were inside a GIL-free call at the fork do not exist in this process. An
     * engine closed while they ran is left alone: freeing it would join threads of the parent. */
    self->busy = 0;
    self->retired = NULL;
    if (self->engine != NULL) {
        entitle_engine_after_fork(self->engine);
    }
    Py_RETURN_TRUE;
}

/* Seconds (int or float, > 0) as whole milliseconds, at least 1; None as 0 (the library's
 * default). */
static int
millis_arg(PyObject *o, uint64_t *out, const char *what)
{
    if (o == Py_None) {
        *out = 0;
        return 0;
    }
    double s = PyFloat_AsDouble(o);
    if (s == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!(s > 0) || s > 1e12) {
        PyErr_Format(err_connect, "%s must be a number of seconds > 0, got %R", what, o);
        return -1;
    }
    double ms = ceil(s * 1000.0);
    *out = ms < 1.0 ? 1 : (uint64_t)ms;
    return 0;
}

/* Engine._connect(url, token, cache_dir, poll_interval, connect_timeout, request_timeout,
 * max_staleness, long_poll, max_backoff, persist_interval, max_artifact_bytes): durations in
 * seconds or None for the library's default; max_artifact_bytes an int > 0 or None. */
static PyObject *
Engine_connect(PyObject *cls, PyObject *args)
{
    PyObject *url, *token, *cache_dir, *durations[7], *max_artifact;
    if (setup_check() < 0 ||
        !PyArg_ParseTuple(args, "OOOOOOOOOOO:_connect", &url, &token, &cache_dir, &durations[0],
                          &durations[1], &durations[2], &durations[3], &durations[4],
                          &durations[5], &durations[6], &max_artifact)) {
        return NULL;
    }
    uint64_t max_artifact_bytes = 0; /* the library's default */
    if (max_artifact != Py_None) {
        if (!PyLong_Check(max_artifact)) {
            PyErr_Format(PyExc_TypeError, "max_artifact_bytes must be an int, not %.100s",
                         Py_TYPE(max_artifact)->tp_name);
            return NULL;
        }
        unsigned long long v = PyLong_AsUnsignedLongLong(max_artifact);
        if ((v == (unsigned long long)-1 && PyErr_Occurred()) || v == 0) {
            PyErr_Clear();
            PyErr_Format(err_connect, "max_artifact_bytes must be an int from 1 to 2**64-1, got %R",
                         max_artifact);
            return NULL;
        }
        max_artifact_bytes = (uint64_t)v;
    }
    static const char *const duration_names[7] = {
        "poll_interval", "connect_timeout", "request_timeout", "max_staleness",
        "long_poll",     "max_backoff",     "persist_interval",
    };
    uint64_t ms[7];
    for (int i = 0; i < 7; i++) {
        if (millis_arg(durations[i], &ms[i], duration_names[i]) < 0) {
            return NULL;
        }
    }
    entitle_sync_config config;
    memset(&config, 0, sizeof config);
    PyObject *raw_dir = NULL; /* owned: the cache directory as the OS's bytes */
    if (cache_dir != Py_None) {
        raw_dir = path_arg(cache_dir, "cache_dir");
        if (raw_dir == NULL) {
            return NULL;
        }
        config.cache_dir = (const uint8_t *)PyBytes_AS_STRING(raw_dir);
        config.cache_dir_len = (size_t)PyBytes_GET_SIZE(raw_dir);
    }
    if (text_arg(url, &config.url, &config.url_len, "url") < 0 ||
        (token != Py_None && text_arg(token, &config.token, &config.token_len, "token") < 0)) {
        Py_XDECREF(raw_dir);
        return NULL;
    }
    config.max_artifact_bytes = max_artifact_bytes;
    config.poll_interval_ms = ms[0];
    config.connect_timeout_ms = ms[1];
    config.request_timeout_ms = ms[2];
    config.max_staleness_ms = ms[3];
    config.long_poll_ms = ms[4];
    config.max_backoff_ms = ms[5];
    config.persist_interval_ms = ms[6];
    entitle_engine *e = NULL;
    entitle_result r;
    /* Reading the cache may take a while; the strings stay alive through `args`. */
    Py_BEGIN_ALLOW_THREADS
    r = entitle_engine_connect(&config, &e);
    Py_END_ALLOW_THREADS
    Py_XDECREF(raw_dir);
    if (r != ENTITLE_RESULT_OK) {
        return raise_result(r);
    }
    return engine_wrap(cls, e, true);
}

/* Waits in slices so that Ctrl-C (and other signals) interrupt a long wait. */
#define WAIT_SLICE_MS 100

static PyObject *
Engine_wait_ready(EngineObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"timeout"};
    PyObject *a[1];
    if (parse_args(args, nargs, kwnames, "wait_ready", names, 1, 0, 1, a) < 0) {
        return NULL;
    }
    double timeout = -1; /* forever */
    if (a[0] != NULL) {
        timeout = PyFloat_AsDouble(a[0]);
        if (timeout == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (timeout != timeout || timeout < 0) {
            PyErr_Format(err_argument, "timeout must be None or a number of seconds >= 0, got %R",
                         a[0]);
            return NULL;
        }
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    double left_ms = timeout < 0 ? -1 : timeout * 1000.0;
    bool ready = false;
    for (;;) {
        uint64_t slice = WAIT_SLICE_MS;
        if (left_ms >= 0 && left_ms < WAIT_SLICE_MS) {
            slice = (uint64_t)ceil(left_ms);
        }
        Py_BEGIN_ALLOW_THREADS
        ready = entitle_engine_wait_ready(e, slice);
        Py_END_ALLOW_THREADS
        if (ready || self->engine == NULL || (left_ms >= 0 && (left_ms -= (double)slice) <= 0)) {
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            lease_end(self);
            return NULL;
        }
    }
    lease_end(self);
    return Py_NewRef(ready ? Py_True : Py_False);
}

/* _next_event(after_seq, timeout): waits without the GIL, at most `timeout` seconds, for the
 * engine's first event after `after_seq`. Returns (seq, kind, old_version, new_version, at_ms,
 * message), or None when the timeout ran out; raises ClosedError once the engine is closed and
 * every event was seen. Meant for the one listener thread per engine (entitle/_events.py). */
static PyObject *
Engine_next_event(EngineObject *self, PyObject *args)
{
    unsigned long long after;
    double timeout;
    if (!PyArg_ParseTuple(args, "Kd:_next_event", &after, &timeout)) {
        return NULL;
    }
    if (!(timeout >= 0) || timeout > 86400.0) {
        PyErr_Format(err_argument, "timeout must be between 0 and 86400 seconds");
        return NULL;
    }
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    entitle_event ev;
    uint8_t msg[1024];
    size_t len = 0;
    entitle_result r;
    uint64_t timeout_ms = (uint64_t)ceil(timeout * 1000.0);
    Py_BEGIN_ALLOW_THREADS
    r = entitle_engine_next_event(e, (uint64_t)after, timeout_ms, &ev, msg, sizeof msg, &len);
    Py_END_ALLOW_THREADS
    lease_end(self);
    switch (r) {
    case ENTITLE_RESULT_OK:
        return Py_BuildValue("KIKKLN", (unsigned long long)ev.seq, (unsigned int)ev.kind,
                             (unsigned long long)ev.old_version,
                             (unsigned long long)ev.new_version, (long long)ev.at_ms,
                             PyUnicode_DecodeUTF8((const char *)msg, (Py_ssize_t)len, "replace"));
    case ENTITLE_RESULT_TIMEOUT:
        Py_RETURN_NONE;
    case ENTITLE_RESULT_CLOSED:
        return closed_error();
    default:
        return raise_result(r);
    }
}

/* One of the status texts as str, or None when empty. */
static PyObject *
status_text(entitle_engine *e, entitle_status_text which)
{
    size_t cap = 256;
    for (int attempt = 0; attempt < 8; attempt++) {
        uint8_t *buf = PyMem_Malloc(cap);
        if (buf == NULL) {
            return PyErr_NoMemory();
        }
        size_t len = 0;
        entitle_result r = entitle_engine_status_text(e, (uint32_t)which, buf, cap, &len);
        if (r == ENTITLE_RESULT_OK) {
            PyObject *s = len == 0 ? Py_NewRef(Py_None)
                                   : PyUnicode_DecodeUTF8((const char *)buf, (Py_ssize_t)len,
                                                          "replace");
            PyMem_Free(buf);
            return s;
        }
        PyMem_Free(buf);
        if (r != ENTITLE_RESULT_BUFFER_TOO_SMALL) {
            return raise_result(r);
        }
        cap *= 4; /* the text grew since it was sized: retry */
    }
    PyErr_SetString(err_base, "status text keeps growing");
    return NULL;
}

static int
put(PyObject *dict, const char *key, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(dict, key, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *
optional_u64(bool has, uint64_t v)
{
    return has ? PyLong_FromUnsignedLongLong(v) : Py_NewRef(Py_None);
}

static PyObject *
optional_i64(bool has, int64_t v)
{
    return has ? PyLong_FromLongLong(v) : Py_NewRef(Py_None);
}

static PyObject *
Engine_get_status(EngineObject *self, void *Py_UNUSED(closure))
{
    /* Leased throughout: the allocations between the native calls can run a finalizer. */
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        return NULL;
    }
    entitle_status st;
    entitle_result r = entitle_engine_status(e, &st);
    if (r != ENTITLE_RESULT_OK) {
        lease_end(self);
        return raise_result(r);
    }
    PyObject *d = PyDict_New();
    if (d == NULL) {
        lease_end(self);
        return NULL;
    }
    if (put(d, "state", PyUnicode_FromString(entitle_sync_state_name((uint32_t)st.state))) < 0 ||
        put(d, "syncing", PyBool_FromLong(st.syncing)) < 0 ||
        put(d, "version", PyLong_FromUnsignedLongLong(st.version)) < 0 ||
        put(d, "last_success", optional_i64(st.has_last_success, st.last_success)) < 0 ||
        put(d, "data_age",
            st.has_data_age ? PyFloat_FromDouble((double)st.data_age_ms / 1000.0)
                            : Py_NewRef(Py_None)) < 0 ||
        put(d, "last_error", status_text(e, ENTITLE_STATUS_TEXT_LAST_ERROR)) < 0 ||
        put(d, "last_error_at", optional_i64(st.has_last_error_at, st.last_error_at)) < 0 ||
        put(d, "edge_version", optional_u64(st.has_edge_version, st.edge_version)) < 0 ||
        put(d, "syncs", PyLong_FromUnsignedLongLong(st.syncs)) < 0 ||
        put(d, "failures", PyLong_FromUnsignedLongLong(st.failures)) < 0 ||
        put(d, "consecutive_failures", PyLong_FromUnsignedLongLong(st.consecutive_failures)) < 0 ||
        put(d, "updates", PyLong_FromUnsignedLongLong(st.updates)) < 0 ||
        put(d, "deltas_applied", PyLong_FromUnsignedLongLong(st.deltas_applied)) < 0 ||
        put(d, "snapshots_fetched", PyLong_FromUnsignedLongLong(st.snapshots_fetched)) < 0 ||
        put(d, "warm_start", PyBool_FromLong(st.warm_start)) < 0 ||
        put(d, "long_poll", PyBool_FromLong(st.long_poll)) < 0 ||
        put(d, "cache_error", status_text(e, ENTITLE_STATUS_TEXT_CACHE_ERROR)) < 0 ||
        put(d, "lineage", status_text(e, ENTITLE_STATUS_TEXT_LINEAGE)) < 0) {
        lease_end(self);
        Py_DECREF(d);
        return NULL;
    }
    lease_end(self);
    PyObject *status = PyObject_CallOneArg(status_factory, d);
    Py_DECREF(d);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Feature: a feature key resolved once (an entitle_feature) plus the engine it answers from.
 *
 * The handle is a plain value; the object keeps a strong reference to its Engine object, and every
 * lookup converts its arguments first, then takes a lease on that engine for the native call, as
 * the Engine methods do. The handle stays correct across snapshot swaps (see entitle.h).
 */

typedef struct {
    PyObject_HEAD
    EngineObject *engine; /* strong */
    PyObject *key;        /* the key as given (str or bytes), for repr and .key */
    entitle_feature h;
} FeatureObject;

static PyTypeObject FeatureType;

/* A Feature may sit in a cycle (stored as an attribute of an Engine subclass): it takes part in
 * garbage collection. */
static int
Feature_traverse(FeatureObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->engine);
    Py_VISIT(self->key);
    return 0;
}

static int
Feature_clear(FeatureObject *self)
{
    Py_CLEAR(self->engine);
    Py_CLEAR(self->key);
    return 0;
}

static void
Feature_dealloc(FeatureObject *self)
{
    PyObject_GC_UnTrack(self);
    Feature_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Takes a lease on the feature's engine (ClosedError when it is closed, or when the collector
 * already cleared this object in a cycle). */
static inline entitle_engine *
feature_lease(FeatureObject *self)
{
    if (self->engine == NULL) {
        closed_error();
        return NULL;
    }
    return lease_begin(self->engine);
}

PyDoc_STRVAR(Engine_feature_doc,
             "feature($self, key, /)\n--\n\n"
             "-> Feature. Resolves a feature key once: the Feature's lookups skip finding the key on\n"
             "every call. It stays correct when the content is replaced: a feature renumbered by a\n"
             "new snapshot still answers for itself, and one that no longer exists answers\n"
             "FEATURE_NOT_FOUND. A key not in the content yet answers FEATURE_NOT_FOUND until it\n"
             "is. Resolve the features you know at start-up (a process keeps at most 65,535\n"
             "distinct keys).");

static PyObject *
Engine_feature(EngineObject *self, PyObject *key)
{
    const uint8_t *k;
    size_t kn;
    if (text_arg(key, &k, &kn, "key") < 0) {
        return NULL;
    }
    /* Allocating may run the collector, and so Python code: before the lease. `key` is the
     * caller's for the whole call. */
    FeatureObject *f = PyObject_GC_New(FeatureObject, &FeatureType);
    if (f == NULL) {
        return NULL;
    }
    f->engine = NULL;
    f->key = NULL;
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    entitle_result r = entitle_engine_feature(e, k, kn, &f->h);
    lease_end(self);
    if (r != ENTITLE_RESULT_OK) {
        Py_DECREF(f);
        return raise_result(r);
    }
    f->engine = (EngineObject *)Py_NewRef((PyObject *)self);
    f->key = Py_NewRef(key);
    PyObject_GC_Track(f);
    return (PyObject *)f;
}

static const char *const names_f_lookup[] = {"customer", "at"};
static const char *const names_f_allows[] = {"customer", "usage", "requested", "at"};

/* Parses (customer, *, at=None): the fast path is one positional argument. */
static inline int
f_lookup_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *fname,
              const uint8_t **c, size_t *cn, PyObject **at_obj, int64_t *at)
{
    PyObject *a[2];
    if (kwnames == NULL && nargs == 1) {
        a[0] = args[0];
        a[1] = NULL;
    } else if (parse_args(args, nargs, kwnames, fname, names_f_lookup, 1, 1, 2, a) < 0) {
        return -1;
    }
    if (text_arg(a[0], c, cn, "customer") < 0) {
        return -1;
    }
    *at_obj = a[1];
    if (a[1] != NULL && time_arg(a[1], at) < 0) {
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(Feature_enabled_doc,
             "enabled($self, customer, *, at=None)\n--\n\n"
             "-> bool. Whether the customer may use this feature (as Engine.enabled).");

static PyObject *
Feature_enabled(FeatureObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    const uint8_t *c;
    size_t cn;
    PyObject *at_obj;
    int64_t at = 0;
    if (f_lookup_args(args, nargs, kwnames, "enabled", &c, &cn, &at_obj, &at) < 0) {
        return NULL;
    }
    entitle_engine *e = feature_lease(self);
    if (e == NULL) {
        return NULL;
    }
    bool r = at_obj == NULL ? entitle_engine_feature_enabled(e, self->h, c, cn)
                            : entitle_engine_feature_enabled_at(e, self->h, c, cn, at);
    lease_end(self->engine);
    return Py_NewRef(r ? Py_True : Py_False);
}

PyDoc_STRVAR(Feature_limit_doc,
             "limit($self, customer, *, at=None)\n--\n\n"
             "-> int | Unlimited. The customer's limit for this feature (as Engine.limit): 0 for a flag\n"
             "or a feature not in the content.");

static PyObject *
Feature_limit(FeatureObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    const uint8_t *c;
    size_t cn;
    PyObject *at_obj;
    int64_t at = 0;
    if (f_lookup_args(args, nargs, kwnames, "limit", &c, &cn, &at_obj, &at) < 0) {
        return NULL;
    }
    entitle_engine *e = feature_lease(self);
    if (e == NULL) {
        return NULL;
    }
    uint64_t v = at_obj == NULL ? entitle_engine_feature_limit(e, self->h, c, cn)
                                : entitle_engine_feature_limit_at(e, self->h, c, cn, at);
    lease_end(self->engine);
    return limit_of(v);
}

PyDoc_STRVAR(Feature_allows_doc,
             "allows($self, customer, usage, requested=1, *, at=None)\n--\n\n"
             "-> bool. Whether the customer may use `requested` more of this feature on top of `usage`\n"
             "(as Engine.allows).");

static PyObject *
Feature_allows(FeatureObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[4];
    if (kwnames == NULL && (nargs == 2 || nargs == 3)) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = nargs == 3 ? args[2] : NULL;
        a[3] = NULL;
    } else if (parse_args(args, nargs, kwnames, "allows", names_f_allows, 3, 2, 4, a) < 0) {
        return NULL;
    }
    const uint8_t *c;
    size_t cn;
    uint64_t usage, requested = 1;
    int64_t at = 0;
    if (text_arg(a[0], &c, &cn, "customer") < 0 || count_arg(a[1], &usage, "usage") < 0 ||
        (a[2] != NULL && count_arg(a[2], &requested, "requested") < 0) ||
        (a[3] != NULL && time_arg(a[3], &at) < 0)) {
        return NULL;
    }
    entitle_engine *e = feature_lease(self);
    if (e == NULL) {
        return NULL;
    }
    bool r = a[3] == NULL
                 ? entitle_engine_feature_allows(e, self->h, c, cn, usage, requested)
                 : entitle_engine_feature_allows_at(e, self->h, c, cn, usage, requested, at);
    lease_end(self->engine);
    return Py_NewRef(r ? Py_True : Py_False);
}

PyDoc_STRVAR(Feature_check_doc,
             "check($self, customer, *, at=None)\n--\n\n"
             "-> Decision. The whole answer for this feature (as Engine.check). Raises ArgumentError\n"
             "for bytes that are not UTF-8.");

static PyObject *
Feature_check(FeatureObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    const uint8_t *c;
    size_t cn;
    PyObject *at_obj;
    int64_t at = 0;
    if (f_lookup_args(args, nargs, kwnames, "check", &c, &cn, &at_obj, &at) < 0) {
        return NULL;
    }
    entitle_engine *e = feature_lease(self);
    if (e == NULL) {
        return NULL;
    }
    entitle_decision d;
    entitle_result r = at_obj == NULL ? entitle_engine_feature_check(e, self->h, c, cn, &d)
                                      : entitle_engine_feature_check_at(e, self->h, c, cn, at, &d);
    lease_end(self->engine);
    if (r != ENTITLE_RESULT_OK) {
        return raise_result(r);
    }
    return decision_new(&d);
}

static const char *const names_many[] = {"customers", "at"};

/* The batch of customers: a tuple we own (so no Python code can change it under us), its ids
 * packed end to end, and the ends. Free with batch_free. */
typedef struct {
    PyObject *tuple;
    uint8_t *ids;
    size_t *ends;
    size_t count;
    size_t len;
} customer_batch;

static void
batch_free(customer_batch *b)
{
    Py_CLEAR(b->tuple);
    PyMem_Free(b->ids);
    PyMem_Free(b->ends);
    b->ids = NULL;
    b->ends = NULL;
}

static int
batch_from(PyObject *customers, customer_batch *b)
{
    memset(b, 0, sizeof *b);
    if (PyUnicode_Check(customers) || PyBytes_Check(customers)) {
        PyErr_SetString(PyExc_TypeError, "customers must be a sequence of str or bytes, not one id");
        return -1;
    }
    b->tuple = PySequence_Tuple(customers);
    if (b->tuple == NULL) {
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(b->tuple);
    b->count = (size_t)n;
    b->ends = PyMem_Malloc(((size_t)n + 1) * sizeof *b->ends);
    if (b->ends == NULL) {
        batch_free(b);
        PyErr_NoMemory();
        return -1;
    }
    /* Two passes: lengths (converting each str to UTF-8 once), then copies. The tuple keeps every
     * item, and so its UTF-8, alive. */
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len;
        if (text_arg(PyTuple_GET_ITEM(b->tuple, i), &p, &len, "each customer") < 0) {
            batch_free(b);
            return -1;
        }
        total += len;
        b->ends[i] = total;
    }
    b->len = total;
    b->ids = PyMem_Malloc(total + 1);
    if (b->ids == NULL) {
        batch_free(b);
        PyErr_NoMemory();
        return -1;
    }
    size_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p = NULL;
        size_t len = 0;
        /* Cannot fail: the first pass converted every item (and CPython cached the UTF-8). */
        if (text_arg(PyTuple_GET_ITEM(b->tuple, i), &p, &len, "each customer") < 0) {
            batch_free(b);
            return -1;
        }
        memcpy(b->ids + at, p, len);
        at += len;
    }
    return 0;
}

/* Runs entitle_engine_check_customers[_at] for a Feature's batch call. Returns a PyMem buffer of
 * decisions (NULL with an exception set). */
static entitle_decision *
feature_batch(FeatureObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
              const char *fname, size_t *count)
{
    PyObject *a[2];
    if (kwnames == NULL && nargs == 1) {
        a[0] = args[0];
        a[1] = NULL;
    } else if (parse_args(args, nargs, kwnames, fname, names_many, 1, 1, 2, a) < 0) {
        return NULL;
    }
    int64_t at = 0;
    if (a[1] != NULL && time_arg(a[1], &at) < 0) {
        return NULL;
    }
    customer_batch b;
    if (batch_from(a[0], &b) < 0) {
        return NULL;
    }
    entitle_decision *out = PyMem_Malloc((b.count + 1) * sizeof *out);
    if (out == NULL) {
        batch_free(&b);
        PyErr_NoMemory();
        return NULL;
    }
    entitle_engine *e = feature_lease(self);
    if (e == NULL) {
        PyMem_Free(out);
        batch_free(&b);
        return NULL;
    }
    entitle_result r =
        a[1] == NULL
            ? entitle_engine_check_customers(e, self->h, b.ids, b.len, b.ends, b.count, out)
            : entitle_engine_check_customers_at(e, self->h, b.ids, b.len, b.ends, b.count, at, out);
    lease_end(self->engine);
    *count = b.count;
    batch_free(&b);
    if (r != ENTITLE_RESULT_OK) {
        PyMem_Free(out);
        raise_result(r);
        return NULL;
    }
    return out;
}

PyDoc_STRVAR(Feature_enabled_many_doc,
             "enabled_many($self, customers, *, at=None)\n--\n\n"
             "-> list[bool]. enabled() for each customer of a sequence, in one native call whose memory\n"
             "loads overlap: for customers spread over a large snapshot, much cheaper per customer\n"
             "than calling enabled() in a loop. Every answer comes from the same content version.");

static PyObject *
Feature_enabled_many(FeatureObject *self, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    size_t n = 0;
    entitle_decision *out = feature_batch(self, args, nargs, kwnames, "enabled_many", &n);
    if (out == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyList_SET_ITEM(list, (Py_ssize_t)i, Py_NewRef(out[i].enabled ? Py_True : Py_False));
    }
    PyMem_Free(out);
    return list;
}

PyDoc_STRVAR(Feature_check_many_doc,
             "check_many($self, customers, *, at=None)\n--\n\n"
             "-> list[Decision]. check() for each customer of a sequence, in one native call (see\n"
             "enabled_many). Every answer comes from the same content version.");

static PyObject *
Feature_check_many(FeatureObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    size_t n = 0;
    entitle_decision *out = feature_batch(self, args, nargs, kwnames, "check_many", &n);
    if (out == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *d = decision_new(&out[i]);
        if (d == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, d);
    }
    PyMem_Free(out);
    return list;
}

static PyObject *
Feature_get_key(FeatureObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->key != NULL ? self->key : Py_None);
}

static PyObject *
Feature_get_engine(FeatureObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->engine != NULL ? (PyObject *)self->engine : Py_None);
}

static PyObject *
Feature_repr(FeatureObject *self)
{
    if (self->key == NULL) {
        return PyUnicode_FromString("<entitle.Feature (cleared)>");
    }
    return PyUnicode_FromFormat("<entitle.Feature %R>", self->key);
}

static PyMethodDef Feature_methods[] = {
    {"enabled", (PyCFunction)(void (*)(void))Feature_enabled, METH_FASTCALL | METH_KEYWORDS,
     Feature_enabled_doc},
    {"limit", (PyCFunction)(void (*)(void))Feature_limit, METH_FASTCALL | METH_KEYWORDS,
     Feature_limit_doc},
    {"allows", (PyCFunction)(void (*)(void))Feature_allows, METH_FASTCALL | METH_KEYWORDS,
     Feature_allows_doc},
    {"check", (PyCFunction)(void (*)(void))Feature_check, METH_FASTCALL | METH_KEYWORDS,
     Feature_check_doc},
    {"enabled_many", (PyCFunction)(void (*)(void))Feature_enabled_many,
     METH_FASTCALL | METH_KEYWORDS, Feature_enabled_many_doc},
    {"check_many", (PyCFunction)(void (*)(void))Feature_check_many, METH_FASTCALL | METH_KEYWORDS,
     Feature_check_many_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Feature_getset[] = {
    {"key", (getter)Feature_get_key, NULL, "The feature key, as given to Engine.feature().", NULL},
    {"engine", (getter)Feature_get_engine, NULL, "The engine this feature answers from.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FeatureType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "entitle.Feature",
    .tp_basicsize = sizeof(FeatureObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A feature key resolved once by Engine.feature(): enabled(customer), limit(customer),\n"
              "allows(customer, usage, requested=1), check(customer), and the batch calls\n"
              "enabled_many(customers) and check_many(customers).",
    .tp_dealloc = (destructor)Feature_dealloc,
    .tp_traverse = (traverseproc)Feature_traverse,
    .tp_clear = (inquiry)Feature_clear,
    .tp_repr = (reprfunc)Feature_repr,
    .tp_methods = Feature_methods,
    .tp_getset = Feature_getset,
    .tp_free = PyObject_GC_Del,
};

PyDoc_STRVAR(Engine_check_features_doc,
             "check_features($self, customer, features, *, at=None)\n--\n\n"
             "-> list[Decision]. One customer, many features (a sequence of Feature objects from\n"
             "Engine.feature()), in one native call that finds the customer once. Every answer\n"
             "comes from the same content version.");

static const char *const names_check_features[] = {"customer", "features", "at"};

static PyObject *
Engine_check_features(EngineObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    PyObject *a[3];
    if (parse_args(args, nargs, kwnames, "check_features", names_check_features, 2, 2, 3, a) < 0) {
        return NULL;
    }
    const uint8_t *c;
    size_t cn;
    int64_t at = 0;
    if (text_arg(a[0], &c, &cn, "customer") < 0 || (a[2] != NULL && time_arg(a[2], &at) < 0)) {
        return NULL;
    }
    PyObject *tuple = PySequence_Tuple(a[1]);
    if (tuple == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    entitle_feature *hs = PyMem_Malloc(((size_t)n + 1) * sizeof *hs);
    entitle_decision *out = PyMem_Malloc(((size_t)n + 1) * sizeof *out);
    if (hs == NULL || out == NULL) {
        PyMem_Free(hs);
        PyMem_Free(out);
        Py_DECREF(tuple);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyTuple_GET_ITEM(tuple, i);
        if (!PyObject_TypeCheck(f, &FeatureType)) {
            PyErr_Format(PyExc_TypeError, "features must hold Feature objects, not %.100s",
                         Py_TYPE(f)->tp_name);
            PyMem_Free(hs);
            PyMem_Free(out);
            Py_DECREF(tuple);
            return NULL;
        }
        hs[i] = ((FeatureObject *)f)->h;
    }
    Py_DECREF(tuple);
    entitle_engine *e = lease_begin(self);
    if (e == NULL) {
        PyMem_Free(hs);
        PyMem_Free(out);
        return NULL;
    }
    entitle_result r = a[2] == NULL
                           ? entitle_engine_check_features(e, c, cn, hs, (size_t)n, out)
                           : entitle_engine_check_features_at(e, c, cn, hs, (size_t)n, at, out);
    lease_end(self);
    PyMem_Free(hs);
    PyObject *list = NULL;
    if (r != ENTITLE_RESULT_OK) {
        raise_result(r);
    } else {
        list = PyList_New(n);
        for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
            PyObject *d = decision_new(&out[i]);
            if (d == NULL) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, i, d);
        }
    }
    PyMem_Free(out);
    return list;
}

static PyMethodDef Engine_methods[] = {
    {"_from_file", (PyCFunction)Engine_from_file, METH_O | METH_CLASS,
     "_from_file(path): an engine from a snapshot or catalog file."},
    {"_from_snapshot", (PyCFunction)Engine_from_snapshot, METH_O | METH_CLASS,
     "_from_snapshot(data): an engine from snapshot bytes."},
    {"_from_catalog_json", (PyCFunction)Engine_from_catalog_json, METH_O | METH_CLASS,
     "_from_catalog_json(json): an engine from catalog JSON text (str or bytes)."},
    {"enabled", (PyCFunction)(void (*)(void))Engine_enabled, METH_FASTCALL | METH_KEYWORDS,
     Engine_enabled_doc},
    {"limit", (PyCFunction)(void (*)(void))Engine_limit, METH_FASTCALL | METH_KEYWORDS,
     Engine_limit_doc},
    {"allows", (PyCFunction)(void (*)(void))Engine_allows, METH_FASTCALL | METH_KEYWORDS,
     Engine_allows_doc},
    {"check", (PyCFunction)(void (*)(void))Engine_check, METH_FASTCALL | METH_KEYWORDS,
     Engine_check_doc},
    {"entitlements", (PyCFunction)(void (*)(void))Engine_entitlements,
     METH_FASTCALL | METH_KEYWORDS, Engine_entitlements_doc},
    {"feature", (PyCFunction)Engine_feature, METH_O, Engine_feature_doc},
    {"check_features", (PyCFunction)(void (*)(void))Engine_check_features,
     METH_FASTCALL | METH_KEYWORDS, Engine_check_features_doc},
    {"replace", (PyCFunction)Engine_replace, METH_O,
     "replace($self, snapshot, /)\n--\n\n"
     "Replaces the whole content with a snapshot. Lookups meanwhile see the old or the new\n"
     "content, never a mix. On failure the content is kept and SnapshotError is raised."},
    {"replace_file", (PyCFunction)Engine_replace_file, METH_O,
     "replace_file($self, path, /)\n--\n\nReplaces the content with a snapshot or catalog file."},
    {"apply_delta", (PyCFunction)Engine_apply_delta, METH_O,
     "apply_delta($self, delta, /)\n--\n\n"
     "-> int. Applies a delta (from `entitle diff`) and returns the new content version. Raises\n"
     "DeltaError (content kept) for a delta made for another base or unreadable bytes."},
    {"_connect", (PyCFunction)Engine_connect, METH_VARARGS | METH_CLASS,
     "_connect(url, token, cache_dir, *durations): an engine syncing from an edge."},
    {"wait_ready", (PyCFunction)(void (*)(void))Engine_wait_ready, METH_FASTCALL | METH_KEYWORDS,
     "wait_ready($self, timeout=None)\n--\n\n"
     "-> bool. Waits until the engine has content (from its cache or a first successful sync), at\n"
     "most `timeout` seconds (None: as long as it takes). Returns whether it has. Engines\n"
     "that do not sync are ready at once. Lookups on other threads go on meanwhile."},
    {"_next_event", (PyCFunction)Engine_next_event, METH_VARARGS,
     "_next_event(after_seq, timeout): the next engine event, None on timeout (internal)."},
    {"_stop_sync", (PyCFunction)Engine_stop_sync, METH_NOARGS,
     "_stop_sync(): stops the sync thread; the engine keeps answering."},
    {"close", (PyCFunction)Engine_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Stops the engine's sync thread (if any) and frees its memory. Idempotent; later\n"
     "lookups raise ClosedError."},
    {"_after_fork", (PyCFunction)Engine_after_fork, METH_NOARGS,
     "_after_fork() -> bool: restarts background threads in a forked child; True if it did."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"version", (getter)Engine_get_version, NULL, "The content version being served.", NULL},
    {"closed", (getter)Engine_get_closed, NULL, "Whether close() was called.", NULL},
    {"status", (getter)Engine_get_status, NULL,
     "The sync status (a Status); engines that do not sync are always ready.", NULL},
    {"connected", (getter)Engine_get_connected, NULL, "Whether the engine syncs from an edge.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "entitle._entitle.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The native engine; use entitle.Engine.",
    .tp_new = Engine_new,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_weaklistoffset = offsetof(EngineObject, weakreflist),
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

/* ---------------------------------------------------------------------------------------------
 * Module
 */

/* _setup(reasons, feature_types, unlimited, errors, status_factory): called once by
 * entitle/__init__.py. reasons: the 5 Reason members in code order; feature_types: the
 * FeatureType members FLAG and LIMIT; errors: a dict of the exception classes. */
static PyObject *
mod_setup(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *reasons, *types, *unlimited, *errors, *status;
    if (!PyArg_ParseTuple(args, "O!O!OO!O:_setup", &PyTuple_Type, &reasons, &PyTuple_Type,
                          &types, &unlimited, &PyDict_Type, &errors, &status)) {
        return NULL;
    }
    if (setup_done) {
        PyErr_SetString(PyExc_RuntimeError, "_setup() was already called");
        return NULL;
    }
    if (PyTuple_GET_SIZE(reasons) != N_REASONS || PyTuple_GET_SIZE(types) != 2) {
        PyErr_SetString(PyExc_ValueError, "_setup(): expected 5 reasons and 2 feature types");
        return NULL;
    }
    /* The Python members must spell the library's names, in the library's code order. */
    for (int i = 0; i < N_REASONS; i++) {
        PyObject *value = PyObject_GetAttrString(PyTuple_GET_ITEM(reasons, i), "value");
        if (value == NULL) {
            return NULL;
        }
        int same = PyUnicode_Check(value) &&
                   PyUnicode_CompareWithASCIIString(value, entitle_reason_name((uint32_t)i)) == 0;
        Py_DECREF(value);
        if (!same) {
            PyErr_Format(PyExc_ValueError, "_setup(): reason %d must be '%s'", i,
                         entitle_reason_name((uint32_t)i));
            return NULL;
        }
    }
    for (int i = 0; i < 2; i++) {
        PyObject *value = PyObject_GetAttrString(PyTuple_GET_ITEM(types, i), "value");
        if (value == NULL) {
            return NULL;
        }
        uint32_t code = (uint32_t)(i + 1);
        int same = PyUnicode_Check(value) &&
                   PyUnicode_CompareWithASCIIString(value, entitle_feature_type_name(code)) == 0;
        Py_DECREF(value);
        if (!same) {
            PyErr_Format(PyExc_ValueError, "_setup(): feature type %d must be '%s'", i,
                         entitle_feature_type_name(code));
            return NULL;
        }
    }
    static const struct {
        const char *name;
        PyObject **slot;
    } classes[] = {
        {"base", &err_base},         {"catalog", &err_catalog}, {"format", &err_format},
        {"delta", &err_delta},       {"file", &err_file},       {"connect", &err_connect},
        {"argument", &err_argument}, {"closed", &err_closed},
    };
    size_t nclasses = sizeof classes / sizeof classes[0];
    for (size_t i = 0; i < nclasses; i++) {
        PyObject *cls = PyDict_GetItemString(errors, classes[i].name);
        if (cls == NULL || !PyExceptionClass_Check(cls)) {
            PyErr_Format(PyExc_ValueError, "_setup(): errors['%s'] must be an exception class",
                         classes[i].name);
            return NULL;
        }
    }
    for (size_t i = 0; i < nclasses; i++) {
        *classes[i].slot = Py_NewRef(PyDict_GetItemString(errors, classes[i].name));
    }
    for (int i = 0; i < N_REASONS; i++) {
        reason_objs[i] = Py_NewRef(PyTuple_GET_ITEM(reasons, i));
    }
    feature_type_objs[ENTITLE_FEATURE_TYPE_UNKNOWN] = Py_NewRef(Py_None);
    feature_type_objs[ENTITLE_FEATURE_TYPE_FLAG] = Py_NewRef(PyTuple_GET_ITEM(types, 0));
    feature_type_objs[ENTITLE_FEATURE_TYPE_LIMIT] = Py_NewRef(PyTuple_GET_ITEM(types, 1));
    unlimited_obj = Py_NewRef(unlimited);
    status_factory = Py_NewRef(status);
    setup_done = true;
    Py_RETURN_NONE;
}

static PyObject *
mod_library_version(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(entitle_version());
}

static PyObject *
mod_formats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(II)", (unsigned int)entitle_snapshot_format_version(),
                         (unsigned int)entitle_delta_format_version());
}

/* _error_class(code): the class raise_result picks for `code`, for the package's tests. */
static PyObject *
mod_error_class(PyObject *Py_UNUSED(module), PyObject *code)
{
    if (!setup_done) {
        PyErr_SetString(PyExc_RuntimeError, "import entitle, not entitle._entitle");
        return NULL;
    }
    unsigned long v = PyLong_AsUnsignedLong(code);
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (v > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a result code is at most 2**32-1");
        return NULL;
    }
    return Py_NewRef(error_class((entitle_result)v));
}

static PyMethodDef module_methods[] = {
    {"_setup", mod_setup, METH_VARARGS, "Internal: hands the Python-side classes to the module."},
    {"_decision", mod_decision, METH_VARARGS, "Internal: rebuilds a pickled Decision."},
    {"_error_class", mod_error_class, METH_O,
     "Internal: the exception class raised for a result code (0 to 2**32-1)."},
    {"library_version", mod_library_version, METH_NOARGS,
     "library_version($module, /)\n--\n\n-> str. The version of the native entitle library."},
    {"formats", mod_formats, METH_NOARGS,
     "formats($module, /)\n--\n\n"
     "-> tuple[int, int]. The snapshot and delta format versions the library reads and writes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "entitle._entitle",
    .m_doc = "The native part of the entitle package; use the entitle module.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__entitle(void)
{
    if (PyType_Ready(&DecisionType) < 0 || PyType_Ready(&EngineType) < 0 ||
        PyType_Ready(&FeatureType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&DecisionType);
    if (PyModule_AddObject(m, "Decision", (PyObject *)&DecisionType) < 0) {
        Py_DECREF(&DecisionType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FeatureType);
    if (PyModule_AddObject(m, "Feature", (PyObject *)&FeatureType) < 0) {
        Py_DECREF(&FeatureType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
