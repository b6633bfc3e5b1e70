//go:build cgo

package entitle

/*
#cgo CFLAGS: -I${SRCDIR}/lib -O2
#cgo linux,amd64 LDFLAGS: ${SRCDIR}/lib/linux_amd64/libentitle.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
#cgo linux,arm64 LDFLAGS: ${SRCDIR}/lib/linux_arm64/libentitle.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

// The hot calls neither keep a Go pointer past the call (noescape: the strings and the decision
// can stay on the goroutine's stack) nor call back into Go (nocallback: cgo skips the callback
// bookkeeping).
#cgo noescape goe_enabled
#cgo nocallback goe_enabled
#cgo noescape goe_limit
#cgo nocallback goe_limit
#cgo noescape goe_allows
#cgo nocallback goe_allows
#cgo noescape goe_check
#cgo nocallback goe_check
#cgo noescape goe_feature_enabled
#cgo nocallback goe_feature_enabled
#cgo noescape goe_feature_limit
#cgo nocallback goe_feature_limit
#cgo noescape goe_feature_allows
#cgo nocallback goe_feature_allows
#cgo noescape goe_feature_check
#cgo nocallback goe_feature_check
#cgo nocallback entitle_engine_version
#cgo noescape goe_enabled_unguarded
#cgo nocallback goe_enabled_unguarded

#if !__has_include(<entitle.h>)
#error "bindings/go/lib/entitle.h and lib/<GOOS>_<GOARCH>/libentitle.a are missing: build them with `go generate` in bindings/go (or scripts/build-go-lib.sh); see bindings/go/README.md"
#endif
#include <entitle.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// The result a guarded lookup gives for a closed engine (reserved in the C ABI: CLOSED).
#define GOE_CLOSED ((entitle_result)17)

// The library's error detail is per thread, and a goroutine may move to another thread between
// two cgo calls: so every fallible call goes through a wrapper below that, on failure, copies the
// detail within the same C call. The copy is malloc'ed (failure path only); Go frees it.
typedef struct goe_err {
	char *msg;
	size_t len;
} goe_err;

static void goe_take_detail(goe_err *err) {
	size_t n = entitle_last_error_len();
	err->msg = NULL;
	err->len = 0;
	if (n == 0) return;
	char *buf = malloc(n);
	if (buf == NULL) return;
	size_t written = 0;
	if (entitle_last_error_message((uint8_t *)buf, n, &written) != ENTITLE_RESULT_OK) {
		free(buf);
		return;
	}
	err->msg = buf;
	err->len = written;
}

#define GOE_CALL(call)                               \
	entitle_result r = (call);                       \
	if (r != ENTITLE_RESULT_OK) goe_take_detail(err); \
	return r;

static entitle_result goe_from_file(const uint8_t *p, size_t n, entitle_engine **out, goe_err *err) {
	GOE_CALL(entitle_engine_from_file(p, n, out))
}
static entitle_result goe_from_snapshot(const uint8_t *p, size_t n, entitle_engine **out, goe_err *err) {
	GOE_CALL(entitle_engine_from_snapshot(p, n, out))
}
static entitle_result goe_from_catalog_json(const uint8_t *p, size_t n, entitle_engine **out, goe_err *err) {
	GOE_CALL(entitle_engine_from_catalog_json(p, n, out))
}
static entitle_result goe_connect(const entitle_sync_config *config, entitle_engine **out, goe_err *err) {
	GOE_CALL(entitle_engine_connect(config, out))
}
static entitle_result goe_replace_snapshot(entitle_engine *e, const uint8_t *p, size_t n, goe_err *err) {
	GOE_CALL(entitle_engine_replace_snapshot(e, p, n))
}
static entitle_result goe_replace_file(entitle_engine *e, const uint8_t *p, size_t n, goe_err *err) {
	GOE_CALL(entitle_engine_replace_file(e, p, n))
}
static entitle_result goe_apply_delta(entitle_engine *e, const uint8_t *p, size_t n, uint64_t *version, goe_err *err) {
	GOE_CALL(entitle_engine_apply_delta(e, p, n, version))
}
static entitle_result goe_entitlements_at(const entitle_engine *e, const uint8_t *c, size_t cn, int64_t at,
		entitle_entitlements **out, goe_err *err) {
	GOE_CALL(entitle_engine_entitlements_at(e, c, cn, at, out))
}
static entitle_result goe_status(const entitle_engine *e, entitle_status *out, goe_err *err) {
	GOE_CALL(entitle_engine_status(e, out))
}
static entitle_result goe_status_text(const entitle_engine *e, uint32_t which, uint8_t *buf, size_t cap,
		size_t *len, goe_err *err) {
	GOE_CALL(entitle_engine_status_text(e, which, buf, cap, len))
}
static entitle_result goe_feature(const entitle_engine *e, const uint8_t *p, size_t n, entitle_feature *out,
		goe_err *err) {
	GOE_CALL(entitle_engine_feature(e, p, n, out))
}
static entitle_result goe_check_customers(const entitle_engine *e, entitle_feature f, const uint8_t *ids,
		size_t ids_len, const size_t *ends, size_t count, bool has_at, int64_t at, entitle_decision *out,
		goe_err *err) {
	GOE_CALL(has_at ? entitle_engine_check_customers_at(e, f, ids, ids_len, ends, count, at, out)
	                : entitle_engine_check_customers(e, f, ids, ids_len, ends, count, out))
}
static entitle_result goe_check_features(const entitle_engine *e, const uint8_t *c, size_t cn,
		const entitle_feature *features, size_t count, bool has_at, int64_t at, entitle_decision *out,
		goe_err *err) {
	GOE_CALL(has_at ? entitle_engine_check_features_at(e, c, cn, features, count, at, out)
	                : entitle_engine_check_features(e, c, cn, features, count, out))
}

// Lookups and Close. A lookup must never use an engine that Close has freed, and it must not pay
// for that with atomic read-modify-writes (two per call, one in and one out, cost 15-25 ns here).
// So each hot lookup goes through a wrapper below that marks its thread busy with the engine's
// guard for the duration of the call, with plain stores; Close marks the guard closed, makes every
// thread of the process execute a memory barrier (membarrier(2), which orders those plain stores
// against the closed flag as if each lookup had one), then waits until no thread is marked busy
// with the guard. Where membarrier is unavailable, each lookup executes a fence instead.
// A thread's mark is a slot in a list that Close scans, registered on the thread's first lookup
// and unregistered when the thread exits.
typedef struct goe_guard {
	entitle_engine *engine;
	atomic_int closed;
	atomic_long fallback; // lookups from a thread that could not register a slot (out of memory)
} goe_guard;

typedef struct goe_slot {
	_Atomic(goe_guard *) busy;
	struct goe_slot *prev, *next;
} goe_slot;

enum { GOE_BARRIER_MEMBARRIER = 1, GOE_BARRIER_FENCE = 2 };
static int goe_barrier;
static pthread_once_t goe_once = PTHREAD_ONCE_INIT;
static pthread_key_t goe_key;
static pthread_mutex_t goe_mu = PTHREAD_MUTEX_INITIALIZER;
static goe_slot *goe_slots;
static __thread goe_slot *goe_mine;

static void goe_unregister(void *p) {
	goe_slot *s = p;
	pthread_mutex_lock(&goe_mu);
	if (s->prev != NULL) s->prev->next = s->next; else goe_slots = s->next;
	if (s->next != NULL) s->next->prev = s->prev;
	pthread_mutex_unlock(&goe_mu);
	free(s);
}

static void goe_init(void) {
	pthread_key_create(&goe_key, goe_unregister);
	goe_barrier = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
		? GOE_BARRIER_MEMBARRIER : GOE_BARRIER_FENCE;
}

static goe_slot *goe_register(void) {
	pthread_once(&goe_once, goe_init);
	goe_slot *s = calloc(1, sizeof *s);
	if (s == NULL) return NULL;
	if (pthread_setspecific(goe_key, s) != 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_lock(&goe_mu);
	s->next = goe_slots;
	if (goe_slots != NULL) goe_slots->prev = s;
	goe_slots = s;
	pthread_mutex_unlock(&goe_mu);
	goe_mine = s;
	return s;
}

// Marks this thread busy with g; NULL when g is closed (nothing to undo then).
static inline entitle_engine *goe_enter(goe_guard *g, goe_slot **slot) {
	goe_slot *s = goe_mine;
	if (s == NULL && (s = goe_register()) == NULL) {
		atomic_fetch_add(&g->fallback, 1);
		if (atomic_load(&g->closed)) {
			atomic_fetch_sub(&g->fallback, 1);
			return NULL;
		}
		*slot = NULL;
		return g->engine;
	}
	atomic_store_explicit(&s->busy, g, memory_order_relaxed);
	if (goe_barrier == GOE_BARRIER_MEMBARRIER) {
		atomic_signal_fence(memory_order_seq_cst); // Close's membarrier is the fence
	} else {
		atomic_thread_fence(memory_order_seq_cst);
	}
	if (atomic_load_explicit(&g->closed, memory_order_relaxed)) {
		atomic_store_explicit(&s->busy, NULL, memory_order_release);
		return NULL;
	}
	*slot = s;
	return g->engine;
}

static inline void goe_exit(goe_guard *g, goe_slot *s) {
	if (s == NULL) {
		atomic_fetch_sub(&g->fallback, 1);
	} else {
		atomic_store_explicit(&s->busy, NULL, memory_order_release);
	}
}

static void goe_guard_init(goe_guard *g, entitle_engine *e) {
	g->engine = e;
	atomic_init(&g->closed, 0);
	atomic_init(&g->fallback, 0);
}

// Fails every later lookup on g, then waits for the lookups in flight to end.
static void goe_guard_close(goe_guard *g) {
	pthread_once(&goe_once, goe_init);
	atomic_store(&g->closed, 1);
	if (goe_barrier != GOE_BARRIER_MEMBARRIER ||
	    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
		// Lookups fence themselves (or, if the barrier failed after a successful registration,
		// which the kernel does not do, a lookup's mark reaches memory within this pause).
		atomic_thread_fence(memory_order_seq_cst);
		if (goe_barrier == GOE_BARRIER_MEMBARRIER) {
			struct timespec pause = {0, 1000000};
			nanosleep(&pause, NULL);
		}
	}
	for (;;) {
		bool busy = atomic_load(&g->fallback) != 0;
		pthread_mutex_lock(&goe_mu);
		for (goe_slot *s = goe_slots; s != NULL && !busy; s = s->next) {
			busy = atomic_load_explicit(&s->busy, memory_order_acquire) == g;
		}
		pthread_mutex_unlock(&goe_mu);
		if (!busy) return;
		struct timespec pause = {0, 20000};
		nanosleep(&pause, NULL);
	}
}

// The hot lookups: GOE_CLOSED (a closed engine) or the library's answer. One wrapper per lookup,
// with or without `at`. The guard (C memory) comes as a number: cgo checks at run time every
// argument whose type can hold a pointer to memory that holds pointers (as goe_guard does), which
// costs more than a hundred instructions per call; a uintptr_t is not checked.
#define GOE_LOOKUP(type, closed, call)                  \
	goe_guard *g = (goe_guard *)guard;                   \
	goe_slot *slot;                                      \
	entitle_engine *e = goe_enter(g, &slot);             \
	if (e == NULL) return closed;                        \
	type r = (call);                                     \
	goe_exit(g, slot);                                   \
	return r;

static bool goe_enabled(uintptr_t guard, const uint8_t *c, size_t cn, const uint8_t *f, size_t fn, bool has_at,
		int64_t at) {
	GOE_LOOKUP(bool, false, has_at ? entitle_engine_enabled_at(e, c, cn, f, fn, at)
	                               : entitle_engine_enabled(e, c, cn, f, fn))
}
static uint64_t goe_limit(uintptr_t guard, const uint8_t *c, size_t cn, const uint8_t *f, size_t fn, bool has_at,
		int64_t at) {
	GOE_LOOKUP(uint64_t, 0, has_at ? entitle_engine_limit_at(e, c, cn, f, fn, at)
	                               : entitle_engine_limit(e, c, cn, f, fn))
}
static bool goe_allows(uintptr_t guard, const uint8_t *c, size_t cn, const uint8_t *f, size_t fn, uint64_t usage,
		uint64_t requested, bool has_at, int64_t at) {
	GOE_LOOKUP(bool, false, has_at ? entitle_engine_allows_at(e, c, cn, f, fn, usage, requested, at)
	                               : entitle_engine_allows(e, c, cn, f, fn, usage, requested))
}
static entitle_result goe_check(uintptr_t guard, const uint8_t *c, size_t cn, const uint8_t *f, size_t fn,
		bool has_at, int64_t at, entitle_decision *d) {
	GOE_LOOKUP(entitle_result, GOE_CLOSED, has_at ? entitle_engine_check_at(e, c, cn, f, fn, at, d)
	                                              : entitle_engine_check(e, c, cn, f, fn, d))
}
// The library's call alone, for the benchmarks (the engine as a number, as the guard above).
static bool goe_enabled_unguarded(uintptr_t engine, const uint8_t *c, size_t cn, const uint8_t *f, size_t fn) {
	return entitle_engine_enabled((const entitle_engine *)engine, c, cn, f, fn);
}
static bool goe_feature_enabled(uintptr_t guard, entitle_feature h, const uint8_t *c, size_t cn, bool has_at,
		int64_t at) {
	GOE_LOOKUP(bool, false, has_at ? entitle_engine_feature_enabled_at(e, h, c, cn, at)
	                               : entitle_engine_feature_enabled(e, h, c, cn))
}
static uint64_t goe_feature_limit(uintptr_t guard, entitle_feature h, const uint8_t *c, size_t cn, bool has_at,
		int64_t at) {
	GOE_LOOKUP(uint64_t, 0, has_at ? entitle_engine_feature_limit_at(e, h, c, cn, at)
	                               : entitle_engine_feature_limit(e, h, c, cn))
}
static bool goe_feature_allows(uintptr_t guard, entitle_feature h, const uint8_t *c, size_t cn, uint64_t usage,
		uint64_t requested, bool has_at, int64_t at) {
	GOE_LOOKUP(bool, false, has_at ? entitle_engine_feature_allows_at(e, h, c, cn, usage, requested, at)
	                               : entitle_engine_feature_allows(e, h, c, cn, usage, requested))
}
static entitle_result goe_feature_check(uintptr_t guard, entitle_feature h, const uint8_t *c, size_t cn,
		bool has_at, int64_t at, entitle_decision *d) {
	GOE_LOOKUP(entitle_result, GOE_CLOSED, has_at ? entitle_engine_feature_check_at(e, h, c, cn, at, d)
	                                              : entitle_engine_feature_check(e, h, c, cn, d))
}
*/
import "C"

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"
)

