package entitle_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	entitle "example.invalid/entitle/bindings/go"
)

// Benchmarks: `go test -run '^$' -bench . -benchmem` (scripts/bench-go.sh records them).
//
// Enabled for a hot customer (the same id every call: the CPU caches hold everything) and for
// random customers over a snapshot of ENTITLE_BENCH_CUSTOMERS (default 1,000,000) synthetic
// customers (each call misses the caches, as in production), next to the same two loops over a
// map[string]map[string]bool, the floor: what a Go program pays to look a value up in memory
// without crossing into C. Built once under target/go-bench/.

type benchData struct {
	engine *entitle.Engine
	ids    []string // in random order
	floor  map[string]map[string]bool
}

var (
	benchOnce sync.Once
	bench     benchData
)

var idPattern = regexp.MustCompile(`\{"id": "(cus_[^"]*)"`)

func loadBench(b *testing.B) *benchData {
	benchOnce.Do(func() {
		customers := 1_000_000
		if s := os.Getenv("ENTITLE_BENCH_CUSTOMERS"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				b.Fatal(err)
			}
			customers = n
		}
		dir := filepath.Join(repo, "target", "go-bench")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		src := filepath.Join(dir, "synth-"+strconv.Itoa(customers)+".json")
		snap := filepath.Join(dir, "synth-"+strconv.Itoa(customers)+".snap")
		if _, err := os.Stat(snap); err != nil {
			runCLI(b, "synth", "--customers", strconv.Itoa(customers), "-o", src)
			runCLI(b, "build", src, "-o", snap)
		}
		e, err := entitle.FromFile(snap)
		if err != nil {
			b.Fatal(err)
		}
		text, err := os.ReadFile(src)
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range idPattern.FindAllSubmatch(text, -1) {
			bench.ids = append(bench.ids, string(m[1]))
		}
		if len(bench.ids) != customers {
			b.Fatalf("found %d customer ids in %s, want %d", len(bench.ids), src, customers)
		}
		r := rand.New(rand.NewPCG(1, 2))
		r.Shuffle(len(bench.ids), func(i, j int) { bench.ids[i], bench.ids[j] = bench.ids[j], bench.ids[i] })
		bench.floor = make(map[string]map[string]bool, len(bench.ids))
		for _, id := range bench.ids {
			bench.floor[id] = map[string]bool{"sso": e.Enabled(id, "sso"), "api_access": e.Enabled(id, "api_access")}
		}
		bench.engine = e
	})
	if bench.engine == nil {
		b.Fatal("benchmark data not loaded")
	}
	return &bench
}

var sinkBool bool

// threadCPU reads the calling thread's CPU clock (CLOCK_THREAD_CPUTIME_ID).
func threadCPU() time.Duration {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// cpuPerOp also reports "cpu-ns/op": the CPU time of the benchmark's own thread per operation.
// On a shared machine wall time counts the moments the thread waited for a core; its CPU time
// does not, so it moves far less with the load. Use: defer cpuPerOp(b)() before the b.Loop loop.
func cpuPerOp(b *testing.B) func() {
	runtime.LockOSThread() // the loop, and its cgo calls, stay on this thread
	start := threadCPU()
	return func() {
		b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/op")
		runtime.UnlockOSThread()
	}
}

func BenchmarkEnabled(b *testing.B) {
	d := loadBench(b)
	hot := d.ids[0]
	b.Run("hot", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			sinkBool = d.engine.Enabled(hot, "sso")
		}
	})
	b.Run("hot_map_floor", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			sinkBool = d.floor[hot]["sso"]
		}
	})
	b.Run("random", func(b *testing.B) {
		defer cpuPerOp(b)()
		i := 0
		for b.Loop() {
			sinkBool = d.engine.Enabled(d.ids[i], "sso")
			if i++; i == len(d.ids) {
				i = 0
			}
		}
	})
	b.Run("random_map_floor", func(b *testing.B) {
		defer cpuPerOp(b)()
		i := 0
		for b.Loop() {
			sinkBool = d.floor[d.ids[i]]["sso"]
			if i++; i == len(d.ids) {
				i = 0
			}
		}
	})
	// The library's call by key alone: no guard (which makes Close safe during lookups), no
	// feature handle kept by the engine.
	b.Run("hot_unguarded", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			sinkBool = entitle.EnabledUnguarded(d.engine, hot, "sso")
		}
	})
	// A key that is no feature: the path by key on every call.
	b.Run("hot_unknown_feature", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			sinkBool = d.engine.Enabled(hot, "no_such_feature")
		}
	})
	b.Run("hot_parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var s bool
			for pb.Next() {
				s = d.engine.Enabled(hot, "sso")
			}
			sinkBool = s
		})
	})
}

func BenchmarkCalls(b *testing.B) {
	d := loadBench(b)
	hot := d.ids[0]
	var lim entitle.Limit
	var dec entitle.Decision
	b.Run("Limit", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			lim = d.engine.Limit(hot, "projects")
		}
	})
	b.Run("Allows", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			sinkBool = d.engine.Allows(hot, "projects", 1, 1)
		}
	})
	b.Run("Check", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			dec = d.engine.Check(hot, "projects")
		}
	})
	_, _ = lim, dec
}

// Feature handles: the key resolved once; and CheckMany, whose batch overlaps the cache misses of
// its customers (reported per customer).
func BenchmarkFeature(b *testing.B) {
	d := loadBench(b)
	hot := d.ids[0]
	sso, err := d.engine.Feature("sso")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Enabled_hot", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			sinkBool = sso.Enabled(hot)
		}
	})
	b.Run("Enabled_random", func(b *testing.B) {
		defer cpuPerOp(b)()
		i := 0
		for b.Loop() {
			sinkBool = sso.Enabled(d.ids[i])
			if i++; i == len(d.ids) {
				i = 0
			}
		}
	})
	const batch = 256
	b.Run("CheckMany_random_batch256", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU()
		i := 0
		for b.Loop() {
			if i+batch > len(d.ids) {
				i = 0
			}
			if _, err := sso.CheckMany(d.ids[i : i+batch]); err != nil {
				b.Fatal(err)
			}
			i += batch
		}
		// One op is a batch: report per customer too.
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/customer")
		b.ReportMetric(float64(threadCPU()-start)/float64(b.N*batch), "cpu-ns/customer")
	})
}
