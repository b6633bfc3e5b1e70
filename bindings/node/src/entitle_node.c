/*
 * entitle_node.c: the Node-API addon over the entitle C ABI (entitle.h), linked with the static
 * libentitle.a.
 *
 * The JavaScript surface lives in index.js; this file holds what must be fast or must own native
 * memory. Every export is a plain function whose first argument is the engine's handle, a
 * `napi_external` (the cheapest way to carry a pointer through JavaScript: no wrap lookup, no
 * prototype chain). A lookup crosses into the library once and allocates nothing: strings are
 * copied into a stack buffer as UTF-8.
 *
 * Lifetime: the engine lives in a `shared_engine` with a reference count. The handle (owned by the
 * JS thread) holds one reference until close() or its finalizer; every piece of work that uses
 * the engine off the JS thread (a waitReady's thread, the change-event thread) holds one more.
 * The last reference frees the engine, so it is never freed under a running call, and close()
 * never waits for a pending waitReady: closing the engine wakes it.
 *
 * Also here: feature handles (an entitle_feature in a small external, selected for a lookup by
 * its number) and batches, which take their ids as one joined string.
 *
 * State per Node environment (the main thread and each worker load their own instance): the
 * error factory from index.js, a scratch Float64Array that check() fills and that carries the
 * selected feature handle's number, and the table of feature handles, kept with
 * napi_set_instance_data and passed to every function as its data. There are no other globals.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uchar.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entitle.h"

/* Result code the package uses for calls on a closed engine (reserved in the C ABI). */
#define RESULT_CLOSED 17u

/* Values written per decision into the scratch array: feature type, enabled, limit, reason,
 * version. */
#define DECISION_SLOTS 5
/* Decisions the scratch array holds (entitlements() with more features allocates its own). */
#define SCRATCH_DECISIONS 64
/* The scratch array's last slot, after the decisions: the number of the feature handle that the
 * next feature lookup uses (see "Feature handles" below). */
#define SELECT_SLOT (SCRATCH_DECISIONS * DECISION_SLOTS)
#define SCRATCH_LENGTH (SELECT_SLOT + 1)

/* ---------------------------------------------------------------------------------------------
 * Per-environment state
 */

typedef struct feature_handle feature_handle;

/* The feature handles of one environment by number (JS thread only). A number is reused once its
 * handle is finalized. The table is shared by the environment's state and each handle in it, and
 * freed by the last of them, whatever order teardown finalizes them in. */
typedef struct {
    feature_handle **slots; /* NULL: free */
    uint32_t len, cap;
    uint32_t *free_ids;
    uint32_t free_len;
    unsigned refs;
} feature_table;

typedef struct {
    napi_ref make_error; /* index.js: (result, detail) => EntitleError subclass instance */
    napi_ref scratch;    /* Float64Array(SCRATCH_LENGTH), exported as `scratch` */
    double *scratch_data;
    feature_table *features;
} addon_state;

static void
feature_table_release(feature_table *t)
{
    if (--t->refs == 0) {
        free(t->slots);
        free(t->free_ids);
        free(t);
    }
}

static void
state_finalize(napi_env env, void *data, void *hint)
{
    (void)hint;
    addon_state *st = data;
    if (st->make_error != NULL) {
        napi_delete_reference(env, st->make_error);
    }
    if (st->scratch != NULL) {
        napi_delete_reference(env, st->scratch);
    }
    feature_table_release(st->features);
    free(st);
}

static addon_state *
state_of(napi_env env)
{
    void *data = NULL;
    napi_get_instance_data(env, &data);
    return data;
}

/* ---------------------------------------------------------------------------------------------
 * Engines
 */

typedef struct {
    entitle_engine *engine;
    atomic_uint refs;
} shared_engine;

typedef struct watcher watcher;

typedef struct {
    /* The engine for lookups on the JS thread; NULL once closed. */
    entitle_engine *engine;
    shared_engine *shared; /* NULL once closed */
    watcher *watch;        /* the change-event thread, when listened to */
    /* Owners of this struct: the engine's external and each feature handle resolved from it (JS
     * thread only). A feature handle reaches its engine through here, so the struct outlives
     * every feature made from it even when the engine's external is collected first. */
    unsigned owners;
} handle;

static void handle_unwatch(handle *h);

static void
shared_release(shared_engine *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        entitle_engine_free(s->engine);
        free(s);
    }
}

static void
shared_acquire(shared_engine *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* Closes the engine (stops its sync thread, wakes its waiters) and drops the handle's reference.
 * Idempotent. */
static void
handle_close(handle *h)
{
    if (h->shared == NULL) {
        return;
    }
    shared_engine *s = h->shared;
    h->engine = NULL;
    h->shared = NULL;
    handle_unwatch(h);
    entitle_engine_close(s->engine); /* also wakes the event thread's wait */
    shared_release(s);
}

/* Drops one owner; the last one frees the struct. */
static void
handle_release(handle *h)
{
    if (--h->owners == 0) {
        free(h);
    }
}

static void
handle_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    handle *h = data;
    handle_close(h);
    handle_release(h);
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* Throws the EntitleError subclass for `result`, built by index.js from the result code and
 * `detail`. Nothing pending is overwritten. */
static void
throw_result_detail(napi_env env, uint32_t result, const char *detail, size_t detail_len)
{
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
        return;
    }
    addon_state *st = state_of(env);
    napi_value fn, argv[2], err, undef;
    if (st == NULL || st->make_error == NULL ||
        napi_get_reference_value(env, st->make_error, &fn) != napi_ok || fn == NULL) {
        napi_throw_error(env, "ENTITLE_SETUP", "entitle: the addon was not set up by index.js");
        return;
    }
    napi_create_uint32(env, result, &argv[0]);
    napi_create_string_utf8(env, detail, detail_len, &argv[1]);
    napi_get_undefined(env, &undef);
    if (napi_call_function(env, undef, fn, 2, argv, &err) == napi_ok) {
        napi_throw(env, err);
    }
}

/* Throws for a failed library call, with this thread's detail from the library (read at once:
 * the next failing call on this thread would replace it). Returns NULL for the caller to return. */
static napi_value
throw_result(napi_env env, entitle_result result)
{
    char stack[512];
    size_t len = entitle_last_error_len();
    char *buf = len <= sizeof stack ? stack : malloc(len);
    size_t written = 0;
    if (buf != NULL && len > 0 &&
        entitle_last_error_message((uint8_t *)buf, len, &written) == ENTITLE_RESULT_OK &&
        written > 0) {
        throw_result_detail(env, (uint32_t)result, buf, written);
    } else {
        const char *text = entitle_result_message((uint32_t)result);
        throw_result_detail(env, (uint32_t)result, text, strlen(text));
    }
    if (buf != NULL && buf != stack) {
        free(buf);
    }
    return NULL;
}

static napi_value
throw_closed(napi_env env)
{
    static const char text[] = "the engine is closed";
    throw_result_detail(env, RESULT_CLOSED, text, sizeof text - 1);
    return NULL;
}

static napi_value
throw_type(napi_env env, const char *message)
{
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return NULL;
}

static napi_value
throw_range(napi_env env, const char *message)
{
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Arguments
 */

/* Reads the call's arguments; missing ones read as undefined. */
static bool
args(napi_env env, napi_callback_info info, size_t want, napi_value *argv)
{
    size_t argc = want;
    return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok;
}

/* The handle in `v` and its live engine; throws ClosedError when it was closed. */
static inline entitle_engine *
engine_arg(napi_env env, napi_value v, handle **out)
{
    void *p = NULL;
    if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
        throw_type(env, "expected an engine handle");
        return NULL;
    }
    handle *h = p;
    if (out != NULL) {
        *out = h;
    }
    if (h->engine == NULL) {
        throw_closed(env);
        return NULL;
    }
    return h->engine;
}

/* A string argument as UTF-8: in `stack` (STR_STACK bytes) when it fits, else in a heap buffer
 * that str_done() frees. */
#define STR_STACK 256

typedef struct {
    char *ptr;
    size_t len;
    bool heap;
} str_arg;

/* The general case of str_get: V8's UTF-8 conversion (unpaired surrogates become U+FFFD), into
 * `stack` or, for a long string, a heap buffer. */
static bool
str_get_utf8(napi_env env, napi_value v, char *stack, str_arg *out, const char *what)
{
    size_t len = 0;
    napi_status status = napi_get_value_string_utf8(env, v, stack, STR_STACK, &len);
    if (status != napi_ok) {
        char message[96];
        snprintf(message, sizeof message, "%s must be a string", what);
        throw_type(env, message);
        return false;
    }
    out->ptr = stack;
    out->len = len;
    out->heap = false;
    /* The copy stops at a character boundary before the buffer's end: a string this long may
     * have been cut, so ask for its full length. */
    if (len + 4 >= STR_STACK) {
        size_t full = 0;
        napi_get_value_string_utf8(env, v, NULL, 0, &full);
        if (full > len) {
            char *buf = malloc(full + 1);
            if (buf == NULL) {
                napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
                return false;
            }
            napi_get_value_string_utf8(env, v, buf, full + 1, &len);
            out->ptr = buf;
            out->len = len;
            out->heap = true;
        }
    }
    return true;
}

