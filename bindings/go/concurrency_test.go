package entitle_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

// readers is how many goroutines read at once in these tests.
const readers = 64

// 64 goroutines read while another replaces snapshots and applies deltas: every answer is
// entirely v1's (version 1, 50 projects) or entirely v2's (version 2, 60 projects), never a mix.
func TestReadersDuringReplaceAndDeltas(t *testing.T) {
	s := buildSnapshots(t)
	e, err := entitle.FromSnapshot(s.v1)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	var stop atomic.Bool
	var checks atomic.Int64
	seen := [3]atomic.Int64{} // answers seen per version
	errs := make(chan string, readers)
	var wg, started sync.WaitGroup
	for g := 0; g < readers; g++ {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			for !stop.Load() {
				d := e.Check("cus_pro", "projects")
				ok := (d.Version == 1 && d.Limit.Value == 50) || (d.Version == 2 && d.Limit.Value == 60)
				if !ok || d.Reason != entitle.ReasonSubscription {
					errs <- fmt.Sprintf("torn answer: %+v", d)
					return
				}
				seen[d.Version].Add(1)
				limit := e.Limit("cus_pro", "projects").Value
				if limit != 50 && limit != 60 {
					errs <- fmt.Sprintf("limit %d", limit)
					return
				}
				checks.Add(1)
			}
		}()
	}
	started.Wait()
	// At least `rounds` rounds, and on until the readers have seen both versions (bounded).
	deadline := time.Now().Add(20 * time.Second)
	i := 0
	for ; i < rounds || ((seen[1].Load() == 0 || seen[2].Load() == 0) && time.Now().Before(deadline)); i++ {
		if err := e.ApplyDelta(s.delta); err != nil {
			t.Fatalf("round %d: delta: %v", i, err)
		}
		if err := e.Replace(s.v1); err != nil {
			t.Fatalf("round %d: replace v1: %v", i, err)
		}
		if i%2 == 0 {
			if err := e.Replace(s.v2); err != nil {
				t.Fatalf("round %d: replace v2: %v", i, err)
			}
			if err := e.Replace(s.v1); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if seen[1].Load() == 0 || seen[2].Load() == 0 {
		t.Errorf("the readers did not see both versions: v1 %d, v2 %d", seen[1].Load(), seen[2].Load())
	}
	t.Logf("%d checks by %d goroutines over %d rounds of updates", checks.Load(), readers, i)
}

// Close while 64 goroutines are in the middle of every kind of call: nothing crashes, every call
// either answers from the content or fails closed, and Close returns once the engine is released.
func TestCloseRacingReaders(t *testing.T) {
	s := buildSnapshots(t)
	iterations := 10
	if testing.Short() {
		iterations = 3
	}
	for it := 0; it < iterations; it++ {
		e, err := entitle.FromSnapshot(s.v1)
		if err != nil {
			t.Fatal(err)
		}
		sso, err := e.Feature("sso")
		if err != nil {
			t.Fatal(err)
		}
		var started sync.WaitGroup
		var wg sync.WaitGroup
		bad := make(chan string, readers)
		for g := 0; g < readers; g++ {
			wg.Add(1)
			started.Add(1)
			go func() {
				defer wg.Done()
				first := true
				for {
					var closed bool
					switch g % 7 {
					case 0:
						closed = !e.Enabled("cus_pro", "sso")
					case 1:
						l := e.Limit("cus_pro", "projects")
						closed = l.Value == 0
						if !closed && l.Value != 50 {
							bad <- fmt.Sprintf("limit %v", l)
						}
					case 2:
						d := e.Check("cus_pro", "projects")
						closed = d.Reason == entitle.ReasonClosed
					case 3:
						closed = e.Entitlements("cus_pro") == nil
					case 4:
						closed = e.Replace(s.v1) != nil
					case 5:
						closed = !sso.Enabled("cus_pro")
					case 6:
						closed = sso.Check("cus_pro").Reason == entitle.ReasonClosed
					}
					if first {
						started.Done()
						first = false
					}
					runtime.Gosched() // 64 busy goroutines on a few cores: let the closers run
					if closed {
						if !e.Closed() {
							bad <- fmt.Sprintf("goroutine %d failed closed on an open engine", g)
						}
						return
					}
				}
			}()
		}
		started.Wait()
		closers := make(chan error, 3)
		for c := 0; c < 3; c++ { // several goroutines close at once: one releases, all return
			go func() { closers <- e.Close() }()
		}
		for c := 0; c < 3; c++ {
			if err := <-closers; err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		close(bad)
		for msg := range bad {
			t.Fatal(msg)
		}
	}
}

// A WaitReady blocked inside the library returns false when another goroutine closes the engine.
func TestCloseWakesWaitReady(t *testing.T) {
	e, err := entitle.Connect(entitle.SyncConfig{URL: "http://127.0.0.1:9", PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	result := make(chan bool, 1)
	go func() { result <- e.WaitReady(context.Background()) }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case ready := <-result:
		if ready {
			t.Error("WaitReady reported content that never arrived")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitReady did not return after Close")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v", took)
	}
}
