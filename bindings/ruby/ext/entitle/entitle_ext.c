/*
 * entitle/entitle_ext: the Ruby C extension over the entitle C ABI (entitle.h), linked statically
 * against libentitle.a.
 *
 * The Ruby surface lives in lib/entitle.rb and lib/entitle/; this file holds what must be fast or
 * must own native memory:
 *
 *  - `Entitle::Engine`, a typed data object holding one `entitle_engine *`. The lookups
 *    (enabled?, limit, allows?, check) keep the GVL (releasing it costs more than a lookup), pass a
 *    String's bytes without copying them and cross into the library once.
 *  - `Entitle::Decision`, a frozen, Ractor-shareable copy of an `entitle_decision`; its Ruby
 *    values are made when they are read.
 *
 * Lifetime: every call that holds the GVL may use `d->engine` freely, because close and the
 * finalizer also hold it. Calls that release the GVL (loading, updating, waiting, closing) count
 * themselves in `d->busy`; a close during such a call hands the engine to `d->retired`, and the
 * last busy call frees it, so an engine is never freed under a running call. An engine object
 * cannot be collected while one of its methods runs (the method's frame references it).
 *
 * Forking: every live engine is in a registry (a list under a mutex, since Ractors run in
 * parallel). lib/entitle/fork.rb prepends a module to Process._fork that calls
 * Entitle::Engine.__after_fork in the child: it restarts each syncing engine's thread
 * (entitle_engine_after_fork) and forgets calls that were running on threads the child does not
 * have. The registry is weak: an engine leaves it when it is closed or collected.
 *
 * Ractors: the extension keeps no mutable Ruby state (its globals are set once at load and are
 * shareable: classes, static symbols, Float::INFINITY), and the registry has its own lock, so it is
 * marked Ractor-safe. An Engine belongs to the Ractor that made it; a Decision is frozen and
 * shareable.
 */
#include <ruby.h>
#include <ruby/encoding.h>
#include <ruby/thread.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "entitle.h"

/* The gem raises ENTITLE_RESULT_CLOSED (as Entitle::ClosedError) for calls on an engine closed
 * from Ruby too. */
#define RESULT_CLOSED ((uint32_t)ENTITLE_RESULT_CLOSED)

/* Waits are done in slices of this many milliseconds, so that an interrupt (Ctrl-C, Thread#raise,
 * Timeout) is seen within one slice even where no unblocking function can reach the library. */
#define WAIT_SLICE_MS 50

static VALUE mEntitle;
static VALUE cEngine;
static VALUE cDecision;
static VALUE cFeature;
static VALUE eError;
static VALUE eInvalidArgument;
static VALUE ePanic;
static VALUE eFile;
static VALUE eCatalog;
static VALUE eFormat;
static VALUE eDelta;
static VALUE eConfig;
static VALUE eTimeout;
static VALUE eClosed;
static VALUE float_infinity;

#define N_REASONS 5
static VALUE reason_syms[N_REASONS];
static VALUE sym_flag, sym_limit;
static VALUE sym_feature_type, sym_enabled, sym_limit_key, sym_reason, sym_version;
static VALUE sym_starting, sym_ready, sym_stale, sym_failed, sym_unknown;
static ID id_at, id_requested, id_code;
/* Encoding indices whose bytes are passed as they are (read once: the lookups compare them). */
static int enc_utf8, enc_usascii, enc_binary;

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* The exception class for a result code: chosen from the code alone, never from the call. */
static VALUE
error_class(uint32_t code)
{
    switch (code) {
    case ENTITLE_RESULT_NULL_PARAMETER:
    case ENTITLE_RESULT_INVALID_UTF8:
    case ENTITLE_RESULT_INVALID_PARAMETER:
        return eInvalidArgument;
    case ENTITLE_RESULT_PANIC:
        return ePanic;
    case ENTITLE_RESULT_IO:
        return eFile;
    case ENTITLE_RESULT_INVALID_CATALOG:
        return eCatalog;
    case ENTITLE_RESULT_BAD_MAGIC:
    case ENTITLE_RESULT_UNSUPPORTED_VERSION:
    case ENTITLE_RESULT_CORRUPT:
    case ENTITLE_RESULT_TOO_LARGE:
        return eFormat;
    case ENTITLE_RESULT_WRONG_BASE:
    case ENTITLE_RESULT_FEATURE_MISMATCH:
        return eDelta;
    case ENTITLE_RESULT_INVALID_CONFIG:
        return eConfig;
    case ENTITLE_RESULT_TIMEOUT:
        return eTimeout;
    case ENTITLE_RESULT_CLOSED:
        return eClosed;
    default:
        return eError;
    }
}

static NORETURN(void raise_code(uint32_t code, VALUE message));

static void
raise_code(uint32_t code, VALUE message)
{
    VALUE exc = rb_exc_new_str(error_class(code), message);
    rb_ivar_set(exc, id_code, UINT2NUM(code));
    rb_exc_raise(exc);
}

/* Raises the exception for `result` with the calling thread's detail from the library (recorded
 * by the call that failed, on this same thread, just before). */
/* The exception message: the library's detail (UTF-8, scrubbed) or, without one, the result's
 * generic message. */
static VALUE
result_message(entitle_result result, const uint8_t *detail, size_t len)
{
    if (len == 0) {
        return rb_utf8_str_new_cstr(entitle_result_message((uint32_t)result));
    }
    VALUE buf = rb_utf8_str_new((const char *)detail, (long)len);
    VALUE scrubbed = rb_str_scrub(buf, Qnil);
    return NIL_P(scrubbed) ? buf : scrubbed;
}

static NORETURN(void raise_result(entitle_result result));

static void
raise_result(entitle_result result)
{
    size_t len = entitle_last_error_len();
    VALUE buf = Qnil;
    size_t written = 0;
    if (len > 0) {
        buf = rb_str_buf_new((long)len);
        if (entitle_last_error_message((uint8_t *)RSTRING_PTR(buf), len, &written) !=
            ENTITLE_RESULT_OK) {
            written = 0;
        }
    }
    VALUE message = result_message(result, NIL_P(buf) ? NULL : (const uint8_t *)RSTRING_PTR(buf),
                                   written);
    RB_GC_GUARD(buf);
    raise_code((uint32_t)result, message);
}

/* The library's detail for a failure of a call made without the GVL, copied inside that call: the
 * detail belongs to the native thread, and Ruby code that runs before the GVL comes back (a
 * signal trap, say) can fail a call of its own and replace it. Longer details are cut at a
 * character boundary. */
#define DETAIL_CAP 4096

typedef struct {
    size_t len; /* 0: none */
    uint8_t text[DETAIL_CAP];
} error_detail;

/* Copies the calling thread's detail into `out`; called without the GVL, right after a failure. */
static void
detail_capture(error_detail *out)
{
    out->len = 0;
    size_t len = entitle_last_error_len();
    if (len == 0) {
        return;
    }
    size_t written = 0;
    if (len <= DETAIL_CAP) {
        if (entitle_last_error_message(out->text, DETAIL_CAP, &written) == ENTITLE_RESULT_OK) {
            out->len = written;
        }
        return;
    }
    uint8_t *whole = malloc(len);
    if (whole == NULL) {
        return;
    }
    if (entitle_last_error_message(whole, len, &written) == ENTITLE_RESULT_OK) {
        size_t cut = written < DETAIL_CAP ? written : DETAIL_CAP;
        if (cut < written) {
            while (cut > 0 && (whole[cut] & 0xC0) == 0x80) {
                cut--; /* back to the start of the character that does not fit */
            }
        }
        memcpy(out->text, whole, cut);
        out->len = cut;
    }
    free(whole);
}

/* raise_result for a call made without the GVL, with the detail it captured. */
static NORETURN(void raise_captured(entitle_result result, const error_detail *detail));

static void
raise_captured(entitle_result result, const error_detail *detail)
{
    raise_code((uint32_t)result, result_message(result, detail->text, detail->len));
}

static NORETURN(void raise_closed(void));

static void
raise_closed(void)
{
    raise_code(RESULT_CLOSED, rb_utf8_str_new_cstr("the engine is closed"));
}

/* ---------------------------------------------------------------------------------------------
 * Arguments
 */

/* The TypeError for an argument `v` of the wrong type (`what` must be `expected`). `last` tells
 * that `v` is the last argument of a call that skipped split_args (the lookups do when they get
 * exactly as many arguments as they take): a Hash there while keywords were given is the keywords
 * standing in for a missing argument (`enabled?("cus", at: t)`), an ArgumentError as without
 * them. Checked here, off the common path, to cost the lookups nothing. */
static NORETURN(void arg_type_error(VALUE v, const char *what, const char *expected, bool last));

static void
arg_type_error(VALUE v, const char *what, const char *expected, bool last)
{
    if (last && RB_TYPE_P(v, T_HASH) && rb_keyword_given_p()) {
        rb_raise(rb_eArgError,
                 "wrong number of arguments (%s is missing; keywords cannot take its place)", what);
    }
    rb_raise(rb_eTypeError, "%s must be %s, not %" PRIsVALUE, what, expected, rb_obj_class(v));
}

/* key_arg's other cases: a Symbol, a String to transcode, or the wrong type. */
static NOINLINE(void key_arg_slow(VALUE v, const uint8_t **p, size_t *n, VALUE *keep,
                                  const char *what, bool last));