/* Copies `n` UTF-16 code units into `out` as bytes; true when every unit was ASCII (then `out`
 * holds the string's UTF-8). */
static inline bool
ascii_narrow(const char16_t *units, size_t n, char *out)
{
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i high_bits = _mm_set1_epi16((short)0xff80);
    if (n >= 8 && n <= 16) {
        /* Most ids: two blocks of 8 units, the second ending at the last unit (they overlap
         * when n < 16), and no loop. */
        __m128i a = _mm_loadu_si128((const __m128i *)units);
        __m128i b = _mm_loadu_si128((const __m128i *)(units + n - 8));
        _mm_storel_epi64((__m128i *)out, _mm_packus_epi16(a, a));
        _mm_storel_epi64((__m128i *)(out + n - 8), _mm_packus_epi16(b, b));
        __m128i high = _mm_and_si128(_mm_or_si128(a, b), high_bits);
        return _mm_movemask_epi8(_mm_cmpeq_epi16(high, _mm_setzero_si128())) == 0xffff;
    }
    if (n > 16) {
        __m128i any = _mm_setzero_si128();
        for (;; i += 8) {
            /* The last block overlaps the one before it rather than leaving a tail. */
            if (i + 8 > n) {
                i = n - 8;
            }
            __m128i v = _mm_loadu_si128((const __m128i *)(units + i));
            any = _mm_or_si128(any, v);
            _mm_storel_epi64((__m128i *)(out + i), _mm_packus_epi16(v, v));
            if (i + 8 == n) {
                break;
            }
        }
        /* A unit >= 0x80 has a bit of 0xff80 set (the packed bytes are then wrong, and unused). */
        __m128i high = _mm_and_si128(any, high_bits);
        return _mm_movemask_epi8(_mm_cmpeq_epi16(high, _mm_setzero_si128())) == 0xffff;
    }
#endif
    uint16_t tail = 0;
    for (; i < n; i++) {
        tail |= units[i];
        out[i] = (char)units[i];
    }
    return tail < 0x80;
}

/* A string argument as UTF-8. Ids are ASCII, and V8 copies a string out as UTF-16 for a fraction
 * of the cost of its UTF-8 conversion, so a string is read as UTF-16 first; when it is short
 * (under STR_STACK code units) and every unit is ASCII, those units are its UTF-8 bytes. Any
 * other string takes the general path, so every string reads exactly as V8 converts it. */
static inline bool
str_get(napi_env env, napi_value v, char *stack, str_arg *out, const char *what)
{
    char16_t units[STR_STACK];
    size_t n = 0;
    if (napi_get_value_string_utf16(env, v, units, STR_STACK, &n) == napi_ok && n < STR_STACK - 1) {
        if (ascii_narrow(units, n, stack)) {
            out->ptr = stack;
            out->len = n;
            out->heap = false;
            return true;
        }
    }
    return str_get_utf8(env, v, stack, out, what);
}

static inline void
str_done(str_arg *s)
{
    if (s->heap) {
        free(s->ptr);
        s->heap = false;
    }
}

/* Bytes from a Buffer, a TypedArray, a DataView or an ArrayBuffer (borrowed for the call). */
static bool
bytes_get(napi_env env, napi_value v, const uint8_t **ptr, size_t *len, const char *what)
{
    bool is = false;
    void *data = NULL;
    if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
        napi_typedarray_type type;
        size_t count = 0, offset = 0;
        napi_value ab;
        if (napi_get_typedarray_info(env, v, &type, &count, &data, &ab, &offset) != napi_ok) {
            return false;
        }
        size_t elem = 1;
        switch (type) {
        case napi_int16_array:
        case napi_uint16_array:
            elem = 2;
            break;
        case napi_int32_array:
        case napi_uint32_array:
        case napi_float32_array:
            elem = 4;
            break;
        case napi_float64_array:
        case napi_bigint64_array:
        case napi_biguint64_array:
            elem = 8;
            break;
        default:
            elem = 1;
            break;
        }
        *ptr = data;
        *len = count * elem;
        return true;
    }
    if (napi_is_dataview(env, v, &is) == napi_ok && is) {
        size_t n = 0, offset = 0;
        napi_value ab;
        if (napi_get_dataview_info(env, v, &n, &data, &ab, &offset) != napi_ok) {
            return false;
        }
        *ptr = data;
        *len = n;
        return true;
    }
    if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
        size_t n = 0;
        if (napi_get_arraybuffer_info(env, v, &data, &n) != napi_ok) {
            return false;
        }
        *ptr = data;
        *len = n;
        return true;
    }
    char message[112];
    snprintf(message, sizeof message, "%s must be a Buffer, a TypedArray or an ArrayBuffer", what);
    throw_type(env, message);
    return false;
}

/* A unix time in seconds (index.js has turned a Date into one). */
static inline bool
at_get(napi_env env, napi_value v, int64_t *out)
{
    double d = 0;
    if (napi_get_value_double(env, v, &d) != napi_ok) {
        throw_type(env, "at must be a Date or a number of unix seconds");
        return false;
    }
    if (!isfinite(d) || d < -9.2e18 || d > 9.2e18) {
        throw_range(env, "at must be a finite number of unix seconds");
        return false;
    }
    *out = (int64_t)floor(d);
    return true;
}

/* A count (usage, requested): a whole number >= 0 or a bigint >= 0. Values above UINT64_MAX read
 * as UINT64_MAX, which gives the same answer: no finite limit reaches either. */
static bool
count_get(napi_env env, napi_value v, uint64_t *out, const char *what)
{
    napi_valuetype type;
    napi_typeof(env, v, &type);
    char message[112];
    if (type == napi_number) {
        double d = 0;
        napi_get_value_double(env, v, &d);
        if (!(d >= 0) || d != floor(d)) {
            snprintf(message, sizeof message, "%s must be a whole number >= 0", what);
            return throw_range(env, message), false;
        }
        *out = d >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)d;
        return true;
    }
    if (type == napi_bigint) {
        int sign = 0;
        size_t words = 2;
        uint64_t w[2] = {0, 0};
        if (napi_get_value_bigint_words(env, v, &sign, &words, w) != napi_ok) {
            return false;
        }
        /* `words` is the number of words the bigint needs, possibly more than were copied. */
        bool above_u64 = words > 2 || (words == 2 && w[1] != 0);
        if (sign && (w[0] != 0 || above_u64)) {
            snprintf(message, sizeof message, "%s must be >= 0", what);
            return throw_range(env, message), false;
        }
        *out = above_u64 ? UINT64_MAX : w[0];
        return true;
    }
    snprintf(message, sizeof message, "%s must be a number or a bigint", what);
    return throw_type(env, message), false;
}

/* A duration in milliseconds (index.js converts seconds); undefined reads as 0 (the default). */
static bool
ms_get(napi_env env, napi_value v, uint64_t *out)
{
    napi_valuetype type;
    napi_typeof(env, v, &type);
    if (type == napi_undefined || type == napi_null) {
        *out = 0;
        return true;
    }
    double d = 0;
    if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || !isfinite(d)) {
        throw_range(env, "durations must be finite numbers >= 0");
        return false;
    }
    *out = (uint64_t)d;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Values
 */

static inline napi_value
make_bool(napi_env env, bool b)
{
    napi_value v;
    napi_get_boolean(env, b, &v);
    return v;
}

static inline napi_value
make_number(napi_env env, double d)
{
    napi_value v;
    napi_create_double(env, d, &v);
    return v;
}

static inline double
limit_number(uint64_t v)
{
    return v == ENTITLE_UNLIMITED ? INFINITY : (double)v;
}

static inline void
decision_store(double *slots, const entitle_decision *d)
{
    slots[0] = (double)d->feature_type;
    slots[1] = d->enabled ? 1.0 : 0.0;
    slots[2] = d->feature_type == ENTITLE_FEATURE_TYPE_LIMIT
                   ? (d->unlimited ? INFINITY : (double)d->value)
                   : NAN; /* no limit: index.js reads NaN as null */
    slots[3] = (double)d->reason;
    slots[4] = (double)d->version;
}

