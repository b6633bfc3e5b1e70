package entitle_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

// No leaks across the boundary: resident memory stays flat over a million lookups and over a
// thousand engines created and released (half by Close, half by the cleanup backstop). The
// engines here hold a few thousand customers each, so that a leaked engine shows in the RSS.

func rss(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm on this system")
	}
	pages, err := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// settle runs the garbage collector until pending cleanups have had a chance to run.
func settle() {
	for i := 0; i < 3; i++ {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
}

const mib = 1 << 20

func TestMillionLookupsKeepMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	e := mustEngine(t, 50)
	customers := []string{"cus_pro", "cus_ent", "nobody", "cus_override", "nøbody", "cus_pro\xff"}
	when := time.Unix(at, 0)
	round := func(n int) {
		for i := 0; i < n; i++ {
			c := customers[i%len(customers)]
			e.Enabled(c, "sso")
			e.Enabled(c, "nope")
			e.Limit(c, "api_calls")
			e.Allows(c, "projects", 5, 1)
			e.Check(c, "projects")
			e.CheckAt(c, "nope", when)
			e.AllowsAt(c, "seats", 1, 2, when)
			if i%64 == 0 {
				e.Entitlements(c)
			}
		}
	}
	const perRound = 7
	round(100_000 / perRound)
	settle()
	before := rss(t)
	round(1_000_000 / perRound)
	settle()
	after := rss(t)
	if growth := after - before; growth > 2*mib {
		t.Errorf("RSS grew by %d bytes over a million lookups", growth)
	}
	t.Logf("RSS %d MiB -> %d MiB over 1,000,000 lookups", before/mib, after/mib)
}

func synthSnapshot(t testing.TB, customers int) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "synth.json")
	snap := filepath.Join(dir, "synth.snap")
	runCLI(t, "synth", "--customers", fmt.Sprint(customers), "-o", src)
	runCLI(t, "build", src, "-o", snap)
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestThousandEnginesKeepMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	// glibc's malloc gives each thread that allocates an arena of its own, and goroutines call C
	// from many threads: each arena keeps its own high-water mark, so the RSS wanders by tens of
	// megabytes with no leak at all. With one arena it is flat unless memory leaks, so the test
	// runs in a child process started with MALLOC_ARENA_MAX=1.
	if os.Getenv("ENTITLE_LEAK_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestThousandEnginesKeepMemoryFlat$", "-test.v")
		cmd.Env = append(os.Environ(), "ENTITLE_LEAK_CHILD=1", "MALLOC_ARENA_MAX=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestThousandEnginesKeepMemoryFlat") {
			t.Fatalf("the child process did not run the test:\n%s", out)
		}
		t.Logf("child process:\n%s", out)
		return
	}
	snap := synthSnapshot(t, 5000)
	// Half the engines are closed, the others dropped: those are released by the cleanup once the
	// garbage collector finds them unreachable. Go's collector does not see the library's memory,
	// so it is run every 100 engines here, as a busy program's allocations would make it run.
	cycle := func(n int) {
		for i := 0; i < n; i++ {
			e, err := entitle.FromSnapshot(snap)
			if err != nil {
				t.Fatal(err)
			}
			e.Entitlements("nobody")
			if i%2 == 0 {
				_ = e.Close()
			}
			if i%100 == 99 {
				settle()
			}
		}
		settle()
	}
	// Warm up to the allocator's high-water mark: memory freed is kept for reuse, not returned.
	cycle(200)
	cycle(200)
	before := rss(t)
	for r := 0; r < 5; r++ {
		cycle(200)
		t.Logf("RSS after %d engines: %d KiB", (r+1)*200, rss(t)/1024)
	}
	after := rss(t)

	// The measurement can see a leak: 100 engines kept alive must show.
	kept := make([]*entitle.Engine, 0, 100)
	for i := 0; i < cap(kept); i++ {
		e, err := entitle.FromSnapshot(snap)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, e)
	}
	settle()
	withKept := rss(t)
	for _, e := range kept {
		_ = e.Close()
	}

	perEngine := (withKept - after) / int64(len(kept))
	t.Logf("snapshot %d KiB; RSS %d MiB -> %d MiB over 1,000 engines; %d KiB per engine kept alive",
		len(snap)/1024, before/mib, after/mib, perEngine/1024)
	if perEngine < int64(len(snap))/2 {
		t.Fatalf("an engine kept alive costs %d bytes of RSS: the measurement cannot see leaks", perEngine)
	}
	// Leaking even one engine in a hundred would add 10 engines' worth.
	if growth := after - before; growth > 10*perEngine {
		t.Errorf("RSS grew by %d bytes over 1,000 engines (%d per engine kept alive)", growth, perEngine)
	}
}