static void
key_arg_slow(VALUE v, const uint8_t **p, size_t *n, VALUE *keep, const char *what, bool last)
{
    if (!RB_TYPE_P(v, T_STRING)) {
        if (!RB_SYMBOL_P(v)) {
            arg_type_error(v, what, "a String or Symbol", last);
        }
        v = rb_sym2str(v);
    }
    int idx = RB_ENCODING_GET_INLINED(v);
    if (idx != enc_utf8 && idx != enc_usascii && idx != enc_binary && !rb_enc_str_asciionly_p(v)) {
        /* Strict: a String that cannot be transcoded raises Encoding::UndefinedConversionError
         * or Encoding::InvalidByteSequenceError (rb_str_export_to_enc would hand back its raw
         * bytes, which could spell another, valid UTF-8 id). */
        v = rb_str_encode(v, rb_enc_from_encoding(rb_utf8_encoding()), 0, Qnil);
    }
    *p = (const uint8_t *)RSTRING_PTR(v);
    *n = (size_t)RSTRING_LEN(v);
    *keep = v;
}

/* A customer id or feature key: a String (its bytes, without copying, when it is UTF-8, ASCII or
 * binary, or only ASCII; otherwise transcoded to UTF-8) or a Symbol. `*keep` receives the object
 * that owns the bytes: keep it alive (RB_GC_GUARD) until the library call returns. `last`: see
 * arg_type_error. The common case, a String passed as it is, is inline; the rest is not. */
static inline __attribute__((always_inline)) void
key_arg(VALUE v, const uint8_t **p, size_t *n, VALUE *keep, const char *what, bool last)
{
    if (RB_LIKELY(RB_TYPE_P(v, T_STRING))) {
        int idx = RB_ENCODING_GET_INLINED(v);
        if (RB_LIKELY(idx == enc_utf8 || idx == enc_usascii || idx == enc_binary)) {
            *p = (const uint8_t *)RSTRING_PTR(v);
            *n = (size_t)RSTRING_LEN(v);
            *keep = v;
            return;
        }
    }
    key_arg_slow(v, p, n, keep, what, last);
}

/* `at:`: a Time, an Integer or a Float of unix seconds (a Float is floored). */
static int64_t
at_arg(VALUE v)
{
    if (RB_INTEGER_TYPE_P(v)) {
        return NUM2LL(v);
    }
    if (RB_FLOAT_TYPE_P(v)) {
        double s = RFLOAT_VALUE(v);
        if (!isfinite(s) || s < -9.2e18 || s > 9.2e18) {
            rb_raise(rb_eRangeError, "at: %" PRIsVALUE " is out of range", v);
        }
        return (int64_t)floor(s);
    }
    if (rb_obj_is_kind_of(v, rb_cTime)) {
        struct timespec ts = rb_time_timespec(v);
        return (int64_t)ts.tv_sec;
    }
    rb_raise(rb_eTypeError, "at: must be a Time or unix seconds (Integer), not %" PRIsVALUE,
             rb_obj_class(v));
}

/* A whole number 0 ..= 2**64-1 (usage, requested). `last`: see arg_type_error. */
static uint64_t
count_arg(VALUE v, const char *what, bool last)
{
    if (RB_FIXNUM_P(v)) {
        long x = FIX2LONG(v);
        if (x < 0) {
            rb_raise(rb_eArgError, "%s must be >= 0, got %ld", what, x);
        }
        return (uint64_t)x;
    }
    if (RB_TYPE_P(v, T_BIGNUM)) {
        if (RBIGNUM_NEGATIVE_P(v)) {
            rb_raise(rb_eArgError, "%s must be >= 0, got %" PRIsVALUE, what, v);
        }
        return rb_big2ull(v); /* RangeError above 2**64-1 */
    }
    arg_type_error(v, what, "an Integer", last);
}

/* Splits `argc/argv` into positional arguments (between `min` and `max`) and the keywords named
 * in `ids` (`n` of them; missing ones come back as Qundef). Unknown keywords raise ArgumentError. */
static int
split_args(int argc, const VALUE *argv, int min, int max, const ID *ids, int n, VALUE *kw)
{
    for (int i = 0; i < n; i++) {
        kw[i] = Qundef;
    }
    if (argc > 0 && rb_keyword_given_p() && RB_TYPE_P(argv[argc - 1], T_HASH)) {
        rb_get_kwargs(argv[argc - 1], ids, 0, n, kw);
        argc--;
    }
    if (argc < min || argc > max) {
        rb_error_arity(argc, min, max);
    }
    return argc;
}

/* ---------------------------------------------------------------------------------------------
 * The registry of live engines (for fork)
 */

typedef struct engine_data {
    entitle_engine *engine;  /* NULL once closed */
    entitle_engine *retired; /* closed while busy: freed by the last busy call */
    long busy;               /* calls using the engine without the GVL */
    bool syncing;            /* made by connect: has a sync thread */
    int closing;             /* set (atomically) when close begins; read by waits without the GVL */
    pid_t pid;               /* the process whose threads the engine's threads are */
    struct engine_data *prev, *next;
    bool listed;
} engine_data;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static engine_data *registry_head;

static void
registry_add(engine_data *d)
{
    pthread_mutex_lock(&registry_lock);
    d->prev = NULL;
    d->next = registry_head;
    if (registry_head != NULL) {
        registry_head->prev = d;
    }
    registry_head = d;
    d->listed = true;
    pthread_mutex_unlock(&registry_lock);
}

static void
registry_remove(engine_data *d)
{
    pthread_mutex_lock(&registry_lock);
    if (d->listed) {
        if (d->prev != NULL) {
            d->prev->next = d->next;
        } else {
            registry_head = d->next;
        }
        if (d->next != NULL) {
            d->next->prev = d->prev;
        }
        d->listed = false;
        d->prev = d->next = NULL;
    }
    pthread_mutex_unlock(&registry_lock);
}

/* fork() while another thread (of another Ractor) edits the list would leave the child a torn
 * list and a locked mutex: hold the lock across fork. */
static void
registry_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
}

static void
registry_parent(void)
{
    pthread_mutex_unlock(&registry_lock);
}

static void
registry_child(void)
{
    pthread_mutex_unlock(&registry_lock);
}

/* ---------------------------------------------------------------------------------------------
 * Engine
 */

static void
engine_free(void *p)
{
    engine_data *d = p;
    registry_remove(d);
    /* No call is running (each keeps the object alive). For a syncing engine this waits for its
     * thread to stop, which is quick: a request in flight is interrupted. A syncing engine
     * inherited through a fork that bypassed Process._fork still names its parent's thread:
     * joining that would hang, so its memory is left to the process's end. */
    if (d->engine != NULL && !(d->syncing && d->pid != getpid())) {
        entitle_engine_free(d->engine);
        d->engine = NULL;
    }
    xfree(d);
}

static size_t
engine_memsize(const void *p)
{
    (void)p;
    return sizeof(engine_data);
}

static const rb_data_type_t engine_type = {
    .wrap_struct_name = "Entitle::Engine",
    .function = {.dmark = NULL, .dfree = engine_free, .dsize = engine_memsize},
    .flags = 0,
};

static inline engine_data *
get_data(VALUE self)
{
    /* The common case inline (rb_check_typeddata is a call): an instance of exactly this type. */
    if (RB_LIKELY(RB_TYPE_P(self, T_DATA) && RTYPEDDATA_P(self) &&
                  RTYPEDDATA_TYPE(self) == &engine_type)) {
        return RTYPEDDATA_DATA(self);
    }
    return rb_check_typeddata(self, &engine_type);
}

/* The live engine of `self`, or ClosedError. */
static inline entitle_engine *
live(VALUE self)
{
    engine_data *d = get_data(self);
    if (RB_UNLIKELY(d->engine == NULL)) {
        raise_closed();
    }
    return d->engine;
}

/* Wraps a new engine in an instance of `klass` (Entitle::Engine or a subclass); takes `e`. */
static VALUE
engine_wrap(VALUE klass, entitle_engine *e, bool syncing)
{
    engine_data *d;
    VALUE obj = TypedData_Make_Struct(klass, engine_data, &engine_type, d);
    d->engine = e;
    d->retired = NULL;
    d->busy = 0;
    d->syncing = syncing;
    d->closing = 0;
    d->pid = getpid();
    registry_add(d);
    return obj;
}

/* Running library calls without the GVL. */

typedef struct {
    engine_data *d;               /* NULL for calls made before an engine exists */
    void *(*fn)(void *);
    void *arg;
    rb_unblock_function_t *ubf;
    void *ubf_arg;
} nogvl_call;

static VALUE
nogvl_body(VALUE p)
{
    nogvl_call *c = (nogvl_call *)p;
    rb_thread_call_without_gvl(c->fn, c->arg, c->ubf, c->ubf_arg);
    return Qnil;
}

static VALUE
nogvl_ensure(VALUE p)
{
    nogvl_call *c = (nogvl_call *)p;
    engine_data *d = c->d;
    if (d != NULL) {
        d->busy--;
        if (d->busy == 0 && d->retired != NULL) {
            entitle_engine *e = d->retired;
            d->retired = NULL;
            entitle_engine_free(e);
        }
    }
    return Qnil;
}

