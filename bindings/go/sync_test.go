package entitle_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

// Engines that follow a real edge: `entitle serve` on 127.0.0.1 (a free port).

const poll = 100 * time.Millisecond

func connect(t *testing.T, cfg entitle.SyncConfig) *entitle.Engine {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = poll
	}
	e, err := entitle.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func ready(t *testing.T, e *entitle.Engine, within time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	return e.WaitReady(ctx)
}

func TestSyncFollowsTheEdge(t *testing.T) {
	edge := newEdge(t)
	e := connect(t, entitle.SyncConfig{URL: edge.url})
	if !ready(t, e, 20*time.Second) {
		t.Fatalf("not ready: %+v", e.Status())
	}
	if got := e.Limit("cus_pro", "projects"); got.Value != 50 {
		t.Fatalf("projects = %v", got)
	}
	st := e.Status()
	if st.State != entitle.SyncReady || !st.Syncing || !st.HasData() || st.Version != 1 ||
		!st.HasEdgeVersion || st.EdgeVersion != 1 || st.LastError != "" || st.SnapshotsFetched != 1 ||
		st.LastSuccess.IsZero() || st.Lineage == "" || !st.HasDataAge {
		t.Errorf("status when ready: %+v", st)
	}

	edge.publish(testCatalog(60))
	eventually(t, 20*time.Second, "version 2", func() bool { return e.Limit("cus_pro", "projects").Value == 60 })
	if e.Version() != 2 || e.Check("cus_pro", "projects").Version != 2 {
		t.Errorf("version %d after the change", e.Version())
	}
	eventually(t, 10*time.Second, "the delta to be counted", func() bool { return e.Status().DeltasApplied == 1 })
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); st.State != entitle.SyncClosed || !st.Syncing {
		t.Errorf("status after close: %+v", st)
	}
}

func TestSyncLongPoll(t *testing.T) {
	edge := newEdge(t)
	// With a 30 s poll interval only the long-poll can bring the change within the wait.
	e := connect(t, entitle.SyncConfig{URL: edge.url, LongPoll: 10 * time.Second, PollInterval: 30 * time.Second})
	if !ready(t, e, 20*time.Second) {
		t.Fatal("not ready")
	}
	eventually(t, 10*time.Second, "long-poll to be honored", func() bool { return e.Status().LongPoll })
	edge.publish(testCatalog(61))
	eventually(t, 15*time.Second, "the long-polled change", func() bool { return e.Limit("cus_pro", "projects").Value == 61 })
}