static napi_value
wrap_engine(napi_env env, entitle_engine *engine)
{
    shared_engine *s = malloc(sizeof *s);
    handle *h = malloc(sizeof *h);
    if (s == NULL || h == NULL) {
        free(s);
        free(h);
        entitle_engine_free(engine);
        napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
        return NULL;
    }
    s->engine = engine;
    atomic_init(&s->refs, 1);
    h->engine = engine;
    h->shared = s;
    h->watch = NULL;
    h->owners = 1;
    napi_value out;
    if (napi_create_external(env, h, handle_finalize, NULL, &out) != napi_ok) {
        handle_finalize(env, h, NULL);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * Setup and creation
 */

/* setup(makeError): called by index.js when it loads. */
static napi_value
js_setup(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    if (!args(env, info, 1, argv)) {
        return NULL;
    }
    addon_state *st = state_of(env);
    if (st == NULL) {
        return NULL;
    }
    napi_valuetype type;
    napi_typeof(env, argv[0], &type);
    if (type != napi_function) {
        return throw_type(env, "setup: makeError must be a function");
    }
    if (st->make_error != NULL) {
        napi_delete_reference(env, st->make_error);
    }
    napi_create_reference(env, argv[0], 1, &st->make_error);
    return NULL;
}

/* fromFile(path) */
static napi_value
js_from_file(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    char stack[STR_STACK];
    str_arg path;
    if (!args(env, info, 1, argv) || !str_get(env, argv[0], stack, &path, "path")) {
        return NULL;
    }
    entitle_engine *engine = NULL;
    entitle_result r = entitle_engine_from_file((const uint8_t *)path.ptr, path.len, &engine);
    str_done(&path);
    return r == ENTITLE_RESULT_OK ? wrap_engine(env, engine) : throw_result(env, r);
}

/* fromBytes(bytes) */
static napi_value
js_from_bytes(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    const uint8_t *ptr = NULL;
    size_t len = 0;
    if (!args(env, info, 1, argv) || !bytes_get(env, argv[0], &ptr, &len, "bytes")) {
        return NULL;
    }
    entitle_engine *engine = NULL;
    entitle_result r = entitle_engine_from_snapshot(ptr, len, &engine);
    return r == ENTITLE_RESULT_OK ? wrap_engine(env, engine) : throw_result(env, r);
}

/* fromCatalog(json): a string or bytes holding the catalog JSON. */
static napi_value
js_from_catalog(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    if (!args(env, info, 1, argv)) {
        return NULL;
    }
    napi_valuetype type;
    napi_typeof(env, argv[0], &type);
    entitle_engine *engine = NULL;
    entitle_result r;
    if (type == napi_string) {
        char stack[STR_STACK];
        str_arg json;
        if (!str_get(env, argv[0], stack, &json, "catalog")) {
            return NULL;
        }
        r = entitle_engine_from_catalog_json((const uint8_t *)json.ptr, json.len, &engine);
        str_done(&json);
    } else {
        const uint8_t *ptr = NULL;
        size_t len = 0;
        if (!bytes_get(env, argv[0], &ptr, &len, "catalog")) {
            return NULL;
        }
        r = entitle_engine_from_catalog_json(ptr, len, &engine);
    }
    return r == ENTITLE_RESULT_OK ? wrap_engine(env, engine) : throw_result(env, r);
}

/* An optional string of the sync config: undefined/null leaves it unset. */
static bool
opt_str_get(napi_env env, napi_value v, char *stack, str_arg *out, bool *set, const char *what)
{
    napi_valuetype type;
    napi_typeof(env, v, &type);
    *set = false;
    if (type == napi_undefined || type == napi_null) {
        return true;
    }
    if (!str_get(env, v, stack, out, what)) {
        return false;
    }
    *set = true;
    return true;
}

/* connect(url, token, cacheDir, pollMs, connectTimeoutMs, requestTimeoutMs, maxStalenessMs,
 *         longPollMs, maxBackoffMs, persistIntervalMs, maxArtifactBytes) */
static napi_value
js_connect(napi_env env, napi_callback_info info)
{
    napi_value argv[11];
    if (!args(env, info, 11, argv)) {
        return NULL;
    }
    char url_stack[STR_STACK], token_stack[STR_STACK], dir_stack[STR_STACK];
    str_arg url = {0}, token = {0}, dir = {0};
    bool has_token = false, has_dir = false;
    entitle_sync_config config;
    memset(&config, 0, sizeof config); /* fields added later default to 0 = their default */
    napi_value result = NULL;
    if (!str_get(env, argv[0], url_stack, &url, "url")) {
        return NULL;
    }
    if (!opt_str_get(env, argv[1], token_stack, &token, &has_token, "token") ||
        !opt_str_get(env, argv[2], dir_stack, &dir, &has_dir, "cacheDir") ||
        !ms_get(env, argv[3], &config.poll_interval_ms) ||
        !ms_get(env, argv[4], &config.connect_timeout_ms) ||
        !ms_get(env, argv[5], &config.request_timeout_ms) ||
        !ms_get(env, argv[6], &config.max_staleness_ms) ||
        !ms_get(env, argv[7], &config.long_poll_ms) ||
        !ms_get(env, argv[8], &config.max_backoff_ms) ||
        !ms_get(env, argv[9], &config.persist_interval_ms)) {
        goto done;
    }
    napi_valuetype max_type;
    napi_typeof(env, argv[10], &max_type);
    if (max_type != napi_undefined && max_type != napi_null &&
        !count_get(env, argv[10], &config.max_artifact_bytes, "maxArtifactBytes")) {
        goto done;
    }
    config.url = (const uint8_t *)url.ptr;
    config.url_len = url.len;
    if (has_token) {
        config.token = (const uint8_t *)token.ptr;
        config.token_len = token.len;
    }
    if (has_dir) {
        config.cache_dir = (const uint8_t *)dir.ptr;
        config.cache_dir_len = dir.len;
    }
    entitle_engine *engine = NULL;
    entitle_result r = entitle_engine_connect(&config, &engine);
    result = r == ENTITLE_RESULT_OK ? wrap_engine(env, engine) : throw_result(env, r);
done:
    str_done(&url);
    str_done(&token);
    str_done(&dir);
    return result;
}

/* close(h): idempotent. */
static napi_value
js_close(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    void *p = NULL;
    if (!args(env, info, 1, argv) || napi_get_value_external(env, argv[0], &p) != napi_ok) {
        return throw_type(env, "expected an engine handle");
    }
    handle_close(p);
    return NULL;
}

/* isClosed(h) */
static napi_value
js_is_closed(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    void *p = NULL;
    if (!args(env, info, 1, argv) || napi_get_value_external(env, argv[0], &p) != napi_ok) {
        return throw_type(env, "expected an engine handle");
    }
    return make_bool(env, ((handle *)p)->engine == NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Lookups (the hot path)
 */

/* The common prologue: engine, customer, feature. */
#define LOOKUP_PROLOGUE(n)                                                                        \
    napi_value argv[n];                                                                           \
    size_t argc = n;                                                                              \
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {                        \
        return NULL;                                                                              \
    }                                                                                             \
    entitle_engine *engine = engine_arg(env, argv[0], NULL);                                      \
    if (engine == NULL) {                                                                         \
        return NULL;                                                                              \
    }                                                                                             \
    char cbuf[STR_STACK], fbuf[STR_STACK];                                                        \
    str_arg customer, feature;                                                                    \
    if (!str_get(env, argv[1], cbuf, &customer, "customer")) {                                    \
        return NULL;                                                                              \
    }                                                                                             \
    if (!str_get(env, argv[2], fbuf, &feature, "feature")) {                                      \
        str_done(&customer);                                                                      \
        return NULL;                                                                              \
    }

#define LOOKUP_ARGS engine, (const uint8_t *)customer.ptr, customer.len, (const uint8_t *)feature.ptr, feature.len

#define LOOKUP_EPILOGUE()                                                                         \
    str_done(&customer);                                                                          \
    str_done(&feature)

/* enabled(h, customer, feature) */
static napi_value
js_enabled(napi_env env, napi_callback_info info)
{
    LOOKUP_PROLOGUE(3)
    bool b = entitle_engine_enabled(LOOKUP_ARGS);
    LOOKUP_EPILOGUE();
    return make_bool(env, b);
}

/* enabledAt(h, customer, feature, at) */
static napi_value
js_enabled_at(napi_env env, napi_callback_info info)
{
    LOOKUP_PROLOGUE(4)
    int64_t at = 0;
    if (!at_get(env, argv[3], &at)) {
        LOOKUP_EPILOGUE();
        return NULL;
    }
    bool b = entitle_engine_enabled_at(LOOKUP_ARGS, at);
    LOOKUP_EPILOGUE();
    return make_bool(env, b);
}

/* limit(h, customer, feature): a number, Infinity when unlimited. */
static napi_value
js_limit(napi_env env, napi_callback_info info)
{
    LOOKUP_PROLOGUE(3)
    uint64_t v = entitle_engine_limit(LOOKUP_ARGS);
    LOOKUP_EPILOGUE();
    return make_number(env, limit_number(v));
}

/* limitAt(h, customer, feature, at) */
static napi_value
js_limit_at(napi_env env, napi_callback_info info)
{
    LOOKUP_PROLOGUE(4)
    int64_t at = 0;
    if (!at_get(env, argv[3], &at)) {
        LOOKUP_EPILOGUE();
        return NULL;
    }
    uint64_t v = entitle_engine_limit_at(LOOKUP_ARGS, at);
    LOOKUP_EPILOGUE();
    return make_number(env, limit_number(v));
}

/* allows(h, customer, feature, usage, requested) */
static napi_value
js_allows(napi_env env, napi_callback_info info)
{
    LOOKUP_PROLOGUE(5)
    uint64_t usage = 0, requested = 0;
    if (!count_get(env, argv[3], &usage, "usage") ||
        !count_get(env, argv[4], &requested, "requested")) {
        LOOKUP_EPILOGUE();
        return NULL;
    }
    bool b = entitle_engine_allows(LOOKUP_ARGS, usage, requested);
    LOOKUP_EPILOGUE();
    return make_bool(env, b);
}

/* allowsAt(h, customer, feature, usage, requested, at) */
static napi_value
js_allows_at(napi_env env, napi_callback_info info)
{
    LOOKUP_PROLOGUE(6)
    uint64_t usage = 0, requested = 0;
    int64_t at = 0;
    if (!count_get(env, argv[3], &usage, "usage") ||
        !count_get(env, argv[4], &requested, "requested") || !at_get(env, argv[5], &at)) {
        LOOKUP_EPILOGUE();
        return NULL;
    }
    bool b = entitle_engine_allows_at(LOOKUP_ARGS, usage, requested, at);
    LOOKUP_EPILOGUE();
    return make_bool(env, b);
}

/* check(h, customer, feature[, at]): writes the decision into the scratch array's first slots
 * (index.js turns them into a frozen Decision). */
static napi_value
js_check(napi_env env, napi_callback_info info)
{
    LOOKUP_PROLOGUE(4)
    napi_valuetype type;
    napi_typeof(env, argv[3], &type);
    int64_t at = 0;
    bool has_at = type != napi_undefined;
    if (has_at && !at_get(env, argv[3], &at)) {
        LOOKUP_EPILOGUE();
        return NULL;
    }
    entitle_decision d;
    entitle_result r = has_at ? entitle_engine_check_at(LOOKUP_ARGS, at, &d)
                              : entitle_engine_check(LOOKUP_ARGS, &d);
    LOOKUP_EPILOGUE();
    if (r != ENTITLE_RESULT_OK) {
        return throw_result(env, r);
    }
    decision_store(state_of(env)->scratch_data, &d);
    return NULL;
}

/* entitlements(h, customer[, at]) -> [keys, Float64Array of DECISION_SLOTS per key] */
static napi_value
js_entitlements(napi_env env, napi_callback_info info)
{
    napi_value argv[3];
    if (!args(env, info, 3, argv)) {
        return NULL;
    }
    entitle_engine *engine = engine_arg(env, argv[0], NULL);
    if (engine == NULL) {
        return NULL;
    }
    char cbuf[STR_STACK];
    str_arg customer;
    if (!str_get(env, argv[1], cbuf, &customer, "customer")) {
        return NULL;
    }
    napi_valuetype type;
    napi_typeof(env, argv[2], &type);
    int64_t at = 0;
    bool has_at = type != napi_undefined;
    if (has_at && !at_get(env, argv[2], &at)) {
        str_done(&customer);
        return NULL;
    }
    entitle_entitlements *list = NULL;
    entitle_result r =
        has_at ? entitle_engine_entitlements_at(engine, (const uint8_t *)customer.ptr, customer.len,
                                                at, &list)
               : entitle_engine_entitlements(engine, (const uint8_t *)customer.ptr, customer.len,
                                             &list);
    str_done(&customer);
    if (r != ENTITLE_RESULT_OK) {
        return throw_result(env, r);
    }
    size_t n = entitle_entitlements_len(list);
    napi_value keys, values, ab, pair;
    double *data = NULL;
    napi_value result = NULL;
    if (napi_create_array_with_length(env, n, &keys) != napi_ok ||
        napi_create_arraybuffer(env, n * DECISION_SLOTS * sizeof(double), (void **)&data, &ab) !=
            napi_ok ||
        napi_create_typedarray(env, napi_float64_array, n * DECISION_SLOTS, ab, 0, &values) !=
            napi_ok) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        entitle_entitlement e;
        r = entitle_entitlements_get(list, i, &e);
        if (r != ENTITLE_RESULT_OK) {
            throw_result(env, r);
            goto done;
        }
        napi_value key;
        if (napi_create_string_utf8(env, (const char *)e.key, e.key_len, &key) != napi_ok ||
            napi_set_element(env, keys, (uint32_t)i, key) != napi_ok) {
            goto done;
        }
        decision_store(data + i * DECISION_SLOTS, &e.decision);
    }
    if (napi_create_array_with_length(env, 2, &pair) == napi_ok &&
        napi_set_element(env, pair, 0, keys) == napi_ok &&
        napi_set_element(env, pair, 1, values) == napi_ok) {
        result = pair;
    }
done:
    entitle_entitlements_free(list);
    return result;
}

/* version(h) */
static napi_value
js_version(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    if (!args(env, info, 1, argv)) {
        return NULL;
    }
    entitle_engine *engine = engine_arg(env, argv[0], NULL);
    if (engine == NULL) {
        return NULL;
    }
    return make_number(env, (double)entitle_engine_version(engine));
}

/* ---------------------------------------------------------------------------------------------
 * Updates
 */

/* replace(h, bytes) */
static napi_value
js_replace(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    const uint8_t *ptr = NULL;
    size_t len = 0;
    if (!args(env, info, 2, argv)) {
        return NULL;
    }
    entitle_engine *engine = engine_arg(env, argv[0], NULL);
    if (engine == NULL || !bytes_get(env, argv[1], &ptr, &len, "snapshot")) {
        return NULL;
    }
    entitle_result r = entitle_engine_replace_snapshot(engine, ptr, len);
    if (r != ENTITLE_RESULT_OK) {
        return throw_result(env, r);
    }
    return make_number(env, (double)entitle_engine_version(engine));
}

/* replaceFile(h, path) */
static napi_value
js_replace_file(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    char stack[STR_STACK];
    str_arg path;
    if (!args(env, info, 2, argv)) {
        return NULL;
    }
    entitle_engine *engine = engine_arg(env, argv[0], NULL);
    if (engine == NULL || !str_get(env, argv[1], stack, &path, "path")) {
        return NULL;
    }
    entitle_result r = entitle_engine_replace_file(engine, (const uint8_t *)path.ptr, path.len);
    str_done(&path);
    if (r != ENTITLE_RESULT_OK) {
        return throw_result(env, r);
    }
    return make_number(env, (double)entitle_engine_version(engine));
}

/* applyDelta(h, bytes) -> the new version */
static napi_value
js_apply_delta(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    const uint8_t *ptr = NULL;
    size_t len = 0;
    if (!args(env, info, 2, argv)) {
        return NULL;
    }
    entitle_engine *engine = engine_arg(env, argv[0], NULL);
    if (engine == NULL || !bytes_get(env, argv[1], &ptr, &len, "delta")) {
        return NULL;
    }
    uint64_t version = 0;
    entitle_result r = entitle_engine_apply_delta(engine, ptr, len, &version);
    if (r != ENTITLE_RESULT_OK) {
        return throw_result(env, r);
    }
    return make_number(env, (double)version);
}

/* ---------------------------------------------------------------------------------------------
 * Status
 */

static bool
set_prop(napi_env env, napi_value obj, const char *name, napi_value v)
{
    return napi_set_named_property(env, obj, name, v) == napi_ok;
}

static napi_value
make_null(napi_env env)
{
    napi_value v;
    napi_get_null(env, &v);
    return v;
}

/* One of the status texts as a string, or null when there is none. */
static napi_value
status_text(napi_env env, entitle_engine *engine, uint32_t which, size_t hint)
{
    char stack[512];
    size_t cap = hint + 64 > sizeof stack ? hint + 64 : sizeof stack;
    for (int attempt = 0; attempt < 8; attempt++) {
        char *buf = cap <= sizeof stack ? stack : malloc(cap);
        if (buf == NULL) {
            break;
        }
        size_t len = 0;
        entitle_result r = entitle_engine_status_text(engine, which, (uint8_t *)buf, cap, &len);
        napi_value v = NULL;
        if (r == ENTITLE_RESULT_OK) {
            if (len == 0) {
                v = make_null(env);
            } else {
                napi_create_string_utf8(env, buf, len, &v);
            }
        }
        if (buf != stack) {
            free(buf);
        }
        if (r == ENTITLE_RESULT_OK) {
            return v;
        }
        if (r != ENTITLE_RESULT_BUFFER_TOO_SMALL) {
            return throw_result(env, r);
        }
        cap *= 2; /* the text grew meanwhile */
    }
    return make_null(env);
}

/* status(h) -> a plain object (index.js freezes it) */
static napi_value
js_status(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    if (!args(env, info, 1, argv)) {
        return NULL;
    }
    entitle_engine *engine = engine_arg(env, argv[0], NULL);
    if (engine == NULL) {
        return NULL;
    }
    entitle_status s;
    entitle_result r = entitle_engine_status(engine, &s);
    if (r != ENTITLE_RESULT_OK) {
        return throw_result(env, r);
    }
    napi_value o, state;
    napi_create_object(env, &o);
    napi_create_string_utf8(env, entitle_sync_state_name(s.state), NAPI_AUTO_LENGTH, &state);
    napi_value last_error = status_text(env, engine, ENTITLE_STATUS_TEXT_LAST_ERROR,
                                        s.last_error_len);
    napi_value cache_error = status_text(env, engine, ENTITLE_STATUS_TEXT_CACHE_ERROR,
                                         s.cache_error_len);
    napi_value lineage = status_text(env, engine, ENTITLE_STATUS_TEXT_LINEAGE, 0);
    if (last_error == NULL || cache_error == NULL || lineage == NULL) {
        return NULL;
    }
    bool ok = set_prop(env, o, "state", state) &&
              set_prop(env, o, "syncing", make_bool(env, s.syncing)) &&
              set_prop(env, o, "version", make_number(env, (double)s.version)) &&
              set_prop(env, o, "lastSuccess",
                       s.has_last_success ? make_number(env, (double)s.last_success)
                                          : make_null(env)) &&
              set_prop(env, o, "dataAge",
                       s.has_data_age ? make_number(env, (double)s.data_age_ms / 1000.0)
                                      : make_null(env)) &&
              set_prop(env, o, "lastError", last_error) &&
              set_prop(env, o, "lastErrorAt",
                       s.has_last_error_at ? make_number(env, (double)s.last_error_at)
                                           : make_null(env)) &&
              set_prop(env, o, "edgeVersion",
                       s.has_edge_version ? make_number(env, (double)s.edge_version)
                                          : make_null(env)) &&
              set_prop(env, o, "syncs", make_number(env, (double)s.syncs)) &&
              set_prop(env, o, "failures", make_number(env, (double)s.failures)) &&
              set_prop(env, o, "consecutiveFailures",
                       make_number(env, (double)s.consecutive_failures)) &&
              set_prop(env, o, "updates", make_number(env, (double)s.updates)) &&
              set_prop(env, o, "deltasApplied", make_number(env, (double)s.deltas_applied)) &&
              set_prop(env, o, "snapshotsFetched",
                       make_number(env, (double)s.snapshots_fetched)) &&
              set_prop(env, o, "warmStart", make_bool(env, s.warm_start)) &&
              set_prop(env, o, "longPoll", make_bool(env, s.long_poll)) &&
              set_prop(env, o, "cacheError", cache_error) && set_prop(env, o, "lineage", lineage);
    return ok ? o : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * waitReady: the wait runs on a thread of its own and resolves the promise through a thread-safe
 * function; the JS thread never blocks. Not on the libuv pool: a pool thread stuck in a long wait
 * would delay other work, and process.exit() joins the pool (it would wait for the timeout).
 *
 * Ownership: the job belongs to the thread-safe function and is freed by its finalizer, which runs
 * on the JS thread after the waiting thread has released it (or when the environment is torn
 * down). A worker's teardown first runs the job's cleanup hook, which closes the engine to wake
 * the wait and joins the thread, so the thread never calls into a torn-down environment.
 */

typedef struct {
    pthread_t thread;
    bool joined;
    bool hooked; /* the environment cleanup hook is registered */
    napi_env env;
    napi_threadsafe_function tsfn;
    napi_deferred deferred;
    shared_engine *shared; /* a reference held until the wait ends */
    uint64_t timeout_ms;
    bool ready;
} wait_job;

static void *
wait_thread(void *data)
{
    wait_job *job = data;
    job->ready = entitle_engine_wait_ready(job->shared->engine, job->timeout_ms);
    shared_release(job->shared);
    napi_threadsafe_function tsfn = job->tsfn;
    /* After these two calls the job may be freed at any moment: do not touch it. */
    napi_call_threadsafe_function(tsfn, NULL, napi_tsfn_blocking);
    napi_release_threadsafe_function(tsfn, napi_tsfn_release);
    return NULL;
}

/* The environment is going away (a worker ends) while the wait runs. */
static void
wait_cleanup_hook(void *data)
{
    wait_job *job = data;
    job->hooked = false;
    if (!job->joined) {
        /* The thread still holds its reference, so the engine is alive; closing it wakes the
         * wait. The environment's engines are being released anyway. */
        entitle_engine_close(job->shared->engine);
        pthread_join(job->thread, NULL);
        job->joined = true;
    }
}

static void
wait_resolve(napi_env env, napi_value js_cb, void *context, void *data)
{
    (void)js_cb;
    (void)data;
    wait_job *job = context;
    if (env != NULL) {
        napi_resolve_deferred(env, job->deferred, make_bool(env, job->ready));
    }
}

static void
wait_finalize(napi_env env, void *data, void *hint)
{
    (void)hint;
    wait_job *job = data;
    if (job->hooked) {
        napi_remove_env_cleanup_hook(env, wait_cleanup_hook, job);
    }
    if (!job->joined) {
        pthread_join(job->thread, NULL); /* it has released the function: it is returning */
    }
    free(job);
}

/* waitReady(h, timeoutMs) -> Promise<boolean> */
static napi_value
js_wait_ready(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    if (!args(env, info, 2, argv)) {
        return NULL;
    }
    handle *h = NULL;
    if (engine_arg(env, argv[0], &h) == NULL) {
        return NULL;
    }
    uint64_t timeout = 0;
    if (!ms_get(env, argv[1], &timeout)) {
        return NULL;
    }
    napi_value promise, name;
    napi_deferred deferred;
    if (napi_create_promise(env, &deferred, &promise) != napi_ok) {
        return NULL;
    }
    /* Ready already (a local engine, a warm cache, a finished first sync), or no time to wait:
     * answer without a thread. */
    bool now = entitle_engine_wait_ready(h->engine, 0);
    if (timeout == 0 || now) {
        napi_resolve_deferred(env, deferred, make_bool(env, now));
        return promise;
    }
    wait_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        napi_value message, err;
        napi_create_string_utf8(env, "out of memory", NAPI_AUTO_LENGTH, &message);
        napi_create_error(env, NULL, message, &err);
        napi_reject_deferred(env, deferred, err);
        return promise;
    }
    job->env = env;
    job->deferred = deferred;
    job->shared = h->shared;
    job->timeout_ms = timeout;
    job->joined = true; /* until the thread exists */
    napi_create_string_utf8(env, "entitle.waitReady", NAPI_AUTO_LENGTH, &name);
    if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, job, wait_finalize, job,
                                        wait_resolve, &job->tsfn) != napi_ok) {
        free(job);
        return NULL;
    }
    /* Registered after the function's own hook, so it runs before it (hooks run last-in first). */
    if (napi_add_env_cleanup_hook(env, wait_cleanup_hook, job) == napi_ok) {
        job->hooked = true;
    }
    shared_acquire(job->shared);
    job->joined = false;
    if (pthread_create(&job->thread, NULL, wait_thread, job) != 0) {
        job->joined = true;
        shared_release(job->shared);
        napi_resolve_deferred(env, deferred, make_bool(env, false));
        napi_release_threadsafe_function(job->tsfn, napi_tsfn_abort);
        return promise;
    }
    return promise;
}

/* ---------------------------------------------------------------------------------------------
 * Feature handles and batches: a feature key resolved once (entitle_feature, a plain value) saves
 * the key's UTF-8 copy and its lookup on every call.
 *
 * A handle lives in a small external, which owns it, and has a number in the environment's
 * feature_table. Lookups through a handle take it by number, which index.js writes into the
 * scratch array's SELECT_SLOT just before the call, rather than as an argument: a number read
 * from memory costs a few instructions where napi_get_value_external costs some fifty, and the
 * call has one argument fewer. Nothing can run between that write and the read (the arguments are
 * plain values, the read comes first), and the number is checked against the table, so a wrong
 * one throws instead of reaching freed memory. Batches take the external itself.
 */

struct feature_handle {
    handle *owner; /* one of the handle's owners */
    entitle_feature feature;
    feature_table *table; /* one of the table's references */
    uint32_t id;          /* this handle's number in `table` */
};

/* The most feature handles an environment holds at once (numbers stay small integers). */
#define FEATURE_TABLE_MAX (1u << 30)

/* Gives `fh` a number in `t`; false when out of memory or numbers. */
static bool
feature_table_add(feature_table *t, feature_handle *fh)
{
    uint32_t id;
    if (t->free_len > 0) {
        id = t->free_ids[--t->free_len];
    } else {
        if (t->len == t->cap) {
            uint32_t cap = t->cap == 0 ? 16 : t->cap * 2;
            if (cap > FEATURE_TABLE_MAX) {
                return false;
            }
            feature_handle **slots = realloc(t->slots, cap * sizeof *slots);
            if (slots == NULL) {
                return false;
            }
            t->slots = slots;
            uint32_t *free_ids = realloc(t->free_ids, cap * sizeof *free_ids);
            if (free_ids == NULL) {
                return false; /* `slots` is larger and still valid; `cap` is unchanged */
            }
            t->free_ids = free_ids;
            t->cap = cap;
        }
        id = t->len++;
    }
    t->slots[id] = fh;
    fh->id = id;
    fh->table = t;
    t->refs++;
    return true;
}

static void
feature_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    feature_handle *fh = data;
    feature_table *t = fh->table;
    t->slots[fh->id] = NULL;
    t->free_ids[t->free_len++] = fh->id; /* at most `len` numbers are free, and len <= cap */
    feature_table_release(t);
    handle_release(fh->owner);
    free(fh);
}