/* Runs `fn(arg)` without the GVL, counted as a busy call of `d` (when not NULL). An interrupt
 * raised when the GVL comes back still ends the busy call. */
static void
without_gvl(engine_data *d, void *(*fn)(void *), void *arg, rb_unblock_function_t *ubf,
            void *ubf_arg)
{
    nogvl_call c = {d, fn, arg, ubf, ubf_arg};
    if (d != NULL) {
        d->busy++;
    }
    rb_ensure(nogvl_body, (VALUE)&c, nogvl_ensure, (VALUE)&c);
}

/* Loading. */

typedef struct {
    int kind; /* 0 file, 1 snapshot, 2 catalog JSON */
    const uint8_t *p;
    size_t n;
    entitle_engine *out;
    entitle_result result;
    error_detail detail;
} load_args;

static void *
load_nogvl(void *p)
{
    load_args *a = p;
    switch (a->kind) {
    case 0:
        a->result = entitle_engine_from_file(a->p, a->n, &a->out);
        break;
    case 1:
        a->result = entitle_engine_from_snapshot(a->p, a->n, &a->out);
        break;
    default:
        a->result = entitle_engine_from_catalog_json(a->p, a->n, &a->out);
        break;
    }
    if (a->result != ENTITLE_RESULT_OK) {
        detail_capture(&a->detail);
    }
    return NULL;
}

/* A String argument frozen for the length of a GVL-free call: another thread cannot change the
 * bytes meanwhile (a frozen copy shares the buffer and costs no copy of the bytes). */
static VALUE
bytes_arg(VALUE v, const char *what)
{
    if (!RB_TYPE_P(v, T_STRING)) {
        rb_raise(rb_eTypeError, "%s must be a String, not %" PRIsVALUE, what, rb_obj_class(v));
    }
    return rb_str_new_frozen(v);
}

static VALUE
engine_load(VALUE klass, VALUE str, int kind)
{
    load_args a;
    a.kind = kind;
    a.p = (const uint8_t *)RSTRING_PTR(str);
    a.n = (size_t)RSTRING_LEN(str);
    a.out = NULL;
    a.result = ENTITLE_RESULT_OK;
    a.detail.len = 0;
    without_gvl(NULL, load_nogvl, &a, NULL, NULL);
    RB_GC_GUARD(str);
    if (a.result != ENTITLE_RESULT_OK) {
        raise_captured(a.result, &a.detail);
    }
    return engine_wrap(klass, a.out, false);
}

/*
 * call-seq: Entitle::Engine.from_file(path) -> engine
 *
 * An engine serving the binary snapshot or catalog JSON in the file at +path+ (a String or
 * Pathname; told apart by content). Raises Entitle::FileError when the file cannot be read,
 * Entitle::CatalogError / Entitle::FormatError when its content is invalid.
 */
static VALUE
engine_s_from_file(VALUE klass, VALUE path)
{
    VALUE s = rb_str_new_frozen(rb_get_path(path));
    return engine_load(klass, s, 0);
}

/*
 * call-seq: Entitle::Engine.from_snapshot(bytes) -> engine
 *
 * An engine serving the binary snapshot in +bytes+ (a String, as written by <tt>entitle
 * build</tt>; the bytes are copied). Raises Entitle::FormatError when they are not a readable
 * snapshot.
 */
static VALUE
engine_s_from_snapshot(VALUE klass, VALUE bytes)
{
    return engine_load(klass, bytes_arg(bytes, "snapshot"), 1);
}

/* Entitle::Engine._from_catalog_json(json): lib/entitle/engine.rb turns a Hash into JSON first. */
static VALUE
engine_s_from_catalog_json(VALUE klass, VALUE json)
{
    return engine_load(klass, bytes_arg(json, "catalog"), 2);
}

/* Connecting. */

typedef struct {
    entitle_sync_config config;
    entitle_engine *out;
    entitle_result result;
    error_detail detail;
} connect_args;

static void *
connect_nogvl(void *p)
{
    connect_args *a = p;
    a->result = entitle_engine_connect(&a->config, &a->out);
    if (a->result != ENTITLE_RESULT_OK) {
        detail_capture(&a->detail);
    }
    return NULL;
}

static void
optional_text(VALUE v, const uint8_t **p, size_t *n)
{
    if (NIL_P(v)) {
        *p = NULL;
        *n = 0;
        return;
    }
    *p = (const uint8_t *)RSTRING_PTR(v);
    *n = (size_t)RSTRING_LEN(v);
}

/* Entitle::Engine._connect(url, token, cache_dir, millis, max_artifact_bytes): the keywords are
 * checked and turned into whole milliseconds (0 = the library's default) by
 * lib/entitle/engine.rb. `millis` is [poll_interval, connect_timeout, request_timeout,
 * max_staleness, long_poll, max_backoff, persist_interval]; max_artifact_bytes 0 is the default. */
static VALUE
engine_s_connect(VALUE klass, VALUE url, VALUE token, VALUE cache_dir, VALUE millis,
                 VALUE max_artifact_bytes)
{
    url = bytes_arg(url, "url");
    if (!NIL_P(token)) {
        token = bytes_arg(token, "token");
    }
    if (!NIL_P(cache_dir)) {
        cache_dir = rb_str_new_frozen(rb_get_path(cache_dir));
    }
    Check_Type(millis, T_ARRAY);
    if (RARRAY_LEN(millis) != 7) {
        rb_raise(rb_eArgError, "expected 7 durations, got %ld", RARRAY_LEN(millis));
    }
    connect_args a;
    memset(&a, 0, sizeof a); /* fields added to the config later keep their defaults */
    optional_text(url, &a.config.url, &a.config.url_len);
    optional_text(token, &a.config.token, &a.config.token_len);
    optional_text(cache_dir, &a.config.cache_dir, &a.config.cache_dir_len);
    uint64_t *slots[7] = {&a.config.poll_interval_ms,   &a.config.connect_timeout_ms,
                          &a.config.request_timeout_ms, &a.config.max_staleness_ms,
                          &a.config.long_poll_ms,       &a.config.max_backoff_ms,
                          &a.config.persist_interval_ms};
    for (int i = 0; i < 7; i++) {
        *slots[i] = NUM2ULL(RARRAY_AREF(millis, i));
    }
    a.config.max_artifact_bytes = NUM2ULL(max_artifact_bytes);
    without_gvl(NULL, connect_nogvl, &a, NULL, NULL);
    RB_GC_GUARD(url);
    RB_GC_GUARD(token);
    RB_GC_GUARD(cache_dir);
    if (a.result != ENTITLE_RESULT_OK) {
        raise_captured(a.result, &a.detail);
    }
    return engine_wrap(klass, a.out, true);
}

/* Lookups (the hot path: no allocation, the GVL kept). */

static const ID *at_ids = &id_at;

/*
 * call-seq: engine.enabled?(customer, feature, at: nil) -> true or false
 *
 * Whether +customer+ may use +feature+: a flag's value; for a limit, unlimited or above 0.
 * Unknown features answer false; unknown customers get the feature's default. +at+ evaluates at
 * another time (a Time or unix seconds) instead of now.
 */
static VALUE
engine_enabled_p(int argc, VALUE *argv, VALUE self)
{
    VALUE at = Qundef;
    if (RB_UNLIKELY(argc != 2)) {
        split_args(argc, argv, 2, 2, at_ids, 1, &at);
    }
    const uint8_t *c, *f;
    size_t cn, fn;
    VALUE ck, fk;
    key_arg(argv[0], &c, &cn, &ck, "customer", false);
    key_arg(argv[1], &f, &fn, &fk, "feature", argc == 2);
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    /* Every argument is converted before the engine is leased: nothing below runs Ruby code. */
    entitle_engine *e = live(self);
    bool r;
    if (!has_at) {
        r = entitle_engine_enabled(e, c, cn, f, fn);
    } else {
        r = entitle_engine_enabled_at(e, c, cn, f, fn, t);
    }
    RB_GC_GUARD(ck);
    RB_GC_GUARD(fk);
    return r ? Qtrue : Qfalse;
}

static inline VALUE
limit_value(uint64_t v)
{
    return v == ENTITLE_UNLIMITED ? float_infinity : ULL2NUM(v);
}

/*
 * call-seq: engine.limit(customer, feature, at: nil) -> Integer or Float::INFINITY
 *
 * The limit of +feature+ for +customer+: a whole number, or Float::INFINITY when unlimited.
 * Flags and unknown features answer 0 (use #check to tell those apart).
 */
static VALUE
engine_limit(int argc, VALUE *argv, VALUE self)
{
    VALUE at = Qundef;
    if (RB_UNLIKELY(argc != 2)) {
        split_args(argc, argv, 2, 2, at_ids, 1, &at);
    }
    const uint8_t *c, *f;
    size_t cn, fn;
    VALUE ck, fk;
    key_arg(argv[0], &c, &cn, &ck, "customer", false);
    key_arg(argv[1], &f, &fn, &fk, "feature", argc == 2);
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    /* Every argument is converted before the engine is leased: nothing below runs Ruby code. */
    entitle_engine *e = live(self);
    uint64_t v;
    if (!has_at) {
        v = entitle_engine_limit(e, c, cn, f, fn);
    } else {
        v = entitle_engine_limit_at(e, c, cn, f, fn, t);
    }
    RB_GC_GUARD(ck);
    RB_GC_GUARD(fk);
    return limit_value(v);
}