// cStr passes a Go string to C as pointer and length, without a copy: the C side only reads the
// bytes during the call and never keeps the pointer.
func cStr(s string) (*C.uint8_t, C.size_t) {
	return (*C.uint8_t)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

// cBytes passes a byte slice to C as pointer and length, without a copy (read during the call).
func cBytes(b []byte) (*C.uint8_t, C.size_t) {
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b))), C.size_t(len(b))
}

// takeError turns a failed call's code and the detail its wrapper copied into an *Error, and
// frees the copy.
func takeError(code C.entitle_result, detail *C.goe_err) error {
	msg := ""
	if detail.msg != nil {
		msg = C.GoStringN(detail.msg, C.int(detail.len))
		C.free(unsafe.Pointer(detail.msg))
		detail.msg = nil
	}
	return &Error{Code: Code(code), Detail: msg}
}

// closedBit marks an engine as closed in Engine.state; the bits below it count calls in flight.
const closedBit = uint64(1) << 63

// Engine answers entitlement questions from memory. It is safe for concurrent use by any number
// of goroutines, including Close.
//
// Create one with FromFile, FromSnapshot, FromCatalogJSON or Connect, and Close it when done (a
// cleanup releases it if it becomes unreachable first, but only Close says when).
type Engine struct {
	ptr *C.entitle_engine
	// guard is what the hot lookups (Enabled, Limit, Allows, Check and the Feature forms) check
	// instead of state: see goe_enter in the C preamble. Close waits for both.
	guard *C.goe_guard
	// state is closedBit once Close has begun, plus the number of calls in flight other than the
	// hot lookups (which use guard). A call adds 1 before it uses ptr and subtracts 1 after; Close
	// sets closedBit, then waits for the count to drop to 0 before it frees ptr.
	state atomic.Uint64
	// drained receives a token whenever a call leaves a closed engine with no call in flight.
	drained chan struct{}
	// released is closed when Close has freed the engine.
	released chan struct{}
	cleanup  runtime.Cleanup
	syncing  bool
	// events is closed when the goroutine following the engine's events (to log them, and on an
	// engine that syncs to keep keys up to date) has ended; nil when there is none.
	events chan struct{}
	// keys holds the feature handles that lookups by key use: see keyCache.
	keys *keyCache
}