/* featureResolve(h, key) -> [external, number]: the external owns the feature handle, the
 * number selects it for lookups. */
static napi_value
js_feature_resolve(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    void *data = NULL;
    size_t argc = 2;
    if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok) {
        return NULL;
    }
    addon_state *st = data;
    handle *h = NULL;
    entitle_engine *engine = engine_arg(env, argv[0], &h);
    char stack[STR_STACK];
    str_arg key;
    if (engine == NULL || !str_get(env, argv[1], stack, &key, "feature")) {
        return NULL;
    }
    feature_handle *fh = malloc(sizeof *fh);
    if (fh == NULL) {
        str_done(&key);
        napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
        return NULL;
    }
    entitle_result r = entitle_engine_feature(engine, (const uint8_t *)key.ptr, key.len, &fh->feature);
    str_done(&key);
    if (r != ENTITLE_RESULT_OK) {
        free(fh);
        return throw_result(env, r);
    }
    if (!feature_table_add(st->features, fh)) {
        free(fh);
        napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
        return NULL;
    }
    fh->owner = h;
    h->owners++;
    napi_value ext, id, out;
    if (napi_create_external(env, fh, feature_finalize, NULL, &ext) != napi_ok) {
        feature_finalize(env, fh, NULL);
        return NULL;
    }
    if (napi_create_uint32(env, fh->id, &id) != napi_ok ||
        napi_create_array_with_length(env, 2, &out) != napi_ok ||
        napi_set_element(env, out, 0, ext) != napi_ok || napi_set_element(env, out, 1, id) != napi_ok) {
        return NULL; /* the external's finalizer releases the handle */
    }
    return out;
}