/*
 * call-seq: engine.allows?(customer, feature, usage, requested: 1, at: nil) -> true or false
 *
 * Whether +customer+ may use +requested+ more of +feature+ on top of +usage+: a flag when it is
 * enabled; a limit when it is unlimited or <tt>usage + requested <= limit</tt>. Unknown features
 * answer false. +usage+ and +requested+ are Integers >= 0.
 */
static VALUE
engine_allows_p(int argc, VALUE *argv, VALUE self)
{
    static ID ids[2];
    VALUE kw[2] = {Qundef, Qundef};
    if (RB_UNLIKELY(argc != 3)) {
        ids[0] = id_requested;
        ids[1] = id_at;
        split_args(argc, argv, 3, 3, ids, 2, kw);
    }
    const uint8_t *c, *f;
    size_t cn, fn;
    VALUE ck, fk;
    key_arg(argv[0], &c, &cn, &ck, "customer", false);
    key_arg(argv[1], &f, &fn, &fk, "feature", false);
    uint64_t usage = count_arg(argv[2], "usage", argc == 3);
    uint64_t requested = kw[0] == Qundef ? 1 : count_arg(kw[0], "requested", false);
    bool has_at = kw[1] != Qundef && !NIL_P(kw[1]);
    int64_t t = has_at ? at_arg(kw[1]) : 0;
    /* Every argument is converted before the engine is leased: nothing below runs Ruby code. */
    entitle_engine *e = live(self);
    bool r;
    if (!has_at) {
        r = entitle_engine_allows(e, c, cn, f, fn, usage, requested);
    } else {
        r = entitle_engine_allows_at(e, c, cn, f, fn, usage, requested, t);
    }
    RB_GC_GUARD(ck);
    RB_GC_GUARD(fk);
    return r ? Qtrue : Qfalse;
}

/* Decision */

static const rb_data_type_t decision_type = {
    .wrap_struct_name = "Entitle::Decision",
    .function = {.dmark = NULL, .dfree = RUBY_TYPED_DEFAULT_FREE, .dsize = NULL},
    .flags = RUBY_TYPED_FREE_IMMEDIATELY | RUBY_TYPED_FROZEN_SHAREABLE,
};

static VALUE
decision_new(const entitle_decision *src)
{
    entitle_decision *d;
    VALUE obj = TypedData_Make_Struct(cDecision, entitle_decision, &decision_type, d);
    *d = *src;
    RB_OBJ_FREEZE(obj);
    return obj;
}

static inline const entitle_decision *
decision_get(VALUE self)
{
    return rb_check_typeddata(self, &decision_type);
}

/*
 * call-seq: engine.check(customer, feature, at: nil) -> Entitle::Decision
 *
 * The whole decision for +customer+ and +feature+: its type, whether it is enabled, the limit,
 * the reason and the content version that answered. Raises Entitle::InvalidArgumentError when a
 * String is not valid UTF-8.
 */
static VALUE
engine_check(int argc, VALUE *argv, VALUE self)
{
    VALUE at = Qundef;
    if (RB_UNLIKELY(argc != 2)) {
        split_args(argc, argv, 2, 2, at_ids, 1, &at);
    }
    const uint8_t *c, *f;
    size_t cn, fn;
    VALUE ck, fk;
    key_arg(argv[0], &c, &cn, &ck, "customer", false);
    key_arg(argv[1], &f, &fn, &fk, "feature", argc == 2);
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    /* Every argument is converted before the engine is leased: nothing below runs Ruby code. */
    entitle_engine *e = live(self);
    entitle_decision out;
    entitle_result r;
    if (!has_at) {
        r = entitle_engine_check(e, c, cn, f, fn, &out);
    } else {
        r = entitle_engine_check_at(e, c, cn, f, fn, t, &out);
    }
    RB_GC_GUARD(ck);
    RB_GC_GUARD(fk);
    if (r != ENTITLE_RESULT_OK) {
        raise_result(r);
    }
    return decision_new(&out);
}

/*
 * call-seq: engine.entitlements(customer, at: nil) -> Hash
 *
 * Every feature's Entitle::Decision for +customer+, keyed by feature key (frozen Strings), in the
 * snapshot's feature order.
 */
static VALUE
engine_entitlements(int argc, VALUE *argv, VALUE self)
{
    VALUE at = Qundef;
    split_args(argc, argv, 1, 1, at_ids, 1, &at);
    const uint8_t *c;
    size_t cn;
    VALUE ck;
    key_arg(argv[0], &c, &cn, &ck, "customer", false);
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    /* Every argument is converted before the engine is leased: nothing below runs Ruby code. */
    entitle_engine *e = live(self);
    entitle_entitlements *list = NULL;
    entitle_result r;
    if (!has_at) {
        r = entitle_engine_entitlements(e, c, cn, &list);
    } else {
        r = entitle_engine_entitlements_at(e, c, cn, t, &list);
    }
    RB_GC_GUARD(ck);
    if (r != ENTITLE_RESULT_OK) {
        raise_result(r);
    }
    /* Nothing below raises except NoMemoryError, which ends the process's useful life anyway;
     * the list is freed before any Ruby error could be raised from a bad entry. */
    size_t n = entitle_entitlements_len(list);
    VALUE hash = rb_hash_new();
    for (size_t i = 0; i < n; i++) {
        entitle_entitlement item;
        if (entitle_entitlements_get(list, i, &item) != ENTITLE_RESULT_OK) {
            entitle_entitlements_free(list);
            rb_raise(eError, "entitlement %zu of %zu could not be read", i, n);
        }
        VALUE key = rb_enc_interned_str((const char *)item.key, (long)item.key_len,
                                        rb_utf8_encoding());
        rb_hash_aset(hash, key, decision_new(&item.decision));
    }
    entitle_entitlements_free(list);
    return hash;
}

/*
 * call-seq: engine.version -> Integer
 *
 * The content version being served (0 for an engine built from a catalog).
 */
static VALUE
engine_version(VALUE self)
{
    return ULL2NUM(entitle_engine_version(live(self)));
}

/* Updates. */

typedef struct {
    entitle_engine *e;
    const uint8_t *p;
    size_t n;
    int kind; /* 0 snapshot, 1 delta, 2 file */
    uint64_t version;
    entitle_result result;
    error_detail detail;
} update_args;

static void *
update_nogvl(void *p)
{
    update_args *a = p;
    switch (a->kind) {
    case 0:
        a->result = entitle_engine_replace_snapshot(a->e, a->p, a->n);
        break;
    case 1:
        a->result = entitle_engine_apply_delta(a->e, a->p, a->n, &a->version);
        break;
    default:
        a->result = entitle_engine_replace_file(a->e, a->p, a->n);
        break;
    }
    if (a->result != ENTITLE_RESULT_OK) {
        detail_capture(&a->detail);
    }
    return NULL;
}

static VALUE
engine_update(VALUE self, VALUE str, int kind)
{
    engine_data *d = get_data(self);
    if (d->engine == NULL) {
        raise_closed();
    }
    update_args a;
    a.e = d->engine;
    a.p = (const uint8_t *)RSTRING_PTR(str);
    a.n = (size_t)RSTRING_LEN(str);
    a.kind = kind;
    a.version = 0;
    a.result = ENTITLE_RESULT_OK;
    a.detail.len = 0;
    without_gvl(d, update_nogvl, &a, NULL, NULL);
    RB_GC_GUARD(str);
    if (a.result != ENTITLE_RESULT_OK) {
        raise_captured(a.result, &a.detail);
    }
    return kind == 1 ? ULL2NUM(a.version) : self;
}

/*
 * call-seq: engine.replace(snapshot) -> engine
 *
 * Replaces the whole content with the binary snapshot in +snapshot+ (a String). Lookups running
 * meanwhile finish on the old content. On failure (Entitle::FormatError) the content is kept.
 */
static VALUE
engine_replace(VALUE self, VALUE bytes)
{
    return engine_update(self, bytes_arg(bytes, "snapshot"), 0);
}

/*
 * call-seq: engine.apply_delta(delta) -> Integer
 *
 * Applies delta bytes (as written by <tt>entitle diff</tt>) and returns the new content version.
 * Raises Entitle::DeltaError when the delta was made for another base; the content is then kept.
 */
static VALUE
engine_apply_delta(VALUE self, VALUE bytes)
{
    return engine_update(self, bytes_arg(bytes, "delta"), 1);
}

/*
 * call-seq: engine.replace_file(path) -> engine
 *
 * Replaces the whole content with the snapshot or catalog JSON in the file at +path+.
 */
static VALUE
engine_replace_file(VALUE self, VALUE path)
{
    return engine_update(self, rb_str_new_frozen(rb_get_path(path)), 2);
}

/* Waiting. */

typedef struct {
    entitle_engine *e;
    double deadline_ms; /* on the monotonic clock; < 0: no deadline */
    const int *closing; /* the engine's close has begun: stop waiting */
    volatile int interrupted;
    bool ready;
} wait_args;

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Whether the wait's deadline has passed. */
static bool
wait_expired(const wait_args *a)
{
    return a->deadline_ms >= 0 && now_ms() >= a->deadline_ms;
}