// release is what the cleanup of an engine dropped without Close needs: never the *Engine itself.
type release struct {
	ptr    *C.entitle_engine
	guard  *C.goe_guard
	events chan struct{}
}

func newEngine(ptr *C.entitle_engine, syncing bool, logger *slog.Logger) *Engine {
	// C.malloc never returns nil (it crashes the program, as Go does when out of memory).
	guard := (*C.goe_guard)(C.malloc(C.sizeof_goe_guard))
	C.goe_guard_init(guard, ptr)
	e := &Engine{
		ptr:      ptr,
		guard:    guard,
		drained:  make(chan struct{}, 1),
		released: make(chan struct{}),
		syncing:  syncing,
		keys:     new(keyCache),
	}
	// Handles for the content's features; an engine that syncs changes its content in the
	// background: the goroutine that follows its events brings the handles of e.keys up to date
	// after each change (and logs, with a logger).
	e.keys.refresh(ptr)
	if logger != nil || syncing {
		e.events = make(chan struct{})
		go followEvents(ptr, logger, e.keys, e.events)
	}
	// The backstop for an engine dropped without Close: no call can be in flight once e is
	// unreachable, so freeing is safe then, after the event goroutine (which holds the C engine
	// and e.keys, never e) has been woken by the close and has ended.
	e.cleanup = runtime.AddCleanup(e, func(r release) {
		if r.events != nil {
			C.entitle_engine_close(r.ptr)
			<-r.events
		}
		C.entitle_engine_free(r.ptr)
		C.free(unsafe.Pointer(r.guard))
	}, release{ptr: ptr, guard: guard, events: e.events})
	return e
}

// guardAddr gives the guard as the hot lookups' C wrappers take it: a number (see GOE_LOOKUP). The
// guard is C memory, which the garbage collector neither moves nor frees.
func (e *Engine) guardAddr() C.uintptr_t {
	return C.uintptr_t(uintptr(unsafe.Pointer(e.guard)))
}

// enter registers a call in flight; false means the engine is closed and ptr must not be used.
func (e *Engine) enter() bool {
	if e.state.Add(1)&closedBit != 0 {
		e.exit()
		return false
	}
	return true
}

// exit ends a call registered by enter (also one that found the engine closed).
func (e *Engine) exit() {
	if e.state.Add(^uint64(0)) == closedBit {
		select {
		case e.drained <- struct{}{}:
		default: // a token is already waiting
		}
	}
}

// FromFile creates an engine from a file holding a binary snapshot (as written by `entitle
// build`) or a catalog JSON, told apart by content.
//
// Errors: ErrIO (unreadable file; the detail names it), ErrInvalidCatalog, ErrBadMagic,
// ErrUnsupportedVersion, ErrCorrupt, ErrTooLarge, ErrInvalidUTF8 (the path).
func FromFile(path string) (*Engine, error) {
	p, n := cStr(path)
	var out *C.entitle_engine
	var detail C.goe_err
	if r := C.goe_from_file(p, n, &out, &detail); r != C.ENTITLE_RESULT_OK {
		return nil, takeError(r, &detail)
	}
	return newEngine(out, false, nil), nil
}

// FromSnapshot creates an engine from binary snapshot bytes. The bytes are validated and copied:
// b may be reused as soon as the call returns.
//
// Errors: ErrBadMagic, ErrUnsupportedVersion, ErrCorrupt, ErrTooLarge.
func FromSnapshot(b []byte) (*Engine, error) {
	p, n := cBytes(b)
	var out *C.entitle_engine
	var detail C.goe_err
	if r := C.goe_from_snapshot(p, n, &out, &detail); r != C.ENTITLE_RESULT_OK {
		return nil, takeError(r, &detail)
	}
	return newEngine(out, false, nil), nil
}

// FromCatalogJSON creates an engine by validating and compiling a catalog JSON document (content
// version 0). Meant for tests and small applications; production loads snapshots.
//
// Errors: ErrInvalidCatalog, whose detail starts with the path of the offending value (for
// example `customers[3].overrides.seats: expected a whole number or "unlimited"`); ErrInvalidUTF8;
// ErrTooLarge.
func FromCatalogJSON(b []byte) (*Engine, error) {
	p, n := cBytes(b)
	var out *C.entitle_engine
	var detail C.goe_err
	if r := C.goe_from_catalog_json(p, n, &out, &detail); r != C.ENTITLE_RESULT_OK {
		return nil, takeError(r, &detail)
	}
	return newEngine(out, false, nil), nil
}