/* The feature handle in `v` (an external from featureResolve); throws TypeError when it is none. */
static inline feature_handle *
feature_get(napi_env env, napi_value v)
{
    void *p = NULL;
    if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
        throw_type(env, "expected a Feature");
        return NULL;
    }
    return p;
}

/* The feature handle whose number index.js wrote into SELECT_SLOT; throws TypeError when the
 * number selects none. */
static inline feature_handle *
feature_selected(napi_env env, const addon_state *st)
{
    double n = st->scratch_data[SELECT_SLOT];
    const feature_table *t = st->features;
    if (n >= 0 && n < (double)t->len) {
        feature_handle *fh = t->slots[(uint32_t)n];
        if (fh != NULL) {
            return fh;
        }
    }
    throw_type(env, "expected a Feature");
    return NULL;
}

/* The common prologue: the selected feature handle (and through it the engine), then the
 * arguments, customer first. */
#define FEATURE_PROLOGUE(n)                                                                       \
    napi_value argv[n];                                                                           \
    size_t argc = n;                                                                              \
    void *data = NULL;                                                                            \
    if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok) {                       \
        return NULL;                                                                              \
    }                                                                                             \
    const addon_state *st = data;                                                                 \
    feature_handle *fh = feature_selected(env, st);                                               \
    if (fh == NULL) {                                                                             \
        return NULL;                                                                              \
    }                                                                                             \
    entitle_engine *engine = fh->owner->engine;                                                   \
    if (engine == NULL) {                                                                         \
        return throw_closed(env);                                                                 \
    }                                                                                             \
    char cbuf[STR_STACK];                                                                         \
    str_arg customer;                                                                             \
    if (!str_get(env, argv[0], cbuf, &customer, "customer")) {                                    \
        return NULL;                                                                              \
    }