/* Waits slice by slice until ready, past the deadline, or interrupted by wait_ubf. */
static void *
wait_nogvl(void *p)
{
    wait_args *a = p;
    for (;;) {
        uint64_t slice = WAIT_SLICE_MS;
        bool last = false;
        if (a->deadline_ms >= 0) {
            double left = a->deadline_ms - now_ms();
            if (left <= WAIT_SLICE_MS) {
                slice = left > 0 ? (uint64_t)ceil(left) : 0; /* a timeout of 0 still looks once */
                last = true;
            }
        }
        a->ready = entitle_engine_wait_ready(a->e, slice);
        /* A closed engine answers false at once: the flag keeps that from spinning. */
        if (a->ready || last || a->interrupted || __atomic_load_n(a->closing, __ATOMIC_ACQUIRE)) {
            break;
        }
    }
    return NULL;
}

/* Called by Ruby (from another thread) to interrupt the wait: the current slice ends it. */
static void
wait_ubf(void *p)
{
    ((wait_args *)p)->interrupted = 1;
}

/*
 * call-seq: engine.wait_ready(timeout = nil) -> true or false
 *
 * Waits until the engine has content (from its cache or a first successful sync), at most
 * +timeout+ seconds (nil: without limit), and answers whether it has. Other Ruby threads run
 * meanwhile (the GVL is released), and the wait can be interrupted: Ctrl-C, Thread#raise and
 * Timeout.timeout end it within a few milliseconds. Engines that do not sync are ready at once; a
 * wait on an engine closed meanwhile answers false.
 */
static VALUE
engine_wait_ready(int argc, VALUE *argv, VALUE self)
{
    rb_check_arity(argc, 0, 1);
    double left_ms = -1;
    if (argc == 1 && !NIL_P(argv[0])) {
        if (!RB_INTEGER_TYPE_P(argv[0]) && !RB_FLOAT_TYPE_P(argv[0]) &&
            !rb_obj_is_kind_of(argv[0], rb_cNumeric)) {
            rb_raise(rb_eTypeError, "timeout must be nil or a number of seconds, not %" PRIsVALUE,
                     rb_obj_class(argv[0]));
        }
        double s = NUM2DBL(argv[0]);
        if (isnan(s) || s < 0) {
            rb_raise(rb_eArgError, "timeout must be nil or a number of seconds >= 0, got %" PRIsVALUE,
                     argv[0]);
        }
        left_ms = isinf(s) ? -1 : s * 1000.0;
    }
    engine_data *d = get_data(self);
    if (d->engine == NULL) {
        raise_closed();
    }
    wait_args a = {d->engine, left_ms < 0 ? -1 : now_ms() + left_ms, &d->closing, 0, false};
    for (;;) {
        a.interrupted = 0;
        /* Interrupts pending when the GVL comes back are raised here (busy is released). */
        without_gvl(d, wait_nogvl, &a, wait_ubf, &a);
        if (a.ready || d->engine == NULL || wait_expired(&a)) {
            break;
        }
        /* Woken without a Ruby interrupt to raise (a signal trap ran, say): wait on. */
        rb_thread_check_ints();
        /* That check can run other threads; one may have closed the engine, and a close with no
         * call busy frees it at once: `a.e` must not be used again. */
        if (d->engine == NULL) {
            break;
        }
    }
    return a.ready ? Qtrue : Qfalse;
}

/* Status. */

static VALUE
status_text(entitle_engine *e, entitle_status_text which)
{
    size_t cap = 256;
    for (int attempt = 0; attempt < 8; attempt++) {
        VALUE buf = rb_str_buf_new((long)cap);
        size_t len = 0;
        entitle_result r = entitle_engine_status_text(e, (uint32_t)which,
                                                      (uint8_t *)RSTRING_PTR(buf), cap, &len);
        if (r == ENTITLE_RESULT_OK) {
            if (len == 0) {
                return Qnil;
            }
            rb_str_set_len(buf, (long)len);
            rb_enc_associate(buf, rb_utf8_encoding());
            return rb_str_freeze(buf);
        }
        if (r != ENTITLE_RESULT_BUFFER_TOO_SMALL) {
            raise_result(r);
        }
        cap *= 4;
    }
    rb_raise(eError, "a status text kept growing while it was read");
}

/* Entitle::Engine#_status_fields: the fields of Entitle::Status, in its member order
 * (lib/entitle/status.rb turns them into the frozen value). */
static VALUE
engine_status_fields(VALUE self)
{
    entitle_engine *e = live(self);
    entitle_status s;
    entitle_result r = entitle_engine_status(e, &s);
    if (r != ENTITLE_RESULT_OK) {
        raise_result(r);
    }
    VALUE state;
    switch (s.state) {
    case ENTITLE_SYNC_STATE_STARTING: state = sym_starting; break;
    case ENTITLE_SYNC_STATE_READY: state = sym_ready; break;
    case ENTITLE_SYNC_STATE_STALE: state = sym_stale; break;
    case ENTITLE_SYNC_STATE_FAILED: state = sym_failed; break;
    default: state = sym_unknown; break;
    }
    VALUE f[] = {
        state,
        s.syncing ? Qtrue : Qfalse,
        s.warm_start ? Qtrue : Qfalse,
        s.long_poll ? Qtrue : Qfalse,
        ULL2NUM(s.version),
        s.has_last_success ? LL2NUM(s.last_success) : Qnil,
        s.has_data_age ? ULL2NUM(s.data_age_ms) : Qnil,
        s.has_last_error_at ? LL2NUM(s.last_error_at) : Qnil,
        s.has_edge_version ? ULL2NUM(s.edge_version) : Qnil,
        ULL2NUM(s.syncs),
        ULL2NUM(s.failures),
        ULL2NUM(s.consecutive_failures),
        ULL2NUM(s.updates),
        ULL2NUM(s.deltas_applied),
        ULL2NUM(s.snapshots_fetched),
        status_text(e, ENTITLE_STATUS_TEXT_LAST_ERROR),
        status_text(e, ENTITLE_STATUS_TEXT_CACHE_ERROR),
        status_text(e, ENTITLE_STATUS_TEXT_LINEAGE),
    };
    return rb_ary_new_from_values((long)(sizeof f / sizeof f[0]), f);
}

/* Events. */

#define EVENT_MSG_CAP 1024

typedef struct {
    entitle_engine *e;
    uint64_t after;
    double deadline_ms; /* < 0: no deadline */
    const int *closing;
    volatile int interrupted;
    entitle_result result;
    entitle_event ev;
    uint8_t msg[EVENT_MSG_CAP];
    size_t msg_len;
    error_detail detail;
} event_args;

/* Waits slice by slice for the next event, until one comes, the deadline, an interrupt, or
 * CLOSED. */
static void *
event_nogvl(void *p)
{
    event_args *a = p;
    for (;;) {
        uint64_t slice = WAIT_SLICE_MS;
        bool last = false;
        if (a->deadline_ms >= 0) {
            double left = a->deadline_ms - now_ms();
            if (left <= WAIT_SLICE_MS) {
                slice = left > 0 ? (uint64_t)ceil(left) : 0;
                last = true;
            }
        }
        a->msg_len = 0;
        a->result = entitle_engine_next_event(a->e, a->after, slice, &a->ev, a->msg, EVENT_MSG_CAP,
                                              &a->msg_len);
        if (a->result != ENTITLE_RESULT_TIMEOUT || last || a->interrupted ||
            __atomic_load_n(a->closing, __ATOMIC_ACQUIRE)) {
            break;
        }
    }
    if (a->result != ENTITLE_RESULT_OK && a->result != ENTITLE_RESULT_TIMEOUT) {
        detail_capture(&a->detail);
    }
    return NULL;
}

static void
event_ubf(void *p)
{
    ((event_args *)p)->interrupted = 1;
}

/* Entitle::Engine#_next_event(after_seq, timeout): the first event with a sequence number above
 * after_seq as [seq, kind, old_version, new_version, at_ms, message], or nil when none came within
 * timeout seconds (nil: no limit). Raises ClosedError once the engine is closed and has no later
 * event. Releases the GVL and can be interrupted, as wait_ready. lib/entitle/engine.rb builds
 * Entitle::Event from the fields. */
static VALUE
engine_next_event(VALUE self, VALUE after, VALUE timeout)
{
    uint64_t after_seq = NUM2ULL(after);
    double left_ms = -1;
    if (!NIL_P(timeout)) {
        double t = NUM2DBL(timeout);
        if (isnan(t) || t < 0) {
            rb_raise(rb_eArgError, "timeout must be nil or a number of seconds >= 0");
        }
        left_ms = isinf(t) ? -1 : t * 1000.0;
    }
    engine_data *d = get_data(self);
    if (d->engine == NULL) {
        raise_closed();
    }
    /* On the stack: an interrupt raised out of the wait unwinds it with nothing to free (it was
     * a GC-owned block, read after its last RB_GC_GUARD). */
    event_args args;
    event_args *a = &args;
    a->e = d->engine;
    a->after = after_seq;
    a->deadline_ms = left_ms < 0 ? -1 : now_ms() + left_ms;
    a->closing = &d->closing;
    a->detail.len = 0;
    for (;;) {
        a->interrupted = 0;
        without_gvl(d, event_nogvl, a, event_ubf, a);
        if (a->result != ENTITLE_RESULT_TIMEOUT || d->engine == NULL ||
            (a->deadline_ms >= 0 && now_ms() >= a->deadline_ms)) {
            break;
        }
        rb_thread_check_ints();
        /* As in wait_ready: the engine may have been closed (and freed) meanwhile. */
        if (d->engine == NULL) {
            break;
        }
    }
    if (a->result == ENTITLE_RESULT_TIMEOUT) {
        if (d->engine == NULL) {
            raise_closed();
        }
        return Qnil;
    }
    if (a->result != ENTITLE_RESULT_OK) {
        raise_captured(a->result, &a->detail);
    }
    VALUE msg = rb_utf8_str_new((const char *)a->msg, (long)a->msg_len);
    VALUE f[] = {ULL2NUM(a->ev.seq), UINT2NUM(a->ev.kind), ULL2NUM(a->ev.old_version),
                 ULL2NUM(a->ev.new_version), LL2NUM(a->ev.at_ms), rb_str_freeze(msg)};
    return rb_ary_new_from_values(6, f);
}

