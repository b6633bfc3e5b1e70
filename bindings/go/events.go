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

// logEvents passes the engine's events (sync failures and recoveries, version changes, staleness,
// cache problems) to logger until the engine is closed, then closes done. It runs in a goroutine of
// its own that waits inside the library; it holds the C engine, never the *Engine, so that the
// cleanup can still find an engine dropped without Close unreachable.
func logEvents(ptr *C.entitle_engine, logger *slog.Logger, done chan<- struct{}) {
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