#define FEATURE_ARGS engine, fh->feature, (const uint8_t *)customer.ptr, customer.len

/* The boolean answers of the feature lookups: the customer argument for true, nothing (undefined)
 * for false, which index.js compares with undefined. This saves napi_get_boolean, a call into
 * Node that costs more than that comparison. */
#define FEATURE_BOOL(b) ((b) ? argv[0] : NULL)

/* featureEnabled(customer) -> FEATURE_BOOL */
static napi_value
js_feature_enabled(napi_env env, napi_callback_info info)
{
    FEATURE_PROLOGUE(1)
    bool b = entitle_engine_feature_enabled(FEATURE_ARGS);
    str_done(&customer);
    return FEATURE_BOOL(b);
}

/* featureEnabledAt(customer, at) -> FEATURE_BOOL */
static napi_value
js_feature_enabled_at(napi_env env, napi_callback_info info)
{
    FEATURE_PROLOGUE(2)
    int64_t at = 0;
    if (!at_get(env, argv[1], &at)) {
        str_done(&customer);
        return NULL;
    }
    bool b = entitle_engine_feature_enabled_at(FEATURE_ARGS, at);
    str_done(&customer);
    return FEATURE_BOOL(b);
}

/* featureLimit(customer) */
static napi_value
js_feature_limit(napi_env env, napi_callback_info info)
{
    FEATURE_PROLOGUE(1)
    uint64_t v = entitle_engine_feature_limit(FEATURE_ARGS);
    str_done(&customer);
    return make_number(env, limit_number(v));
}

/* featureLimitAt(customer, at) */
static napi_value
js_feature_limit_at(napi_env env, napi_callback_info info)
{
    FEATURE_PROLOGUE(2)
    int64_t at = 0;
    if (!at_get(env, argv[1], &at)) {
        str_done(&customer);
        return NULL;
    }
    uint64_t v = entitle_engine_feature_limit_at(FEATURE_ARGS, at);
    str_done(&customer);
    return make_number(env, limit_number(v));
}

/* featureAllows(customer, usage, requested) -> FEATURE_BOOL */
static napi_value
js_feature_allows(napi_env env, napi_callback_info info)
{
    FEATURE_PROLOGUE(3)
    uint64_t usage = 0, requested = 0;
    if (!count_get(env, argv[1], &usage, "usage") ||
        !count_get(env, argv[2], &requested, "requested")) {
        str_done(&customer);
        return NULL;
    }
    bool b = entitle_engine_feature_allows(FEATURE_ARGS, usage, requested);
    str_done(&customer);
    return FEATURE_BOOL(b);
}

/* featureAllowsAt(customer, usage, requested, at) -> FEATURE_BOOL */
static napi_value
js_feature_allows_at(napi_env env, napi_callback_info info)
{
    FEATURE_PROLOGUE(4)
    uint64_t usage = 0, requested = 0;
    int64_t at = 0;
    if (!count_get(env, argv[1], &usage, "usage") ||
        !count_get(env, argv[2], &requested, "requested") || !at_get(env, argv[3], &at)) {
        str_done(&customer);
        return NULL;
    }
    bool b = entitle_engine_feature_allows_at(FEATURE_ARGS, usage, requested, at);
    str_done(&customer);
    return FEATURE_BOOL(b);
}

/* featureCheck(customer): the decision into the scratch array, as check() does. */
static napi_value
js_feature_check(napi_env env, napi_callback_info info)
{
    FEATURE_PROLOGUE(1)
    entitle_decision d;
    entitle_result r = entitle_engine_feature_check(FEATURE_ARGS, &d);
    str_done(&customer);
    if (r != ENTITLE_RESULT_OK) {
        return throw_result(env, r);
    }
    decision_store(st->scratch_data, &d);
    return NULL;
}