/* Closing. */

static void *
close_nogvl(void *p)
{
    entitle_engine_close(p);
    return NULL;
}

/*
 * call-seq: engine.close -> nil
 *
 * Stops the sync thread (for engines made by connect) and releases the engine's memory; later
 * calls raise Entitle::ClosedError. Idempotent. A wait_ready running on another thread returns
 * false. Engines that are never closed are released by the garbage collector or at exit.
 */
static VALUE
engine_close(VALUE self)
{
    engine_data *d = get_data(self);
    entitle_engine *e = d->engine;
    if (e == NULL) {
        return Qnil;
    }
    if (d->syncing && d->pid != getpid()) {
        /* Inherited through a fork that bypassed Process._fork: give the engine threads of this
         * process first, so that closing joins threads that exist. */
        d->pid = getpid();
        d->busy = 0;
        d->retired = NULL;
        entitle_engine_after_fork(e);
    }
    /* From here on new calls see a closed engine; calls running without the GVL keep their
     * pointer, so the memory goes only when the last of them is done. */
    d->engine = NULL;
    __atomic_store_n(&d->closing, 1, __ATOMIC_RELEASE);
    registry_remove(d);
    d->retired = e;
    if (d->syncing || d->busy > 0) {
        /* Joins the sync thread and wakes event waiters: without the GVL. The busy count keeps
         * `e` alive; the last busy call frees it. */
        without_gvl(d, close_nogvl, e, NULL, NULL);
    } else {
        d->retired = NULL;
        entitle_engine_close(e);
        entitle_engine_free(e);
    }
    return Qnil;
}

/*
 * call-seq: engine.closed? -> true or false
 */
static VALUE
engine_closed_p(VALUE self)
{
    return get_data(self)->engine == NULL ? Qtrue : Qfalse;
}

/*
 * call-seq: engine.syncing? -> true or false
 *
 * Whether the engine was made by connect (keeps itself up to date from an edge).
 */
static VALUE
engine_syncing_p(VALUE self)
{
    return get_data(self)->syncing ? Qtrue : Qfalse;
}

/* Entitle::Engine.__after_fork: in a forked child, restarts the sync thread of every live syncing
 * engine and forgets calls that were running on threads the child does not have. Returns how
 * many engines were restarted. Called by the Process._fork hook (lib/entitle/fork.rb). */
