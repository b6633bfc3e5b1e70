//go:build cgo

package entitle

/*
#include <entitle.h>
*/
import "C"

import (
	"context"
	"log/slog"
	"time"
	"unsafe"
)

// eventWait bounds one wait for an event inside the library; Close wakes it sooner.
const eventWait = 60_000 // milliseconds

// followEvents follows the engine's events (sync failures and recoveries, version changes,
// staleness, cache problems) until the engine is closed, then closes done: after each it brings
// the feature handles of keys up to date with the content, and passes it to logger when there is
// one. It runs in a goroutine of its own that waits inside the library; it holds the C engine,
// never the *Engine, so that the cleanup can still find an engine dropped without Close
// unreachable (Close and the cleanup wait for done before they free the engine).
func followEvents(ptr *C.entitle_engine, logger *slog.Logger, keys *keyCache, done chan<- struct{}) {
	defer close(done)
	var msg [1024]byte
	var after C.uint64_t
	for {
		var ev C.entitle_event
		var n C.size_t
		r := C.entitle_engine_next_event(ptr, after, eventWait, &ev,
			(*C.uint8_t)(unsafe.Pointer(&msg[0])), C.size_t(len(msg)), &n)
		switch r {
		case C.ENTITLE_RESULT_OK:
		case C.ENTITLE_RESULT_TIMEOUT:
			continue
		default: // closed (or a library failure): no more events
			return
		}
		// Any event (also after a gap, when events were missed) may follow new content.
		keys.refresh(ptr)
		if logger == nil {
			after = ev.seq
			continue
		}
		if missed := uint64(ev.seq) - uint64(after) - 1; after != 0 && missed > 0 {
			logger.Warn("entitle: events missed (the logger fell behind)", "missed", missed)
		}
		after = ev.seq
		logEvent(logger, &ev, string(msg[:n]))
	}
}

func logEvent(logger *slog.Logger, ev *C.entitle_event, message string) {
	attrs := []slog.Attr{
		slog.Uint64("seq", uint64(ev.seq)),
		slog.Time("at", time.UnixMilli(int64(ev.at_ms))),
	}
	if message != "" {
		attrs = append(attrs, slog.String("message", message))
	}
	level, text := slog.LevelInfo, "entitle: event"
	switch ev.kind {
	case C.ENTITLE_EVENT_VERSION_CHANGED:
		text = "entitle: content version changed"
		attrs = append(attrs, slog.Uint64("old_version", uint64(ev.old_version)),
			slog.Uint64("new_version", uint64(ev.new_version)))
	case C.ENTITLE_EVENT_SYNC_FAILED:
		level, text = slog.LevelWarn, "entitle: sync failed"
	case C.ENTITLE_EVENT_SYNC_RECOVERED:
		text = "entitle: sync recovered"
	case C.ENTITLE_EVENT_STALE:
		level, text = slog.LevelWarn, "entitle: content is stale"
	case C.ENTITLE_EVENT_CACHE_ERROR:
		level, text = slog.LevelWarn, "entitle: cache error"
	default:
		attrs = append(attrs, slog.Uint64("kind", uint64(ev.kind)))
	}
	logger.LogAttrs(context.Background(), level, text, attrs...)
}

// EventKind says what an Event is about.
type EventKind string

// The kinds of events.
const (
	// EventVersionChanged: the content version changed (a sync round, Replace or ApplyDelta).
	EventVersionChanged EventKind = "version_changed"
	// EventSyncFailed: a sync round failed; Message says why. The engine keeps its content.
	EventSyncFailed EventKind = "sync_failed"
	// EventSyncRecovered: a sync round succeeded after failures or staleness.
	EventSyncRecovered EventKind = "sync_recovered"
	// EventStale: the content has not been confirmed for longer than MaxStaleness.
	EventStale EventKind = "stale"
	// EventCacheError: the cache file could not be read or written; Message says why.
	EventCacheError EventKind = "cache_error"
	// EventUnknown: a kind this package does not know (from a newer library).
	EventUnknown EventKind = "unknown"
)

// Event is one thing that happened to an engine.
type Event struct {
	// Seq numbers the engine's events from 1; pass it to NextEvent to get the next one.
	Seq uint64
	// Kind says what happened.
	Kind EventKind
	// OldVersion and NewVersion are the versions before and after, for EventVersionChanged; the
	// current version otherwise.
	OldVersion, NewVersion uint64
	// At is when it happened.
	At time.Time
	// Message is the detail (why a sync failed, what the cache problem is); it may be empty.
	Message string
}

func eventKind(k C.uint32_t) EventKind {
	switch k {
	case C.ENTITLE_EVENT_VERSION_CHANGED:
		return EventVersionChanged
	case C.ENTITLE_EVENT_SYNC_FAILED:
		return EventSyncFailed
	case C.ENTITLE_EVENT_SYNC_RECOVERED:
		return EventSyncRecovered
	case C.ENTITLE_EVENT_STALE:
		return EventStale
	case C.ENTITLE_EVENT_CACHE_ERROR:
		return EventCacheError
	}
	return EventUnknown
}

// NextEvent waits for the engine's first event with a sequence number above after (0 the first
// time, then the Seq of the last event handled) until ctx is done or the engine is closed. The
// engine keeps its last 256 events: a caller that fell further behind gets the oldest kept one
// and sees the gap in Seq. Each caller keeps its own position, so any number of goroutines may
// follow the same engine.
//
// Errors: ErrClosed once the engine is closed and every event has been handed out; ctx.Err()
// when ctx is done first.
func (e *Engine) NextEvent(ctx context.Context, after uint64) (Event, error) {
	var msg [1024]byte
	for {
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		slice := waitSlice
		if deadline, ok := ctx.Deadline(); ok {
			slice = min(slice, max(time.Until(deadline), 0))
		}
		if !e.enter() {
			return Event{}, ErrClosed
		}
		var ev C.entitle_event
		var n C.size_t
		r := C.entitle_engine_next_event(e.ptr, C.uint64_t(after), C.uint64_t(slice/time.Millisecond), &ev,
			(*C.uint8_t)(unsafe.Pointer(&msg[0])), C.size_t(len(msg)), &n)
		e.exit()
		switch r {
		case C.ENTITLE_RESULT_OK:
			return Event{Seq: uint64(ev.seq), Kind: eventKind(ev.kind), OldVersion: uint64(ev.old_version),
				NewVersion: uint64(ev.new_version), At: time.UnixMilli(int64(ev.at_ms)),
				Message: string(msg[:n])}, nil
		case C.ENTITLE_RESULT_TIMEOUT:
			if slice == 0 {
				time.Sleep(time.Millisecond / 4) // a deadline under a millisecond away
			}
		case C.ENTITLE_RESULT_CLOSED:
			return Event{}, ErrClosed
		default:
			return Event{}, &Error{Code: Code(r)}
		}
	}
}