/* featureCheckAt(customer, at) */
static napi_value
js_feature_check_at(napi_env env, napi_callback_info info)
{
    FEATURE_PROLOGUE(2)
    int64_t at = 0;
    if (!at_get(env, argv[1], &at)) {
        str_done(&customer);
        return NULL;
    }
    entitle_decision d;
    entitle_result r = entitle_engine_feature_check_at(FEATURE_ARGS, at, &d);
    str_done(&customer);
    if (r != ENTITLE_RESULT_OK) {
        return throw_result(env, r);
    }
    decision_store(st->scratch_data, &d);
    return NULL;
}

/* A new Float64Array of DECISION_SLOTS numbers per decision, filled from `ds`. */
static napi_value
decisions_array(napi_env env, const entitle_decision *ds, size_t n)
{
    napi_value ab, out;
    double *data = NULL;
    if (napi_create_arraybuffer(env, n * DECISION_SLOTS * sizeof(double), (void **)&data, &ab) !=
            napi_ok ||
        napi_create_typedarray(env, napi_float64_array, n * DECISION_SLOTS, ab, 0, &out) !=
            napi_ok) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        decision_store(data + i * DECISION_SLOTS, &ds[i]);
    }
    return out;
}

static bool
array_arg(napi_env env, napi_value v, uint32_t *len, const char *what)
{
    bool is = false;
    if (napi_is_array(env, v, &is) != napi_ok || !is) {
        char message[96];
        snprintf(message, sizeof message, "%s must be an array", what);
        throw_type(env, message);
        return false;
    }
    return napi_get_array_length(env, v, len) == napi_ok;
}

/* Splits `ids` (the UTF-8 of the joined customer ids) into `count` ids whose lengths in UTF-16
 * code units are `units[i]`, writing each id's end offset into `ends`. UTF-8 sequences of 1-3
 * bytes are one code unit and 4-byte ones two (a surrogate pair). False when the lengths do not
 * fit the bytes, or a pair straddles two ids (lone surrogates at an id's edges). */
static bool
split_ids(const uint8_t *ids, size_t len, const uint32_t *units, size_t count, size_t *ends)
{
    size_t pos = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t left = units[i];
        while (left > 0) {
            if (pos >= len) {
                return false;
            }
            uint8_t b = ids[pos];
            size_t bytes = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
            uint64_t taken = bytes == 4 ? 2 : 1;
            if (taken > left || pos + bytes > len) {
                return false;
            }
            left -= taken;
            pos += bytes;
        }
        ends[i] = pos;
    }
    return pos == len;
}

/* checkMany(f, joinedIds, lengths[, at]) -> Float64Array: one feature for many customers in
 * one call. index.js passes the ids joined into one string and each id's length (UTF-16 code
 * units) in a Uint32Array: one UTF-8 copy for the whole batch instead of a property read and a
 * copy per id. */
static napi_value
js_check_many(napi_env env, napi_callback_info info)
{
    napi_value argv[4];
    if (!args(env, info, 4, argv)) {
        return NULL;
    }
    feature_handle *fh = feature_get(env, argv[0]);
    if (fh == NULL) {
        return NULL;
    }
    entitle_engine *engine = fh->owner->engine;
    if (engine == NULL) {
        return throw_closed(env);
    }
    napi_typedarray_type ta;
    size_t count = 0;
    void *units = NULL;
    bool is = false;
    napi_is_typedarray(env, argv[2], &is);
    if (!is || napi_get_typedarray_info(env, argv[2], &ta, &count, &units, NULL, NULL) != napi_ok ||
        ta != napi_uint32_array) {
        return throw_type(env, "lengths must be a Uint32Array");
    }
    napi_valuetype type;
    napi_typeof(env, argv[3], &type);
    int64_t at = 0;
    if (type != napi_undefined && !at_get(env, argv[3], &at)) {
        return NULL;
    }
    char stack[STR_STACK];
    str_arg ids;
    if (!str_get(env, argv[1], stack, &ids, "customers")) {
        return NULL;
    }
    size_t *ends = malloc((count + 1) * sizeof *ends);
    entitle_decision *out = malloc((count + 1) * sizeof *out);
    napi_value result = NULL;
    if (ends == NULL || out == NULL) {
        napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
        goto done;
    }
    if (!split_ids((const uint8_t *)ids.ptr, ids.len, units, count, ends)) {
        throw_range(env, "customer ids with unpaired surrogates at their edges cannot be batched");
        goto done;
    }
    entitle_result r =
        type == napi_undefined
            ? entitle_engine_check_customers(engine, fh->feature, (const uint8_t *)ids.ptr, ids.len,
                                             ends, count, out)
            : entitle_engine_check_customers_at(engine, fh->feature, (const uint8_t *)ids.ptr,
                                                ids.len, ends, count, at, out);
    if (r != ENTITLE_RESULT_OK) {
        throw_result(env, r);
        goto done;
    }
    result = decisions_array(env, out, count);
done:
    str_done(&ids);
    free(ends);
    free(out);
    return result;
}

/* checkFeatures(h, customer, featureHandles[, at]) -> Float64Array: many features, one call. */
static napi_value
js_check_features(napi_env env, napi_callback_info info)
{
    napi_value argv[4];
    if (!args(env, info, 4, argv)) {
        return NULL;
    }
    entitle_engine *engine = engine_arg(env, argv[0], NULL);
    uint32_t n = 0;
    if (engine == NULL || !array_arg(env, argv[2], &n, "features")) {
        return NULL;
    }
    napi_valuetype type;
    napi_typeof(env, argv[3], &type);
    int64_t at = 0;
    if (type != napi_undefined && !at_get(env, argv[3], &at)) {
        return NULL;
    }
    entitle_feature *features = malloc(((size_t)n + 1) * sizeof *features);
    entitle_decision *out = malloc(((size_t)n + 1) * sizeof *out);
    napi_value result = NULL;
    char cbuf[STR_STACK];
    str_arg customer = {0};
    if (features == NULL || out == NULL) {
        napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        napi_value item;
        feature_handle *fh;
        if (napi_get_element(env, argv[2], i, &item) != napi_ok ||
            (fh = feature_get(env, item)) == NULL) {
            goto done;
        }
        features[i] = fh->feature;
    }
    if (!str_get(env, argv[1], cbuf, &customer, "customer")) {
        goto done;
    }
    entitle_result r =
        type == napi_undefined
            ? entitle_engine_check_features(engine, (const uint8_t *)customer.ptr, customer.len,
                                            features, n, out)
            : entitle_engine_check_features_at(engine, (const uint8_t *)customer.ptr, customer.len,
                                               features, n, at, out);
    if (r != ENTITLE_RESULT_OK) {
        throw_result(env, r);
        goto done;
    }
    result = decisions_array(env, out, n);
done:
    str_done(&customer);
    free(features);
    free(out);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * The change event: one thread per watched engine waits in entitle_engine_next_event and hands
 * each event to the JS thread through a thread-safe function. The function is unref'd, so a
 * watched engine never holds the process open.
 *
 * Ownership: the watcher holds a reference to the engine until its finalizer (JS thread, after
 * the thread has released the function, or at environment teardown) has joined the thread, so
 * the engine is never freed under a waiting call. The thread ends when the engine is closed
 * (the wait returns CLOSED at once) or when unwatch() sets `stop` (seen within WATCH_SLICE_MS).
 * At a worker's teardown the watcher's cleanup hook closes the engine, which wakes the wait, and
 * joins the thread before the environment goes. The handle and its watcher point at each other
 * until either lets go (unwatch, close, the handle's finalizer, the watcher's finalizer), all on
 * the JS thread, so neither is used after it is freed.
 */

#define WATCH_SLICE_MS 500
#define EVENT_MESSAGE_CAP 1024

struct watcher {
    pthread_t thread;
    atomic_bool stop;
    handle *owner; /* the handle pointing here, until it lets go (JS thread only) */
    bool joined;
    bool hooked;
    napi_threadsafe_function tsfn;
    shared_engine *shared;
    uint64_t after_seq;
};

typedef struct {
    entitle_event event;
    size_t message_len;
    char message[];
} event_payload;

static void *
watch_thread(void *data)
{
    watcher *w = data;
    uint8_t message[EVENT_MESSAGE_CAP];
    while (!atomic_load_explicit(&w->stop, memory_order_acquire)) {
        entitle_event ev;
        size_t len = 0;
        entitle_result r = entitle_engine_next_event(w->shared->engine, w->after_seq, WATCH_SLICE_MS,
                                                     &ev, message, sizeof message, &len);
        if (r == ENTITLE_RESULT_TIMEOUT) {
            continue;
        }
        if (r != ENTITLE_RESULT_OK) {
            break; /* CLOSED: the engine is closed and every event was seen */
        }
        w->after_seq = ev.seq;
        event_payload *p = malloc(sizeof *p + len);
        if (p == NULL) {
            continue;
        }
        p->event = ev;
        p->message_len = len;
        memcpy(p->message, message, len);
        if (napi_call_threadsafe_function(w->tsfn, p, napi_tsfn_nonblocking) != napi_ok) {
            free(p); /* the environment is going away */
            break;
        }
    }
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_release);
    return NULL;
}