static VALUE
engine_s_after_fork(VALUE klass)
{
    (void)klass;
    pid_t now = getpid();
    long restarted = 0;
    pthread_mutex_lock(&registry_lock);
    for (engine_data *d = registry_head; d != NULL; d = d->next) {
        if (d->pid == now) {
            continue; /* made in this process, or already restarted in it */
        }
        d->pid = now;
        /* An engine retired while a parent thread ran is left alone: freeing it would join threads
         * of the parent. */
        d->busy = 0;
        d->retired = NULL;
        if (d->engine != NULL && d->syncing) {
            entitle_engine_after_fork(d->engine);
            restarted++;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return LONG2NUM(restarted);
}

/* Entitle::Engine.__live_count: engines not closed or collected yet (for tests). */
static VALUE
engine_s_live_count(VALUE klass)
{
    (void)klass;
    long n = 0;
    pthread_mutex_lock(&registry_lock);
    for (engine_data *d = registry_head; d != NULL; d = d->next) {
        n++;
    }
    pthread_mutex_unlock(&registry_lock);
    return LONG2NUM(n);
}

/* ---------------------------------------------------------------------------------------------
 * Decision
 */

/* call-seq: decision.feature_type -> :flag, :limit or nil (the feature is not in the snapshot) */
static VALUE
decision_feature_type(VALUE self)
{
    switch (decision_get(self)->feature_type) {
    case ENTITLE_FEATURE_TYPE_FLAG: return sym_flag;
    case ENTITLE_FEATURE_TYPE_LIMIT: return sym_limit;
    default: return Qnil;
    }
}

/* call-seq: decision.enabled? -> true or false */
static VALUE
decision_enabled_p(VALUE self)
{
    return decision_get(self)->enabled ? Qtrue : Qfalse;
}

/* call-seq: decision.unlimited? -> true or false */
static VALUE
decision_unlimited_p(VALUE self)
{
    return decision_get(self)->unlimited ? Qtrue : Qfalse;
}

/*
 * call-seq: decision.limit -> Integer, Float::INFINITY or nil
 *
 * A limit feature's limit (Float::INFINITY when unlimited); nil for flags and unknown features.
 */
static VALUE
decision_limit(VALUE self)
{
    const entitle_decision *d = decision_get(self);
    if (d->feature_type != ENTITLE_FEATURE_TYPE_LIMIT) {
        return Qnil;
    }
    return d->unlimited ? float_infinity : ULL2NUM(d->value);
}

/*
 * call-seq: decision.reason -> Symbol
 *
 * :override, :subscription, :default, :customer_not_found or :feature_not_found.
 */
static VALUE
decision_reason(VALUE self)
{
    uint32_t r = (uint32_t)decision_get(self)->reason;
    return r < N_REASONS ? reason_syms[r] : sym_unknown;
}

/* call-seq: decision.version -> Integer (the content version that answered) */
static VALUE
decision_version(VALUE self)
{
    return ULL2NUM(decision_get(self)->version);
}

/* call-seq: decision.to_h -> {feature_type:, enabled:, limit:, reason:, version:} */
static VALUE
decision_to_h(VALUE self)
{
    VALUE h = rb_hash_new();
    rb_hash_aset(h, sym_feature_type, decision_feature_type(self));
    rb_hash_aset(h, sym_enabled, decision_enabled_p(self));
    rb_hash_aset(h, sym_limit_key, decision_limit(self));
    rb_hash_aset(h, sym_reason, decision_reason(self));
    rb_hash_aset(h, sym_version, decision_version(self));
    return h;
}

/* call-seq: decision == other -> true or false (same values) */
static VALUE
decision_eq(VALUE self, VALUE other)
{
    if (!rb_typeddata_is_kind_of(other, &decision_type)) {
        return Qfalse;
    }
    const entitle_decision *a = decision_get(self), *b = decision_get(other);
    return (a->value == b->value && a->version == b->version && a->reason == b->reason &&
            a->feature_type == b->feature_type && a->enabled == b->enabled &&
            a->unlimited == b->unlimited)
               ? Qtrue
               : Qfalse;
}

/* call-seq: decision.hash -> Integer */
static VALUE
decision_hash(VALUE self)
{
    const entitle_decision *d = decision_get(self);
    st_index_t h = rb_hash_start((st_index_t)d->value);
    h = rb_hash_uint(h, (st_index_t)d->version);
    h = rb_hash_uint(h, (st_index_t)d->reason);
    h = rb_hash_uint(h, (st_index_t)d->feature_type);
    h = rb_hash_uint(h, (st_index_t)((d->enabled ? 1 : 0) | (d->unlimited ? 2 : 0)));
    return ST2FIX(rb_hash_end(h));
}

/* ---------------------------------------------------------------------------------------------
 * Feature handles and batches
 */

/* An Entitle::Feature: a key resolved once by Engine#feature, and the engine it belongs to. */
typedef struct {
    entitle_feature handle;
    VALUE engine; /* the Entitle::Engine (marked) */
    VALUE key;    /* the frozen key String (marked) */
} feature_data;

static void
feature_mark(void *p)
{
    feature_data *f = p;
    rb_gc_mark(f->engine);
    rb_gc_mark(f->key);
}

static size_t
feature_memsize(const void *p)
{
    (void)p;
    return sizeof(feature_data);
}

static const rb_data_type_t feature_type = {
    .wrap_struct_name = "Entitle::Feature",
    .function = {.dmark = feature_mark, .dfree = RUBY_TYPED_DEFAULT_FREE, .dsize = feature_memsize},
    .flags = RUBY_TYPED_FREE_IMMEDIATELY,
};

static inline feature_data *
feature_get(VALUE self)
{
    return rb_check_typeddata(self, &feature_type);
}

/*
 * call-seq: engine.feature(key) -> Entitle::Feature
 *
 * Resolves +key+ once into a handle whose lookups skip hashing and finding the key: for the
 * features an application checks on every request. A key not in the current snapshot still gives
 * a handle (it answers :feature_not_found until a snapshot has the feature); handles stay correct
 * across every update. The process keeps each distinct key resolved (at most 65,535).
 */
static VALUE
engine_feature(VALUE self, VALUE key)
{
    const uint8_t *k;
    size_t kn;
    VALUE kk;
    key_arg(key, &k, &kn, &kk, "feature", false);
    VALUE frozen = rb_str_new_frozen(kk);
    entitle_engine *e = live(self);
    entitle_feature handle;
    entitle_result r = entitle_engine_feature(e, k, kn, &handle);
    RB_GC_GUARD(kk);
    if (r != ENTITLE_RESULT_OK) {
        raise_result(r);
    }
    feature_data *f;
    VALUE obj = TypedData_Make_Struct(cFeature, feature_data, &feature_type, f);
    f->handle = handle;
    RB_OBJ_WRITE(obj, &f->engine, self);
    RB_OBJ_WRITE(obj, &f->key, frozen);
    RB_OBJ_FREEZE(obj);
    return obj;
}

/* The live engine of a feature handle, or ClosedError. */
static inline entitle_engine *
feature_engine(const feature_data *f)
{
    return live(f->engine);
}

/* call-seq: feature.key -> String */
static VALUE
feature_key(VALUE self)
{
    return feature_get(self)->key;
}

/* call-seq: feature.engine -> Entitle::Engine */
static VALUE
feature_engine_reader(VALUE self)
{
    return feature_get(self)->engine;
}

/* call-seq: feature.enabled?(customer, at: nil) -> true or false (as Engine#enabled?) */
static VALUE
feature_enabled_p(int argc, VALUE *argv, VALUE self)
{
    feature_data *f = feature_get(self);
    VALUE at = Qundef;
    if (RB_UNLIKELY(argc != 1)) {
        split_args(argc, argv, 1, 1, at_ids, 1, &at);
    }
    const uint8_t *c;
    size_t cn;
    VALUE ck;
    key_arg(argv[0], &c, &cn, &ck, "customer", argc == 1);
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    entitle_engine *e = feature_engine(f);
    bool r = has_at ? entitle_engine_feature_enabled_at(e, f->handle, c, cn, t)
                    : entitle_engine_feature_enabled(e, f->handle, c, cn);
    RB_GC_GUARD(ck);
    return r ? Qtrue : Qfalse;
}

/* call-seq: feature.limit(customer, at: nil) -> Integer or Float::INFINITY (as Engine#limit) */
static VALUE
feature_limit(int argc, VALUE *argv, VALUE self)
{
    feature_data *f = feature_get(self);
    VALUE at = Qundef;
    if (RB_UNLIKELY(argc != 1)) {
        split_args(argc, argv, 1, 1, at_ids, 1, &at);
    }
    const uint8_t *c;
    size_t cn;
    VALUE ck;
    key_arg(argv[0], &c, &cn, &ck, "customer", argc == 1);
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    entitle_engine *e = feature_engine(f);
    uint64_t v = has_at ? entitle_engine_feature_limit_at(e, f->handle, c, cn, t)
                        : entitle_engine_feature_limit(e, f->handle, c, cn);
    RB_GC_GUARD(ck);
    return limit_value(v);
}

/*
 * call-seq: feature.allows?(customer, usage, requested: 1, at: nil) -> true or false
 *
 * As Engine#allows?.
 */
static VALUE
feature_allows_p(int argc, VALUE *argv, VALUE self)
{
    static ID ids[2];
    feature_data *f = feature_get(self);
    VALUE kw[2] = {Qundef, Qundef};
    if (RB_UNLIKELY(argc != 2)) {
        ids[0] = id_requested;
        ids[1] = id_at;
        split_args(argc, argv, 2, 2, ids, 2, kw);
    }
    const uint8_t *c;
    size_t cn;
    VALUE ck;
    key_arg(argv[0], &c, &cn, &ck, "customer", false);
    uint64_t usage = count_arg(argv[1], "usage", argc == 2);
    uint64_t requested = kw[0] == Qundef ? 1 : count_arg(kw[0], "requested", false);
    bool has_at = kw[1] != Qundef && !NIL_P(kw[1]);
    int64_t t = has_at ? at_arg(kw[1]) : 0;
    entitle_engine *e = feature_engine(f);
    bool r = has_at ? entitle_engine_feature_allows_at(e, f->handle, c, cn, usage, requested, t)
                    : entitle_engine_feature_allows(e, f->handle, c, cn, usage, requested);
    RB_GC_GUARD(ck);
    return r ? Qtrue : Qfalse;
}

/* call-seq: feature.check(customer, at: nil) -> Entitle::Decision (as Engine#check) */
static VALUE
feature_check(int argc, VALUE *argv, VALUE self)
{
    feature_data *f = feature_get(self);
    VALUE at = Qundef;
    if (RB_UNLIKELY(argc != 1)) {
        split_args(argc, argv, 1, 1, at_ids, 1, &at);
    }
    const uint8_t *c;
    size_t cn;
    VALUE ck;
    key_arg(argv[0], &c, &cn, &ck, "customer", argc == 1);
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    entitle_engine *e = feature_engine(f);
    entitle_decision out;
    entitle_result r = has_at ? entitle_engine_feature_check_at(e, f->handle, c, cn, t, &out)
                              : entitle_engine_feature_check(e, f->handle, c, cn, &out);
    RB_GC_GUARD(ck);
    if (r != ENTITLE_RESULT_OK) {
        raise_result(r);
    }
    return decision_new(&out);
}

/* Decisions out of a batch call as an Array. */
static VALUE
decisions_array(const entitle_decision *out, size_t n)
{
    VALUE list = rb_ary_new_capa((long)n);
    for (size_t i = 0; i < n; i++) {
        rb_ary_push(list, decision_new(&out[i]));
    }
    return list;
}

/*
 * call-seq: feature.check_many(customers, at: nil) -> Array of Entitle::Decision
 *
 * Decides the feature for every customer of +customers+ (an Array of Strings or Symbols) in one
 * call into the library, all from the same content version; the i-th Decision answers the i-th
 * customer. For customers spread over a large snapshot this costs a fraction of as many #check
 * calls (their memory loads overlap).
 */
static VALUE
feature_check_many(int argc, VALUE *argv, VALUE self)
{
    feature_data *f = feature_get(self);
    VALUE at = Qundef;
    split_args(argc, argv, 1, 1, at_ids, 1, &at);
    VALUE customers = argv[0];
    if (!RB_TYPE_P(customers, T_ARRAY)) {
        rb_raise(rb_eTypeError, "customers must be an Array, not %" PRIsVALUE, rb_obj_class(customers));
    }
    /* Every id converted first (into `keys`, which keeps transcoded Strings alive), then packed. */
    long n = RARRAY_LEN(customers);
    VALUE keys = rb_ary_new_capa(n);
    size_t total = 0;
    for (long i = 0; i < n; i++) {
        const uint8_t *c;
        size_t cn;
        VALUE ck;
        key_arg(RARRAY_AREF(customers, i), &c, &cn, &ck, "customer", false);
        rb_ary_push(keys, ck);
        total += cn;
    }
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    VALUE ids_buf = rb_str_buf_new((long)total);
    VALUE ends_buf = rb_str_buf_new((long)((size_t)n * sizeof(size_t)));
    VALUE out_buf = rb_str_buf_new((long)((size_t)n * sizeof(entitle_decision)));
    uint8_t *ids = (uint8_t *)RSTRING_PTR(ids_buf);
    size_t *ends = (size_t *)RSTRING_PTR(ends_buf);
    entitle_decision *out = (entitle_decision *)RSTRING_PTR(out_buf);
    size_t at_byte = 0;
    for (long i = 0; i < n; i++) {
        VALUE k = RARRAY_AREF(keys, i);
        memcpy(ids + at_byte, RSTRING_PTR(k), (size_t)RSTRING_LEN(k));
        at_byte += (size_t)RSTRING_LEN(k);
        ends[i] = at_byte;
    }
    entitle_engine *e = feature_engine(f);
    entitle_result r =
        has_at ? entitle_engine_check_customers_at(e, f->handle, ids, total, ends, (size_t)n, t, out)
               : entitle_engine_check_customers(e, f->handle, ids, total, ends, (size_t)n, out);
    if (r != ENTITLE_RESULT_OK) {
        raise_result(r);
    }
    VALUE list = decisions_array(out, (size_t)n);
    RB_GC_GUARD(keys);
    RB_GC_GUARD(ids_buf);
    RB_GC_GUARD(ends_buf);
    RB_GC_GUARD(out_buf);
    return list;
}

/*
 * call-seq: engine.check_features(customer, features, at: nil) -> Array of Entitle::Decision
 *
 * Decides every feature of +features+ (an Array of Entitle::Feature handles of this engine) for
 * +customer+ in one call into the library, all from the same content version; the i-th Decision
 * answers the i-th feature.
 */
static VALUE
engine_check_features(int argc, VALUE *argv, VALUE self)
{
    VALUE at = Qundef;
    split_args(argc, argv, 2, 2, at_ids, 1, &at);
    const uint8_t *c;
    size_t cn;
    VALUE ck;
    key_arg(argv[0], &c, &cn, &ck, "customer", false);
    VALUE features = argv[1];
    if (!RB_TYPE_P(features, T_ARRAY)) {
        rb_raise(rb_eTypeError, "features must be an Array of Entitle::Feature, not %" PRIsVALUE,
                 rb_obj_class(features));
    }
    long n = RARRAY_LEN(features);
    VALUE handles_buf = rb_str_buf_new((long)((size_t)n * sizeof(entitle_feature)));
    VALUE out_buf = rb_str_buf_new((long)((size_t)n * sizeof(entitle_decision)));
    entitle_feature *handles = (entitle_feature *)RSTRING_PTR(handles_buf);
    for (long i = 0; i < n; i++) {
        VALUE item = RARRAY_AREF(features, i);
        if (!rb_typeddata_is_kind_of(item, &feature_type)) {
            rb_raise(rb_eTypeError, "features[%ld] must be an Entitle::Feature, not %" PRIsVALUE, i,
                     rb_obj_class(item));
        }
        const feature_data *f = RTYPEDDATA_DATA(item);
        if (f->engine != self) {
            rb_raise(rb_eArgError, "features[%ld] (%" PRIsVALUE ") belongs to another engine", i,
                     f->key);
        }
        handles[i] = f->handle;
    }
    bool has_at = at != Qundef && !NIL_P(at);
    int64_t t = has_at ? at_arg(at) : 0;
    entitle_engine *e = live(self);
    entitle_decision *out = (entitle_decision *)RSTRING_PTR(out_buf);
    entitle_result r =
        has_at ? entitle_engine_check_features_at(e, c, cn, handles, (size_t)n, t, out)
               : entitle_engine_check_features(e, c, cn, handles, (size_t)n, out);
    RB_GC_GUARD(ck);
    if (r != ENTITLE_RESULT_OK) {
        raise_result(r);
    }
    VALUE list = decisions_array(out, (size_t)n);
    RB_GC_GUARD(handles_buf);
    RB_GC_GUARD(out_buf);
    return list;
}

/* ---------------------------------------------------------------------------------------------
 * Module functions
 */

/* call-seq: Entitle.library_version -> String (the linked libentitle's version) */
static VALUE
entitle_library_version(VALUE mod)
{
    (void)mod;
    return rb_str_freeze(rb_utf8_str_new_cstr(entitle_version()));
}

static VALUE
sym(const char *name)
{
    return ID2SYM(rb_intern(name));
}

void
Init_entitle_ext(void)
{
#ifdef HAVE_RB_EXT_RACTOR_SAFE
    rb_ext_ractor_safe(true);
#endif
    pthread_atfork(registry_prepare, registry_parent, registry_child);

    id_at = rb_intern("at");
    id_requested = rb_intern("requested");
    id_code = rb_intern("@code");
    enc_utf8 = rb_utf8_encindex();
    enc_usascii = rb_usascii_encindex();
    enc_binary = rb_ascii8bit_encindex();

    mEntitle = rb_define_module("Entitle");
    /* The classes of lib/entitle/errors.rb, loaded before this extension. */
    eError = rb_const_get(mEntitle, rb_intern("Error"));
    eInvalidArgument = rb_const_get(mEntitle, rb_intern("InvalidArgumentError"));
    ePanic = rb_const_get(mEntitle, rb_intern("PanicError"));
    eFile = rb_const_get(mEntitle, rb_intern("FileError"));
    eCatalog = rb_const_get(mEntitle, rb_intern("CatalogError"));
    eFormat = rb_const_get(mEntitle, rb_intern("FormatError"));
    eDelta = rb_const_get(mEntitle, rb_intern("DeltaError"));
    eConfig = rb_const_get(mEntitle, rb_intern("ConfigError"));
    eTimeout = rb_const_get(mEntitle, rb_intern("TimeoutError"));
    eClosed = rb_const_get(mEntitle, rb_intern("ClosedError"));
    /* Classes defined in Ruby are not pinned: GC.compact could move them and leave these
     * variables pointing at garbage. Registering them marks and pins them. */
    const VALUE errors[] = {eError,  eInvalidArgument, ePanic,  eFile,    eCatalog,
                            eFormat, eDelta,           eConfig, eTimeout, eClosed};
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        rb_gc_register_mark_object(errors[i]);
    }

    float_infinity = rb_const_get(rb_cFloat, rb_intern("INFINITY"));
    rb_gc_register_mark_object(float_infinity);

    static const uint32_t reasons[N_REASONS] = {
        ENTITLE_REASON_DEFAULT, ENTITLE_REASON_SUBSCRIPTION, ENTITLE_REASON_OVERRIDE,
        ENTITLE_REASON_CUSTOMER_NOT_FOUND, ENTITLE_REASON_FEATURE_NOT_FOUND};
    for (int i = 0; i < N_REASONS; i++) {
        reason_syms[reasons[i]] = sym(entitle_reason_name(reasons[i]));
    }
    sym_flag = sym("flag");
    sym_limit = sym("limit");
    sym_feature_type = sym("feature_type");
    sym_enabled = sym("enabled");
    sym_limit_key = sym("limit");
    sym_reason = sym("reason");
    sym_version = sym("version");
    sym_starting = sym(entitle_sync_state_name(ENTITLE_SYNC_STATE_STARTING));
    sym_ready = sym(entitle_sync_state_name(ENTITLE_SYNC_STATE_READY));
    sym_stale = sym(entitle_sync_state_name(ENTITLE_SYNC_STATE_STALE));
    sym_failed = sym(entitle_sync_state_name(ENTITLE_SYNC_STATE_FAILED));
    sym_unknown = sym("unknown");

    rb_define_module_function(mEntitle, "library_version", entitle_library_version, 0);

    cEngine = rb_define_class_under(mEntitle, "Engine", rb_cObject);
    rb_undef_alloc_func(cEngine);
    rb_undef_method(CLASS_OF(cEngine), "new"); /* made by from_file, connect, ... */
    rb_define_singleton_method(cEngine, "from_file", engine_s_from_file, 1);
    rb_define_singleton_method(cEngine, "from_snapshot", engine_s_from_snapshot, 1);
    rb_define_singleton_method(cEngine, "_from_catalog_json", engine_s_from_catalog_json, 1);
    rb_define_singleton_method(cEngine, "_connect", engine_s_connect, 5);
    rb_define_singleton_method(cEngine, "__after_fork", engine_s_after_fork, 0);
    rb_define_singleton_method(cEngine, "__live_count", engine_s_live_count, 0);
    rb_define_method(cEngine, "enabled?", engine_enabled_p, -1);
    rb_define_method(cEngine, "limit", engine_limit, -1);
    rb_define_method(cEngine, "allows?", engine_allows_p, -1);
    rb_define_method(cEngine, "check", engine_check, -1);
    rb_define_method(cEngine, "entitlements", engine_entitlements, -1);
    rb_define_method(cEngine, "version", engine_version, 0);
    rb_define_method(cEngine, "replace", engine_replace, 1);
    rb_define_method(cEngine, "replace_file", engine_replace_file, 1);
    rb_define_method(cEngine, "apply_delta", engine_apply_delta, 1);
    rb_define_method(cEngine, "wait_ready", engine_wait_ready, -1);
    rb_define_method(cEngine, "_status_fields", engine_status_fields, 0);
    rb_define_method(cEngine, "_next_event", engine_next_event, 2);
    rb_define_method(cEngine, "close", engine_close, 0);
    rb_define_method(cEngine, "closed?", engine_closed_p, 0);
    rb_define_method(cEngine, "syncing?", engine_syncing_p, 0);

    cDecision = rb_define_class_under(mEntitle, "Decision", rb_cObject);
    rb_undef_alloc_func(cDecision);
    rb_undef_method(CLASS_OF(cDecision), "new"); /* made by Engine#check */
    rb_define_method(cDecision, "feature_type", decision_feature_type, 0);
    rb_define_method(cDecision, "enabled?", decision_enabled_p, 0);
    rb_define_method(cDecision, "unlimited?", decision_unlimited_p, 0);
    rb_define_method(cDecision, "limit", decision_limit, 0);
    rb_define_method(cDecision, "reason", decision_reason, 0);
    rb_define_method(cDecision, "version", decision_version, 0);
    rb_define_method(cDecision, "to_h", decision_to_h, 0);
    rb_define_method(cDecision, "==", decision_eq, 1);
    rb_define_method(cDecision, "eql?", decision_eq, 1);
    rb_define_method(cDecision, "hash", decision_hash, 0);
    cFeature = rb_define_class_under(mEntitle, "Feature", rb_cObject);
    rb_undef_alloc_func(cFeature);
    rb_undef_method(CLASS_OF(cFeature), "new"); /* made by Engine#feature */
    rb_define_method(cFeature, "key", feature_key, 0);
    rb_define_method(cFeature, "engine", feature_engine_reader, 0);
    rb_define_method(cFeature, "enabled?", feature_enabled_p, -1);
    rb_define_method(cFeature, "limit", feature_limit, -1);
    rb_define_method(cFeature, "allows?", feature_allows_p, -1);
    rb_define_method(cFeature, "check", feature_check, -1);
    rb_define_method(cFeature, "check_many", feature_check_many, -1);
    rb_define_method(cEngine, "feature", engine_feature, 1);
    rb_define_method(cEngine, "check_features", engine_check_features, -1);
}