func TestWaitReadyHonorsItsDeadline(t *testing.T) {
	// Port 9 (discard) on loopback: nothing listens, connections are refused at once.
	e := connect(t, entitle.SyncConfig{URL: "http://127.0.0.1:9", MaxBackoff: 200 * time.Millisecond})
	start := time.Now()
	if ready(t, e, 300*time.Millisecond) {
		t.Fatal("ready without an edge")
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 5*time.Second {
		t.Errorf("WaitReady returned after %v for a 300ms deadline", took)
	}
	// A cancelled context ends the wait too.
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if e.WaitReady(ctx) {
		t.Fatal("ready without an edge")
	}
	eventually(t, 10*time.Second, "a failure to be reported", func() bool { return e.Status().Failures >= 1 })
	st := e.Status()
	if st.HasData() || (st.State != entitle.SyncStarting && st.State != entitle.SyncFailed) {
		t.Errorf("state without data: %+v", st)
	}
	if !strings.Contains(st.LastError, "127.0.0.1:9") || st.LastErrorAt.IsZero() || st.ConsecutiveFailures < 1 {
		t.Errorf("the failure is not described: %+v", st)
	}
	// Until data arrives every feature is unknown.
	if d := e.Check("cus_pro", "sso"); d.Reason != entitle.ReasonFeatureNotFound || d.Enabled {
		t.Errorf("answer without data: %+v", d)
	}
}

func TestSyncEdgeDownAndWarmStart(t *testing.T) {
	edge := newEdge(t)
	cache := t.TempDir()
	first := connect(t, entitle.SyncConfig{URL: edge.url, CacheDir: cache})
	if !ready(t, first, 20*time.Second) || first.Status().WarmStart {
		t.Fatalf("first engine: %+v", first.Status())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(cache); len(entries) == 0 {
		t.Fatal("nothing was written to the cache directory")
	}

	// A running engine keeps serving its data when the edge goes down.
	running := connect(t, entitle.SyncConfig{URL: edge.url, MaxBackoff: 200 * time.Millisecond})
	if !ready(t, running, 20*time.Second) {
		t.Fatal("not ready")
	}
	edge.stop()
	eventually(t, 20*time.Second, "the edge to be seen down", func() bool { return running.Status().Failures >= 1 })
	if running.Limit("cus_pro", "projects").Value != 50 || !running.Status().HasData() {
		t.Error("lost its data when the edge went down")
	}

	// A new engine with the cache serves at once, without the edge.
	warm := connect(t, entitle.SyncConfig{URL: edge.url, CacheDir: cache, MaxBackoff: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	if !warm.WaitReady(ctx) {
		t.Fatal("a warm start is ready at once")
	}
	if st := warm.Status(); !st.WarmStart || st.Version != 1 {
		t.Errorf("warm status: %+v", st)
	}
	if warm.Limit("cus_pro", "projects").Value != 50 {
		t.Error("the cached data is not served")
	}
	eventually(t, 20*time.Second, "the edge to be seen down", func() bool { return warm.Status().Failures >= 1 })
	if warm.Limit("cus_pro", "projects").Value != 50 {
		t.Error("an unreachable edge hid the cached data")
	}
}

// An artifact above MaxArtifactBytes is refused: the engine gets no content and says why.
func TestMaxArtifactBytes(t *testing.T) {
	edge := newEdge(t)
	e := connect(t, entitle.SyncConfig{URL: edge.url, MaxArtifactBytes: 64, MaxBackoff: 200 * time.Millisecond})
	eventually(t, 20*time.Second, "the refusal to be reported", func() bool { return e.Status().Failures >= 1 })
	st := e.Status()
	if st.HasData() || st.LastError == "" || e.Check("cus_pro", "sso").Reason != entitle.ReasonFeatureNotFound {
		t.Errorf("a snapshot over the limit was not refused: %+v", st)
	}
	// The same edge with room for it.
	roomy := connect(t, entitle.SyncConfig{URL: edge.url, MaxArtifactBytes: 1 << 20})
	if !ready(t, roomy, 20*time.Second) || roomy.Limit("cus_pro", "projects").Value != 50 {
		t.Errorf("a snapshot under the limit was not loaded: %+v", roomy.Status())
	}
}

// On an engine that syncs, content whose feature list changed arrives in the background: lookups
// by key answer from it at once, new features included, and the engine then takes handles for the
// new feature list (the old ones would find their keys again on every call).
func TestSyncRefreshesFeatureHandles(t *testing.T) {
	edge := newEdge(t)
	e := connect(t, entitle.SyncConfig{URL: edge.url})
	if !ready(t, e, 20*time.Second) {
		t.Fatalf("not ready: %+v", e.Status())
	}
	if !e.Enabled("cus_pro", "sso") || e.Limit("cus_pro", "projects").Value != 50 || e.Enabled("cus_pro", "audit_log") {
		t.Fatal("version 1")
	}
	keysAre := func(want ...string) func() bool {
		return func() bool {
			keys, stale := entitle.FeatureKeys(e)
			return slices.Equal(keys, want) && stale == 0
		}
	}
	eventually(t, 10*time.Second, "handles for version 1's features", keysAre("api_calls", "projects", "seats", "sso"))
	// The same catalog with one more feature, first in the list.
	var catalog map[string]any
	if err := json.Unmarshal(testCatalog(60), &catalog); err != nil {
		t.Fatal(err)
	}
	catalog["features"] = append([]any{map[string]any{"key": "audit_log", "type": "flag", "default": true}},
		catalog["features"].([]any)...)
	changed, err := json.Marshal(catalog)
	if err != nil {
		t.Fatal(err)
	}
	edge.publish(changed)
	eventually(t, 20*time.Second, "version 2", func() bool { return e.Version() == 2 })
	if !e.Enabled("cus_pro", "audit_log") || e.Limit("cus_pro", "projects").Value != 60 || !e.Enabled("cus_pro", "sso") {
		t.Error("version 2 by key")
	}
	eventually(t, 10*time.Second, "handles for version 2's features",
		keysAre("api_calls", "audit_log", "projects", "seats", "sso"))
}