// millis converts a configuration duration to whole milliseconds: 0 stays 0 (the default), a
// positive duration below a millisecond counts as one.
func millis(name string, d time.Duration) (C.uint64_t, error) {
	if d < 0 {
		return 0, &Error{Code: CodeInvalidConfig, Detail: name + ": a negative duration"}
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return C.uint64_t(ms), nil
}

// Connect creates an engine that keeps itself up to date from an edge (the files `entitle
// publish` writes, served by `entitle serve` or any static HTTP server), in a background thread.
//
// It returns at once, without waiting for the network: with a snapshot in cfg.CacheDir the engine
// serves it immediately; otherwise every feature is unknown until the first sync succeeds (use
// WaitReady). An unreachable edge is not an error: the engine retries with backoff and reports it
// in Status.
//
// Errors: ErrInvalidConfig (a URL that is not http:// or https://, a token that is not printable
// ASCII, a negative duration), ErrInvalidUTF8, ErrIO (the thread cannot be started).
func Connect(cfg SyncConfig) (*Engine, error) {
	var c C.entitle_sync_config // zero: every option at its default
	// The config is Go memory passed to C, so the strings it points to must not be Go memory:
	// they are copied to the C heap for the call (the library copies them again and keeps none).
	setString := func(s string, ptr **C.uint8_t, n *C.size_t) {
		if s == "" {
			return
		}
		*ptr, *n = (*C.uint8_t)(unsafe.Pointer(C.CString(s))), C.size_t(len(s))
	}
	setString(cfg.URL, &c.url, &c.url_len)
	setString(cfg.Token, &c.token, &c.token_len)
	setString(cfg.CacheDir, &c.cache_dir, &c.cache_dir_len)
	defer func() {
		C.free(unsafe.Pointer(c.url))
		C.free(unsafe.Pointer(c.token))
		C.free(unsafe.Pointer(c.cache_dir))
	}()
	for _, d := range []struct {
		name string
		in   time.Duration
		out  *C.uint64_t
	}{
		{"PollInterval", cfg.PollInterval, &c.poll_interval_ms},
		{"ConnectTimeout", cfg.ConnectTimeout, &c.connect_timeout_ms},
		{"RequestTimeout", cfg.RequestTimeout, &c.request_timeout_ms},
		{"MaxStaleness", cfg.MaxStaleness, &c.max_staleness_ms},
		{"LongPoll", cfg.LongPoll, &c.long_poll_ms},
		{"MaxBackoff", cfg.MaxBackoff, &c.max_backoff_ms},
		{"PersistInterval", cfg.PersistInterval, &c.persist_interval_ms},
	} {
		ms, err := millis(d.name, d.in)
		if err != nil {
			return nil, err
		}
		*d.out = ms
	}
	c.max_artifact_bytes = C.uint64_t(cfg.MaxArtifactBytes)
	var out *C.entitle_engine
	var detail C.goe_err
	if r := C.goe_connect(&c, &out, &detail); r != C.ENTITLE_RESULT_OK {
		return nil, takeError(r, &detail)
	}
	return newEngine(out, true, cfg.Logger), nil
}

// resolve resolves key into a handle on ptr, which the caller keeps live for the call.
func resolve(ptr *C.entitle_engine, key string) (C.entitle_feature, bool) {
	p, n := cStr(key)
	var out C.entitle_feature
	var detail C.goe_err
	if r := C.goe_feature(ptr, p, n, &out, &detail); r != C.ENTITLE_RESULT_OK {
		_ = takeError(r, &detail)
		return out, false
	}
	return out, true
}

// featureKeysOf gives the keys of the features of ptr's content (ptr is live for the call).
func featureKeysOf(ptr *C.entitle_engine) ([]string, bool) {
	var list *C.entitle_entitlements
	var detail C.goe_err
	if r := C.goe_entitlements_at(ptr, nil, 0, 0, &list, &detail); r != C.ENTITLE_RESULT_OK {
		_ = takeError(r, &detail)
		return nil, false
	}
	defer C.entitle_entitlements_free(list)
	n := int(C.entitle_entitlements_len(list))
	keys := make([]string, 0, n)
	for i := 0; i < n; i++ {
		var entry C.entitle_entitlement
		if C.entitle_entitlements_get(list, C.size_t(i), &entry) != C.ENTITLE_RESULT_OK {
			return nil, false
		}
		keys = append(keys, C.GoStringN((*C.char)(unsafe.Pointer(entry.key)), C.int(entry.key_len)))
	}
	return keys, true
}

// checkByKey evaluates feature for customer by key into d, and keeps a handle for feature when it
// is a feature of the content.
// (enabledByKey does the same inline: every call level costs spilled registers.)
func (e *Engine) checkByKey(customer, feature string, hasAt bool, at int64, d *C.entitle_decision) C.entitle_result {
	cp, cn := cStr(customer)
	fp, fn := cStr(feature)
	r := C.goe_check(e.guardAddr(), cp, cn, fp, fn, C.bool(hasAt), C.int64_t(at), d)
	runtime.KeepAlive(e)
	if r == C.ENTITLE_RESULT_OK && d.feature_type != C.ENTITLE_FEATURE_TYPE_UNKNOWN {
		e.keys.learn(e, feature)
	}
	return r
}

// Enabled reports whether customer may use feature now: a flag's value; for a limit, unlimited or
// greater than 0. Unknown features answer false; unknown customers get the feature's default. A
// closed engine answers false.
//
// The hot path: one C call, no lock, no allocation. The engine keeps a feature handle for each key
// found to be a feature (see Feature), so the call costs what a Feature's does.
func (e *Engine) Enabled(customer, feature string) bool {
	return e.enabled(customer, feature, false, 0)
}

// EnabledAt is Enabled evaluated at time at instead of now (whole unix seconds).
func (e *Engine) EnabledAt(customer, feature string, at time.Time) bool {
	return e.enabled(customer, feature, true, at.Unix())
}

func (e *Engine) enabled(customer, feature string, hasAt bool, at int64) bool {
	// Flat (every call level costs spilled registers): the handle and its C call; else, when the
	// engine may still keep a handle for the key, the whole decision by key, which tells whether
	// the key is a feature; else the library's call by key.
	cp, cn := cStr(customer)
	fp, fn := cStr(feature)
	if t := e.keys.cur.Load(); t != nil {
		if h, ok := t.get(feature); ok {
			r := C.goe_feature_enabled(e.guardAddr(), h, cp, cn, C.bool(hasAt), C.int64_t(at))
			runtime.KeepAlive(e) // e's cleanup frees the guard: not before the call has returned
			return bool(r)
		}
		if t.final() {
			b := C.goe_enabled(e.guardAddr(), cp, cn, fp, fn, C.bool(hasAt), C.int64_t(at))
			runtime.KeepAlive(e)
			return bool(b)
		}
	}
	var d C.entitle_decision
	r := C.goe_check(e.guardAddr(), cp, cn, fp, fn, C.bool(hasAt), C.int64_t(at), &d)
	runtime.KeepAlive(e)
	switch r {
	case C.ENTITLE_RESULT_OK:
		if d.feature_type != C.ENTITLE_FEATURE_TYPE_UNKNOWN {
			e.keys.learn(e, feature)
		}
		return bool(d.enabled)
	case C.GOE_CLOSED:
		return false
	}
	// Bytes that are not UTF-8 (or a library failure): the library's call by key answers.
	b := C.goe_enabled(e.guardAddr(), cp, cn, fp, fn, C.bool(hasAt), C.int64_t(at))
	runtime.KeepAlive(e)
	return bool(b)
}

func limitOf(v C.uint64_t) Limit {
	if v == C.ENTITLE_UNLIMITED {
		return Limit{Unlimited: true}
	}
	return Limit{Value: uint64(v)}
}

// Limit gives the limit of feature for customer now. Flags and unknown features give a zero
// Limit (use Check to tell them apart); unknown customers get the feature's default. A closed
// engine gives a zero Limit.
//
// The hot path: one C call, no lock, no allocation (through a feature handle, as Enabled).
func (e *Engine) Limit(customer, feature string) Limit {
	return e.limit(customer, feature, false, 0)
}

// LimitAt is Limit evaluated at time at instead of now (whole unix seconds).
func (e *Engine) LimitAt(customer, feature string, at time.Time) Limit {
	return e.limit(customer, feature, true, at.Unix())
}

func (e *Engine) limit(customer, feature string, hasAt bool, at int64) Limit {
	if t := e.keys.cur.Load(); t != nil {
		if h, ok := t.get(feature); ok {
			cp, cn := cStr(customer)
			r := C.goe_feature_limit(e.guardAddr(), h, cp, cn, C.bool(hasAt), C.int64_t(at))
			runtime.KeepAlive(e)
			return limitOf(r)
		}
		if t.final() {
			return e.limitPlain(customer, feature, hasAt, at)
		}
	}
	return e.limitByKey(customer, feature, hasAt, at)
}

// limitByKey is Limit for a key without a handle.
func (e *Engine) limitByKey(customer, feature string, hasAt bool, at int64) Limit {
	var d C.entitle_decision
	switch e.checkByKey(customer, feature, hasAt, at, &d) {
	case C.ENTITLE_RESULT_OK:
		if d.feature_type != C.ENTITLE_FEATURE_TYPE_LIMIT {
			return Limit{} // flags and unknown features
		}
		return limitOf(d.value)
	case C.GOE_CLOSED:
		return Limit{}
	}
	return e.limitPlain(customer, feature, hasAt, at)
}

// limitPlain is Limit through the library's call by key.
func (e *Engine) limitPlain(customer, feature string, hasAt bool, at int64) Limit {
	cp, cn := cStr(customer)
	fp, fn := cStr(feature)
	r := C.goe_limit(e.guardAddr(), cp, cn, fp, fn, C.bool(hasAt), C.int64_t(at))
	runtime.KeepAlive(e)
	return limitOf(r)
}

// Allows reports whether customer may use requested more of feature on top of usage now: a flag
// allows when enabled; a limit when it is unlimited or usage+requested <= limit (a sum that
// overflows never fits). Pass requested = 1 for "one more?". Unknown features and closed engines
// answer false.
//
// The hot path: one C call, no lock, no allocation (through a feature handle, as Enabled).
func (e *Engine) Allows(customer, feature string, usage, requested uint64) bool {
	return e.allows(customer, feature, usage, requested, false, 0)
}

// AllowsAt is Allows evaluated at time at instead of now (whole unix seconds).
func (e *Engine) AllowsAt(customer, feature string, usage, requested uint64, at time.Time) bool {
	return e.allows(customer, feature, usage, requested, true, at.Unix())
}

func (e *Engine) allows(customer, feature string, usage, requested uint64, hasAt bool, at int64) bool {
	if t := e.keys.cur.Load(); t != nil {
		if h, ok := t.get(feature); ok {
			cp, cn := cStr(customer)
			r := C.goe_feature_allows(e.guardAddr(), h, cp, cn, C.uint64_t(usage), C.uint64_t(requested),
				C.bool(hasAt), C.int64_t(at))
			runtime.KeepAlive(e)
			return bool(r)
		}
		if t.final() {
			return e.allowsPlain(customer, feature, usage, requested, hasAt, at)
		}
	}
	return e.allowsByKey(customer, feature, usage, requested, hasAt, at)
}

// allowsByKey is Allows for a key without a handle.
func (e *Engine) allowsByKey(customer, feature string, usage, requested uint64, hasAt bool, at int64) bool {
	var d C.entitle_decision
	switch e.checkByKey(customer, feature, hasAt, at, &d) {
	case C.ENTITLE_RESULT_OK:
		// As the library decides (SPEC 2.7), from the decision.
		switch d.feature_type {
		case C.ENTITLE_FEATURE_TYPE_FLAG:
			return bool(d.enabled)
		case C.ENTITLE_FEATURE_TYPE_LIMIT:
			sum := usage + requested
			return bool(d.unlimited) || (sum >= usage && sum <= uint64(d.value))
		}
		return false
	case C.GOE_CLOSED:
		return false
	}
	return e.allowsPlain(customer, feature, usage, requested, hasAt, at)
}

// allowsPlain is Allows through the library's call by key.
func (e *Engine) allowsPlain(customer, feature string, usage, requested uint64, hasAt bool, at int64) bool {
	cp, cn := cStr(customer)
	fp, fn := cStr(feature)
	r := C.goe_allows(e.guardAddr(), cp, cn, fp, fn, C.uint64_t(usage), C.uint64_t(requested), C.bool(hasAt),
		C.int64_t(at))
	runtime.KeepAlive(e)
	return bool(r)
}

var reasons = [...]Reason{ReasonDefault, ReasonSubscription, ReasonOverride, ReasonCustomerNotFound,
	ReasonFeatureNotFound}

func decisionOf(d *C.entitle_decision) Decision {
	out := Decision{Enabled: bool(d.enabled), Version: uint64(d.version), Reason: ReasonFeatureNotFound,
		FeatureType: FeatureUnknown}
	if int(d.reason) < len(reasons) {
		out.Reason = reasons[d.reason]
	}
	switch d.feature_type {
	case C.ENTITLE_FEATURE_TYPE_FLAG:
		out.FeatureType = FeatureFlag
	case C.ENTITLE_FEATURE_TYPE_LIMIT:
		out.FeatureType = FeatureLimit
		out.Limit = limitOf(d.value)
	}
	return out
}

// closedDecision is what Check answers on a closed engine.
var closedDecision = Decision{FeatureType: FeatureUnknown, Reason: ReasonClosed}

// Check evaluates feature for customer now and gives the whole decision: type, enabled, limit,
// reason and the version of the content that answered. Unknown customers and features are
// answers, not errors. A closed engine answers with ReasonClosed.
//
// The hot path: one C call, no lock, no allocation (through a feature handle, as Enabled).
func (e *Engine) Check(customer, feature string) Decision {
	return e.check(customer, feature, false, 0)
}

// CheckAt is Check evaluated at time at instead of now (whole unix seconds).
func (e *Engine) CheckAt(customer, feature string, at time.Time) Decision {
	return e.check(customer, feature, true, at.Unix())
}

func (e *Engine) check(customer, feature string, hasAt bool, at int64) Decision {
	var d C.entitle_decision
	if t := e.keys.cur.Load(); t != nil {
		if h, ok := t.get(feature); ok {
			cp, cn := cStr(customer)
			r := C.goe_feature_check(e.guardAddr(), h, cp, cn, C.bool(hasAt), C.int64_t(at), &d)
			runtime.KeepAlive(e)
			if r == C.ENTITLE_RESULT_INVALID_UTF8 {
				return e.featureCheck(Feature{e: e, h: h}, customer, hasAt, at) // asks for "" instead
			}
			return decisionFrom(r, &d)
		}
	}
	r := e.checkByKey(customer, feature, hasAt, at, &d)
	if r == C.ENTITLE_RESULT_INVALID_UTF8 {
		// Bytes that are not UTF-8 can match no key: answer as Enabled and Limit do, for an
		// unknown customer or feature (the empty string is a valid key that is never found).
		if !utf8.ValidString(customer) {
			customer = ""
		}
		if !utf8.ValidString(feature) {
			feature = ""
		}
		r = e.checkCall(customer, feature, hasAt, at, &d)
	}
	return decisionFrom(r, &d)
}

// decisionFrom turns a guarded check's result and decision into a Decision.
func decisionFrom(r C.entitle_result, d *C.entitle_decision) Decision {
	switch r {
	case C.ENTITLE_RESULT_OK:
		return decisionOf(d)
	case C.GOE_CLOSED:
		return closedDecision
	default:
		// Only a panic inside the library is left: fail closed.
		return Decision{FeatureType: FeatureUnknown, Reason: ReasonFeatureNotFound}
	}
}

func (e *Engine) checkCall(customer, feature string, hasAt bool, at int64, d *C.entitle_decision) C.entitle_result {
	cp, cn := cStr(customer)
	fp, fn := cStr(feature)
	r := C.goe_check(e.guardAddr(), cp, cn, fp, fn, C.bool(hasAt), C.int64_t(at), d)
	runtime.KeepAlive(e)
	return r
}

// Entitlements gives every feature's decision for customer now, by feature key. An unknown
// customer gets every feature's default (ReasonCustomerNotFound). A closed engine gives nil.
func (e *Engine) Entitlements(customer string) map[string]Decision {
	return e.EntitlementsAt(customer, time.Now())
}

// EntitlementsAt is Entitlements evaluated at time at instead of now (whole unix seconds).
func (e *Engine) EntitlementsAt(customer string, at time.Time) map[string]Decision {
	if !utf8.ValidString(customer) {
		customer = "" // matches no customer, as for the lookups
	}
	if !e.enter() {
		return nil
	}
	cp, cn := cStr(customer)
	var list *C.entitle_entitlements
	var detail C.goe_err
	r := C.goe_entitlements_at(e.ptr, cp, cn, C.int64_t(at.Unix()), &list, &detail)
	e.exit()
	if r != C.ENTITLE_RESULT_OK {
		_ = takeError(r, &detail) // only a library panic is left; fail closed
		return nil
	}
	defer C.entitle_entitlements_free(list)
	n := int(C.entitle_entitlements_len(list))
	out := make(map[string]Decision, n)
	for i := 0; i < n; i++ {
		var entry C.entitle_entitlement
		if C.entitle_entitlements_get(list, C.size_t(i), &entry) != C.ENTITLE_RESULT_OK {
			continue
		}
		key := C.GoStringN((*C.char)(unsafe.Pointer(entry.key)), C.int(entry.key_len))
		out[key] = decisionOf(&entry.decision)
	}
	return out
}

// Version gives the current content version (of the last snapshot loaded or delta applied); 0 for
// a catalog-built engine or a closed one.
func (e *Engine) Version() uint64 {
	if !e.enter() {
		return 0
	}
	v := C.entitle_engine_version(e.ptr)
	e.exit()
	return uint64(v)
}

// Replace replaces the engine's whole content with snapshot bytes (copied: b may be reused when
// the call returns). Lookups running meanwhile finish on the old content; later ones see the new;
// none sees a mix. On failure the current content is kept. On an engine that syncs, the sync may
// replace the content again at its next poll.
//
// Errors: ErrBadMagic, ErrUnsupportedVersion, ErrCorrupt, ErrTooLarge, ErrClosed.
func (e *Engine) Replace(b []byte) error {
	if !e.enter() {
		return ErrClosed
	}
	p, n := cBytes(b)
	var detail C.goe_err
	r := C.goe_replace_snapshot(e.ptr, p, n, &detail)
	if r == C.ENTITLE_RESULT_OK {
		e.keys.refresh(e.ptr)
	}
	e.exit()
	if r != C.ENTITLE_RESULT_OK {
		return takeError(r, &detail)
	}
	return nil
}

// ReplaceFile replaces the engine's whole content with the snapshot or catalog JSON in the file at
// path, as Replace does.
//
// Errors: as for FromFile, and ErrClosed.
func (e *Engine) ReplaceFile(path string) error {
	if !e.enter() {
		return ErrClosed
	}
	p, n := cStr(path)
	var detail C.goe_err
	r := C.goe_replace_file(e.ptr, p, n, &detail)
	if r == C.ENTITLE_RESULT_OK {
		e.keys.refresh(e.ptr)
	}
	e.exit()
	if r != C.ENTITLE_RESULT_OK {
		return takeError(r, &detail)
	}
	return nil
}

// ApplyDelta applies delta bytes (as written by `entitle diff`) to the current content; the cost
// follows the size of the delta, not of the snapshot. On failure the current content is kept.
//
// Errors: ErrWrongBase (the delta was made for another base), ErrFeatureMismatch, ErrBadMagic,
// ErrUnsupportedVersion, ErrCorrupt, ErrTooLarge, ErrClosed.
func (e *Engine) ApplyDelta(b []byte) error {
	if !e.enter() {
		return ErrClosed
	}
	p, n := cBytes(b)
	var detail C.goe_err
	r := C.goe_apply_delta(e.ptr, p, n, nil, &detail)
	if r == C.ENTITLE_RESULT_OK {
		e.keys.refresh(e.ptr)
	}
	e.exit()
	if r != C.ENTITLE_RESULT_OK {
		return takeError(r, &detail)
	}
	return nil
}

// waitSlice bounds one blocking wait inside the library, so that a cancelled context is noticed
// within this long.
const waitSlice = 50 * time.Millisecond

// WaitReady waits until the engine has content (from its cache or a first successful sync), until
// ctx is done, or until the engine is closed, and reports whether it has content. Engines that do
// not sync have content from the start.
func (e *Engine) WaitReady(ctx context.Context) bool {
	for {
		slice := waitSlice
		if deadline, ok := ctx.Deadline(); ok {
			if left := time.Until(deadline); left < slice {
				slice = max(left, 0)
			}
		}
		if !e.enter() {
			return false
		}
		ready := C.entitle_engine_wait_ready(e.ptr, C.uint64_t(slice/time.Millisecond))
		closed := e.state.Load()&closedBit != 0
		e.exit()
		if ready {
			return true
		}
		if closed || ctx.Err() != nil {
			return false
		}
		if slice == 0 {
			// A deadline shorter than a millisecond: give the context time to expire.
			time.Sleep(time.Millisecond / 4)
		}
	}
}

func unixTime(has C.bool, secs C.int64_t) time.Time {
	if !bool(has) {
		return time.Time{}
	}
	return time.Unix(int64(secs), 0)
}

var syncStates = [...]SyncState{SyncStarting, SyncReady, SyncStale, SyncFailed}

// Status gives the engine's sync status. Engines that do not sync report SyncReady, their
// version and zero counters; a closed engine reports SyncClosed.
func (e *Engine) Status() Status {
	if !e.enter() {
		return Status{State: SyncClosed, Syncing: e.syncing}
	}
	defer e.exit()
	var s C.entitle_status
	var detail C.goe_err
	if r := C.goe_status(e.ptr, &s, &detail); r != C.ENTITLE_RESULT_OK {
		_ = takeError(r, &detail) // only a library panic is left
		return Status{State: SyncFailed, Syncing: e.syncing}
	}
	out := Status{
		State:               SyncFailed,
		Syncing:             bool(s.syncing),
		WarmStart:           bool(s.warm_start),
		LongPoll:            bool(s.long_poll),
		Version:             uint64(s.version),
		LastSuccess:         unixTime(s.has_last_success, s.last_success),
		LastErrorAt:         unixTime(s.has_last_error_at, s.last_error_at),
		HasDataAge:          bool(s.has_data_age),
		HasEdgeVersion:      bool(s.has_edge_version),
		Syncs:               uint64(s.syncs),
		Failures:            uint64(s.failures),
		ConsecutiveFailures: uint64(s.consecutive_failures),
		Updates:             uint64(s.updates),
		DeltasApplied:       uint64(s.deltas_applied),
		SnapshotsFetched:    uint64(s.snapshots_fetched),
	}
	if int(s.state) < len(syncStates) {
		out.State = syncStates[s.state]
	}
	if out.HasDataAge {
		out.DataAge = time.Duration(s.data_age_ms) * time.Millisecond
	}
	if out.HasEdgeVersion {
		out.EdgeVersion = uint64(s.edge_version)
	}
	out.LastError = e.statusText(C.ENTITLE_STATUS_TEXT_LAST_ERROR, int(s.last_error_len))
	out.CacheError = e.statusText(C.ENTITLE_STATUS_TEXT_CACHE_ERROR, int(s.cache_error_len))
	out.Lineage = e.statusText(C.ENTITLE_STATUS_TEXT_LINEAGE, 256)
	return out
}

// statusText copies one status text; the caller holds a call in flight. The text may grow between
// the status and this call, so the buffer grows until it fits.
func (e *Engine) statusText(which C.uint32_t, hint int) string {
	buf := make([]byte, max(hint, 64))
	for {
		var n C.size_t
		var detail C.goe_err
		r := C.goe_status_text(e.ptr, which, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n, &detail)
		switch r {
		case C.ENTITLE_RESULT_OK:
			return string(buf[:n])
		case C.ENTITLE_RESULT_BUFFER_TOO_SMALL:
			_ = takeError(r, &detail)
			buf = make([]byte, 2*len(buf))
		default:
			_ = takeError(r, &detail)
			return ""
		}
	}
}

// Close stops the engine's sync (if any), waits for calls in flight on other goroutines to finish,
// and releases the engine. It is idempotent and safe to call while other goroutines use the
// engine: calls that start after Close began fail closed (false, a zero Limit, ReasonClosed,
// ErrClosed). A WaitReady in progress returns false; the goroutine logging events (with
// SyncConfig.Logger) logs the last ones and ends before Close returns. Close always returns nil; the error is there
// for io.Closer.
func (e *Engine) Close() error {
	if e.state.Or(closedBit)&closedBit != 0 {
		<-e.released // another Close is releasing it: return once it has
		return nil
	}
	// Later lookups fail closed; this returns once the lookups in flight have ended.
	C.goe_guard_close(e.guard)
	// Stopping the sync thread is safe while other calls run, and wakes waiters inside the
	// library so that they leave promptly.
	C.entitle_engine_close(e.ptr)
	if e.events != nil {
		<-e.events // the event goroutine has seen the last event and returned
	}
	for e.state.Load() != closedBit {
		<-e.drained
	}
	e.cleanup.Stop()
	C.entitle_engine_free(e.ptr)
	C.free(unsafe.Pointer(e.guard))
	close(e.released)
	return nil
}

// Closed reports whether Close has been called.
func (e *Engine) Closed() bool {
	return e.state.Load()&closedBit != 0
}

// LibraryVersion gives the version of the linked libentitle, e.g. "0.1.0".
func LibraryVersion() string {
	return C.GoString(C.entitle_version())
}

// Feature is a feature key of an engine, resolved once by (*Engine).Feature, for lookups that skip
// hashing and finding the key on every call: f.Enabled(customer), f.Limit, f.Allows, f.Check, their
// At forms, the batch f.CheckMany(customers), and (*Engine).CheckFeatures.
//
// A plain value: copy it, keep it in a global, share it between goroutines; there is nothing to
// release (it answers from its engine until that is closed, then fails closed like the engine). It stays correct across every snapshot swap and delta: when a later snapshot added,
// removed or reordered features, lookups find the key again (as costly as a lookup by key) and a
// feature that no longer exists answers ReasonFeatureNotFound, never another feature's value.
// The zero Feature belongs to no engine: get one from (*Engine).Feature.
type Feature struct {
	e   *Engine
	h   C.entitle_feature
	key string
}

// Key gives the feature key the handle was resolved from.
func (f Feature) Key() string {
	return f.key
}

// Feature resolves a feature key into a Feature. A key that is not in the current snapshot still
// gives a handle, which answers ReasonFeatureNotFound until a snapshot has the feature. Resolve the
// features an application knows at start-up: the process keeps each distinct key resolved, at most
// 65,535 of them.
//
// Errors: ErrInvalidUTF8 (the key), ErrInvalidParameter (65,535 distinct keys already resolved),
// ErrClosed.
func (e *Engine) Feature(key string) (Feature, error) {
	if !e.enter() {
		return Feature{}, ErrClosed
	}
	p, n := cStr(key)
	var out C.entitle_feature
	var detail C.goe_err
	r := C.goe_feature(e.ptr, p, n, &out, &detail)
	e.exit()
	if r != C.ENTITLE_RESULT_OK {
		return Feature{}, takeError(r, &detail)
	}
	return Feature{e: e, h: out, key: strings.Clone(key)}, nil
}

// Enabled is (*Engine).Enabled for this feature.
func (f Feature) Enabled(customer string) bool {
	return f.enabled(customer, false, 0)
}

// EnabledAt is (*Engine).EnabledAt for this feature.
func (f Feature) EnabledAt(customer string, at time.Time) bool {
	return f.enabled(customer, true, at.Unix())
}

func (f Feature) enabled(customer string, hasAt bool, at int64) bool {
	e := f.e
	cp, cn := cStr(customer)
	r := C.goe_feature_enabled(e.guardAddr(), f.h, cp, cn, C.bool(hasAt), C.int64_t(at))
	runtime.KeepAlive(e)
	return bool(r)
}

// Limit is (*Engine).Limit for this feature.
func (f Feature) Limit(customer string) Limit {
	return f.limit(customer, false, 0)
}

// LimitAt is (*Engine).LimitAt for this feature.
func (f Feature) LimitAt(customer string, at time.Time) Limit {
	return f.limit(customer, true, at.Unix())
}

func (f Feature) limit(customer string, hasAt bool, at int64) Limit {
	e := f.e
	cp, cn := cStr(customer)
	r := C.goe_feature_limit(e.guardAddr(), f.h, cp, cn, C.bool(hasAt), C.int64_t(at))
	runtime.KeepAlive(e)
	return limitOf(r)
}

// Allows is (*Engine).Allows for this feature.
func (f Feature) Allows(customer string, usage, requested uint64) bool {
	return f.allows(customer, usage, requested, false, 0)
}

// AllowsAt is (*Engine).AllowsAt for this feature.
func (f Feature) AllowsAt(customer string, usage, requested uint64, at time.Time) bool {
	return f.allows(customer, usage, requested, true, at.Unix())
}

func (f Feature) allows(customer string, usage, requested uint64, hasAt bool, at int64) bool {
	e := f.e
	cp, cn := cStr(customer)
	r := C.goe_feature_allows(e.guardAddr(), f.h, cp, cn, C.uint64_t(usage), C.uint64_t(requested), C.bool(hasAt),
		C.int64_t(at))
	runtime.KeepAlive(e)
	return bool(r)
}

// Check is (*Engine).Check for this feature.
func (f Feature) Check(customer string) Decision {
	return f.e.featureCheck(f, customer, false, 0)
}

// CheckAt is (*Engine).CheckAt for this feature.
func (f Feature) CheckAt(customer string, at time.Time) Decision {
	return f.e.featureCheck(f, customer, true, at.Unix())
}

func (e *Engine) featureCheck(f Feature, customer string, hasAt bool, at int64) Decision {
	var d C.entitle_decision
	r := e.featureCheckCall(f, customer, hasAt, at, &d)
	if r == C.ENTITLE_RESULT_INVALID_UTF8 {
		// Bytes that are not UTF-8 match no customer: answer as for an unknown one.
		r = e.featureCheckCall(f, "", hasAt, at, &d)
	}
	return decisionFrom(r, &d)
}

func (e *Engine) featureCheckCall(f Feature, customer string, hasAt bool, at int64, d *C.entitle_decision) C.entitle_result {
	cp, cn := cStr(customer)
	r := C.goe_feature_check(e.guardAddr(), f.h, cp, cn, C.bool(hasAt), C.int64_t(at), d)
	runtime.KeepAlive(e)
	return r
}

// CheckMany decides this feature for many customers now, in one call: the i-th decision is
// for customers[i], all from the same content version. The customers' memory loads are issued in
// groups so that their cache misses overlap: for customers spread over a large snapshot this costs
// a fraction of as many single calls. Ids that are not UTF-8 are not found.
//
// Errors: ErrClosed.
func (f Feature) CheckMany(customers []string) ([]Decision, error) {
	return f.e.checkCustomers(f, customers, false, 0)
}

// CheckManyAt is CheckMany evaluated at time at instead of now (whole unix seconds).
func (f Feature) CheckManyAt(customers []string, at time.Time) ([]Decision, error) {
	return f.e.checkCustomers(f, customers, true, at.Unix())
}

func (e *Engine) checkCustomers(f Feature, customers []string, hasAt bool, at int64) ([]Decision, error) {
	if len(customers) == 0 {
		if e.Closed() {
			return nil, ErrClosed
		}
		return []Decision{}, nil
	}
	// The library takes the ids packed end to end, with their end offsets.
	size := 0
	for _, c := range customers {
		size += len(c)
	}
	ids := make([]byte, 0, size)
	ends := make([]C.size_t, len(customers))
	for i, c := range customers {
		ids = append(ids, c...)
		ends[i] = C.size_t(len(ids))
	}
	out := make([]C.entitle_decision, len(customers))
	if !e.enter() {
		return nil, ErrClosed
	}
	ip, in := cBytes(ids)
	var detail C.goe_err
	r := C.goe_check_customers(e.ptr, f.h, ip, in, &ends[0], C.size_t(len(customers)), C.bool(hasAt),
		C.int64_t(at), &out[0], &detail)
	e.exit()
	if r != C.ENTITLE_RESULT_OK {
		return nil, takeError(r, &detail)
	}
	decisions := make([]Decision, len(out))
	for i := range out {
		decisions[i] = decisionOf(&out[i])
	}
	return decisions, nil
}

// CheckFeatures decides many features for one customer now, in one call (the customer is found
// once): the i-th decision is for features[i], all from the same content version. A customer id
// that is not UTF-8 is not found. The features are handles from Feature (of any engine: a handle
// resolved on another engine is looked up again by key).
//
// Errors: ErrClosed.
func (e *Engine) CheckFeatures(customer string, features []Feature) ([]Decision, error) {
	return e.checkFeatures(customer, features, false, 0)
}

// CheckFeaturesAt is CheckFeatures evaluated at time at instead of now (whole unix seconds).
func (e *Engine) CheckFeaturesAt(customer string, features []Feature, at time.Time) ([]Decision, error) {
	return e.checkFeatures(customer, features, true, at.Unix())
}

func (e *Engine) checkFeatures(customer string, features []Feature, hasAt bool, at int64) ([]Decision, error) {
	if len(features) == 0 {
		if e.Closed() {
			return nil, ErrClosed
		}
		return []Decision{}, nil
	}
	if !utf8.ValidString(customer) {
		customer = ""
	}
	handles := make([]C.entitle_feature, len(features))
	for i, f := range features {
		handles[i] = f.h
	}
	out := make([]C.entitle_decision, len(features))
	if !e.enter() {
		return nil, ErrClosed
	}
	cp, cn := cStr(customer)
	var detail C.goe_err
	r := C.goe_check_features(e.ptr, cp, cn, &handles[0], C.size_t(len(features)), C.bool(hasAt),
		C.int64_t(at), &out[0], &detail)
	e.exit()
	if r != C.ENTITLE_RESULT_OK {
		return nil, takeError(r, &detail)
	}
	decisions := make([]Decision, len(out))
	for i := range out {
		decisions[i] = decisionOf(&out[i])
	}
	return decisions, nil
}

// enabledUnguarded is Enabled without the guard that makes Close safe and without the engine's
// feature handles (the library's call by key directly): the benchmarks call it to measure what
// those change. Nothing else may call it.
func (e *Engine) enabledUnguarded(customer, feature string) bool {
	cp, cn := cStr(customer)
	fp, fn := cStr(feature)
	r := C.goe_enabled_unguarded(C.uintptr_t(uintptr(unsafe.Pointer(e.ptr))), cp, cn, fp, fn)
	runtime.KeepAlive(e)
	return bool(r)
}