/* Runs on the JS thread: callback(kind, seq, oldVersion, newVersion, atMs, message). */
static void
watch_deliver(napi_env env, napi_value js_cb, void *context, void *data)
{
    (void)context;
    event_payload *p = data;
    if (env != NULL && js_cb != NULL) {
        napi_value argv[6], undef, ignored;
        napi_create_uint32(env, p->event.kind, &argv[0]);
        napi_create_double(env, (double)p->event.seq, &argv[1]);
        napi_create_double(env, (double)p->event.old_version, &argv[2]);
        napi_create_double(env, (double)p->event.new_version, &argv[3]);
        napi_create_double(env, (double)p->event.at_ms, &argv[4]);
        napi_create_string_utf8(env, p->message, p->message_len, &argv[5]);
        napi_get_undefined(env, &undef);
        /* A listener that throws surfaces as an uncaught exception, as with any emitter. */
        napi_call_function(env, undef, js_cb, 6, argv, &ignored);
    }
    free(p);
}

static void
watch_cleanup_hook(void *data)
{
    watcher *w = data;
    w->hooked = false;
    if (!w->joined) {
        atomic_store_explicit(&w->stop, true, memory_order_release);
        entitle_engine_close(w->shared->engine); /* wakes the wait at once */
        pthread_join(w->thread, NULL);
        w->joined = true;
    }
}

static void
watch_finalize(napi_env env, void *data, void *hint)
{
    (void)hint;
    watcher *w = data;
    if (w->hooked) {
        napi_remove_env_cleanup_hook(env, watch_cleanup_hook, w);
    }
    if (!w->joined) {
        pthread_join(w->thread, NULL); /* it has released the function: it is returning */
    }
    if (w->owner != NULL) {
        w->owner->watch = NULL; /* the thread ended by itself (the engine was closed) */
    }
    shared_release(w->shared);
    free(w);
}

/* Stops the handle's watcher, if any; the thread ends by itself within WATCH_SLICE_MS. */
static void
handle_unwatch(handle *h)
{
    if (h->watch != NULL) {
        atomic_store_explicit(&h->watch->stop, true, memory_order_release);
        h->watch->owner = NULL;
        h->watch = NULL;
    }
}

/* watch(h, callback): starts delivering the engine's events from now on. Idempotent. */
static napi_value
js_watch(napi_env env, napi_callback_info info)
{
    napi_value argv[2], name;
    if (!args(env, info, 2, argv)) {
        return NULL;
    }
    handle *h = NULL;
    if (engine_arg(env, argv[0], &h) == NULL) {
        return NULL;
    }
    napi_valuetype type;
    napi_typeof(env, argv[1], &type);
    if (type != napi_function) {
        return throw_type(env, "callback must be a function");
    }
    if (h->watch != NULL) {
        return NULL;
    }
    watcher *w = calloc(1, sizeof *w);
    if (w == NULL) {
        napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
        return NULL;
    }
    /* Events from before the first listener are not replayed: start after the latest one. */
    for (;;) {
        entitle_event ev;
        if (entitle_engine_next_event(h->engine, w->after_seq, 0, &ev, NULL, 0, NULL) !=
            ENTITLE_RESULT_OK) {
            break;
        }
        w->after_seq = ev.seq;
    }
    atomic_init(&w->stop, false);
    w->shared = h->shared;
    w->joined = true; /* until the thread exists */
    napi_create_string_utf8(env, "entitle.events", NAPI_AUTO_LENGTH, &name);
    if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, w, watch_finalize, w,
                                        watch_deliver, &w->tsfn) != napi_ok) {
        free(w);
        return NULL;
    }
    shared_acquire(w->shared); /* released by watch_finalize */
    napi_unref_threadsafe_function(env, w->tsfn);
    /* Registered after the function's own hook, so it runs before it (hooks run last-in first). */
    if (napi_add_env_cleanup_hook(env, watch_cleanup_hook, w) == napi_ok) {
        w->hooked = true;
    }
    w->joined = false;
    if (pthread_create(&w->thread, NULL, watch_thread, w) != 0) {
        w->joined = true;
        napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
        napi_throw_error(env, "ERR_THREAD", "entitle: cannot start the event thread");
        return NULL;
    }
    h->watch = w;
    w->owner = h;
    return NULL;
}

/* unwatch(h): stops delivering events. Idempotent. */
static napi_value
js_unwatch(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    void *p = NULL;
    if (!args(env, info, 1, argv) || napi_get_value_external(env, argv[0], &p) != napi_ok) {
        return throw_type(env, "expected an engine handle");
    }
    handle_unwatch(p);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Library facts
 */

static napi_value
js_library_version(napi_env env, napi_callback_info info)
{
    (void)info;
    napi_value v;
    napi_create_string_utf8(env, entitle_version(), NAPI_AUTO_LENGTH, &v);
    return v;
}

/* resultName(code): the C name of a result code's text, for index.js's code table checks. */
static napi_value
js_result_message(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    uint32_t code = 0;
    if (!args(env, info, 1, argv) || napi_get_value_uint32(env, argv[0], &code) != napi_ok) {
        return throw_type(env, "code must be a number");
    }
    napi_value v;
    napi_create_string_utf8(env, entitle_result_message(code), NAPI_AUTO_LENGTH, &v);
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * Module
 */

NAPI_MODULE_INIT()
{
    addon_state *st = calloc(1, sizeof *st);
    feature_table *features = calloc(1, sizeof *features);
    if (st == NULL || features == NULL) {
        free(st);
        free(features);
        napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
        return NULL;
    }
    features->refs = 1;
    st->features = features;
    if (napi_set_instance_data(env, st, state_finalize, NULL) != napi_ok) {
        free(features);
        free(st);
        napi_throw_error(env, "ERR_MEMORY_ALLOCATION_FAILED", "out of memory");
        return NULL;
    }
    static const struct {
        const char *name;
        napi_callback fn;
    } fns[] = {
        {"setup", js_setup},
        {"fromFile", js_from_file},
        {"fromBytes", js_from_bytes},
        {"fromCatalog", js_from_catalog},
        {"connect", js_connect},
        {"close", js_close},
        {"isClosed", js_is_closed},
        {"enabled", js_enabled},
        {"enabledAt", js_enabled_at},
        {"limit", js_limit},
        {"limitAt", js_limit_at},
        {"allows", js_allows},
        {"allowsAt", js_allows_at},
        {"check", js_check},
        {"entitlements", js_entitlements},
        {"version", js_version},
        {"replace", js_replace},
        {"replaceFile", js_replace_file},
        {"applyDelta", js_apply_delta},
        {"status", js_status},
        {"waitReady", js_wait_ready},
        {"watch", js_watch},
        {"unwatch", js_unwatch},
        {"featureResolve", js_feature_resolve},
        {"featureEnabled", js_feature_enabled},
        {"featureEnabledAt", js_feature_enabled_at},
        {"featureLimit", js_feature_limit},
        {"featureLimitAt", js_feature_limit_at},
        {"featureAllows", js_feature_allows},
        {"featureAllowsAt", js_feature_allows_at},
        {"featureCheck", js_feature_check},
        {"featureCheckAt", js_feature_check_at},
        {"checkMany", js_check_many},
        {"checkFeatures", js_check_features},
        {"libraryVersion", js_library_version},
        {"resultMessage", js_result_message},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        napi_value f;
        if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, st, &f) !=
                napi_ok ||
            napi_set_named_property(env, exports, fns[i].name, f) != napi_ok) {
            return NULL;
        }
    }
    /* The scratch array belongs to this instance of the addon, so that every copy of index.js
     * that uses these functions reads and writes the same one. */
    napi_value ab, scratch, n;
    if (napi_create_arraybuffer(env, SCRATCH_LENGTH * sizeof(double), (void **)&st->scratch_data,
                                &ab) != napi_ok ||
        napi_create_typedarray(env, napi_float64_array, SCRATCH_LENGTH, ab, 0, &scratch) !=
            napi_ok ||
        napi_create_reference(env, scratch, 1, &st->scratch) != napi_ok ||
        napi_set_named_property(env, exports, "scratch", scratch) != napi_ok) {
        return NULL;
    }
    napi_create_uint32(env, SELECT_SLOT, &n);
    napi_set_named_property(env, exports, "selectSlot", n);
    return exports;
}
