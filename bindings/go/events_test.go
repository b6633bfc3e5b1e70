package entitle_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

// recorder is a slog.Handler that keeps every record, for the tests.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// find gives the attributes of the first record with message msg that has every attribute of want.
func (r *recorder) find(msg string, want map[string]string) (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if rec.Message != msg {
			continue
		}
		attrs := map[string]string{"level": rec.Level.String()}
		rec.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		match := true
		for k, v := range want {
			if attrs[k] != v {
				match = false
			}
		}
		if match {
			return attrs, true
		}
	}
	return nil, false
}

func TestSyncEventsGoToTheLogger(t *testing.T) {
	edge := newEdge(t)
	rec := &recorder{}
	e := connect(t, entitle.SyncConfig{URL: edge.url, MaxBackoff: 200 * time.Millisecond, Logger: slog.New(rec)})
	if !ready(t, e, 20*time.Second) {
		t.Fatal("not ready")
	}
	eventually(t, 10*time.Second, "the first version to be logged", func() bool {
		_, ok := rec.find("entitle: content version changed", map[string]string{"new_version": "1"})
		return ok
	})
	edge.publish(testCatalog(60))
	eventually(t, 20*time.Second, "the change to be logged", func() bool {
		_, ok := rec.find("entitle: content version changed", map[string]string{"old_version": "1", "new_version": "2", "level": "INFO"})
		return ok
	})
	edge.stop()
	eventually(t, 20*time.Second, "the failure to be logged", func() bool {
		attrs, ok := rec.find("entitle: sync failed", map[string]string{"level": "WARN"})
		return ok && attrs["message"] != ""
	})
	// The application's own updates are events too.
	s := buildSnapshots(t)
	if err := e.Replace(s.v1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the replacement to be logged", func() bool {
		_, ok := rec.find("entitle: content version changed", map[string]string{"old_version": "2", "new_version": "1"})
		return ok
	})
}

// The goroutine that waits for events ends with Close, and with the cleanup of an engine dropped
// without Close.
func TestEventGoroutineEnds(t *testing.T) {
	settle()
	base := runtime.NumGoroutine()
	rec := &recorder{}
	cfg := entitle.SyncConfig{URL: "http://127.0.0.1:9", Logger: slog.New(rec)}
	e, err := entitle.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.NumGoroutine() <= base {
		t.Fatal("no goroutine waits for events")
	}
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v", took)
	}
	eventually(t, 5*time.Second, "the event goroutine to end after Close", func() bool { return runtime.NumGoroutine() <= base })

	func() {
		dropped, err := entitle.Connect(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = dropped.Version()
	}()
	eventually(t, 10*time.Second, "the cleanup to end the event goroutine", func() bool {
		settle()
		return runtime.NumGoroutine() <= base
	})
}

func TestNextEvent(t *testing.T) {
	s := buildSnapshots(t)
	e, err := entitle.FromSnapshot(s.v1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	if _, err := e.NextEvent(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no event yet: %v", err)
	}
	cancel()
	if err := e.ApplyDelta(s.delta); err != nil {
		t.Fatal(err)
	}
	ev, err := e.NextEvent(t.Context(), 0)
	if err != nil || ev.Kind != entitle.EventVersionChanged || ev.OldVersion != 1 || ev.NewVersion != 2 || ev.Seq == 0 || ev.At.IsZero() {
		t.Fatalf("after a delta: %+v, %v", ev, err)
	}
	// A waiter is woken by the next change, and by Close.
	got := make(chan entitle.Event, 1)
	go func() {
		next, _ := e.NextEvent(context.Background(), ev.Seq)
		got <- next
	}()
	time.Sleep(100 * time.Millisecond)
	if err := e.Replace(s.v1); err != nil {
		t.Fatal(err)
	}
	select {
	case next := <-got:
		if next.Seq != ev.Seq+1 || next.OldVersion != 2 || next.NewVersion != 1 {
			t.Errorf("the next event: %+v", next)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not woken by the change")
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.NextEvent(context.Background(), ev.Seq+1)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	_ = e.Close()
	select {
	case err := <-done:
		if !errors.Is(err, entitle.ErrClosed) {
			t.Errorf("after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the wait")
	}
}
