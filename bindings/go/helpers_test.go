package entitle_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

// repo is the repository root (this package lives in bindings/go).
var repo = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}()

// at is a fixed evaluation time, before every cancel_at and expires_at in testCatalog.
const at = 1_700_000_000

// entitleBin is the `entitle` command: $ENTITLE_BIN, or the release build of the repository.
func entitleBin(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("ENTITLE_BIN"); bin != "" {
		return bin
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = filepath.Join(repo, "target")
	} else if !filepath.IsAbs(target) {
		target = filepath.Join(repo, target)
	}
	bin := filepath.Join(target, "release", "entitle")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s not found: build it with `cargo build --release -p entitle-cli` (or set ENTITLE_BIN)", bin)
	}
	return bin
}

// runCLI runs the entitle command and fails the test if it fails.
func runCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(entitleBin(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("entitle %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testCatalog is a small catalog; projectsForPro lets tests make changed versions of it.
func testCatalog(projectsForPro int) []byte {
	c := map[string]any{
		"features": []any{
			map[string]any{"key": "sso", "type": "flag", "default": false},
			map[string]any{"key": "projects", "type": "limit", "default": 3},
			map[string]any{"key": "seats", "type": "limit", "default": 1, "per_unit": true},
			map[string]any{"key": "api_calls", "type": "limit", "default": 1000},
		},
		"products": []any{
			map[string]any{"id": "prod_pro", "features": map[string]any{
				"sso": true, "projects": projectsForPro, "seats": 1, "api_calls": 100_000}},
			map[string]any{"id": "prod_enterprise", "features": map[string]any{
				"sso": true, "projects": "unlimited", "api_calls": "unlimited"}},
		},
		"customers": []any{
			map[string]any{"id": "cus_pro", "subscriptions": []any{map[string]any{
				"id": "sub_1", "status": "active",
				"items": []any{map[string]any{"product": "prod_pro", "quantity": 5}}}}},
			map[string]any{"id": "cus_ent", "subscriptions": []any{map[string]any{
				"id": "sub_2", "status": "active",
				"items": []any{map[string]any{"product": "prod_enterprise"}}}}},
			map[string]any{"id": "cus_cancelling", "subscriptions": []any{map[string]any{
				"id": "sub_3", "status": "active", "cancel_at": at + 3600,
				"items": []any{map[string]any{"product": "prod_pro"}}}}},
			map[string]any{"id": "cus_override", "overrides": map[string]any{"projects": 7, "sso": true}},
		},
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}

// writeFile writes b to name in dir and returns the path.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// snapshots builds v1 and v2 of testCatalog (pro: 50 then 60 projects) and the delta v1 -> v2.
type snapshots struct {
	v1, v2, delta []byte
	v1Path        string
}

func buildSnapshots(t testing.TB) snapshots {
	t.Helper()
	dir := t.TempDir()
	var s snapshots
	for version, projects := range map[int]int{1: 50, 2: 60} {
		src := writeFile(t, dir, fmt.Sprintf("v%d.json", version), testCatalog(projects))
		runCLI(t, "build", src, "-o", filepath.Join(dir, fmt.Sprintf("v%d.snap", version)),
			"--version", fmt.Sprint(version))
	}
	runCLI(t, "diff", filepath.Join(dir, "v1.snap"), filepath.Join(dir, "v2.snap"), "-o",
		filepath.Join(dir, "v1-v2.delta"))
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s.v1, s.v2, s.delta = read("v1.snap"), read("v2.snap"), read("v1-v2.delta")
	s.v1Path = filepath.Join(dir, "v1.snap")
	return s
}

// mustEngine creates an engine from testCatalog and closes it when the test ends.
func mustEngine(t testing.TB, projects int) *entitle.Engine {
	t.Helper()
	e, err := entitle.FromCatalogJSON(testCatalog(projects))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// edge is an edge directory served by `entitle serve` on 127.0.0.1 (a free port).
type edge struct {
	t         testing.TB
	dir, work string
	url       string
	cmd       *exec.Cmd
	published int
	mu        sync.Mutex
}

// newEdge publishes testCatalog(50) as version 1 and starts serving it until the test ends.
func newEdge(t testing.TB) *edge {
	t.Helper()
	work := t.TempDir()
	e := &edge{t: t, dir: filepath.Join(work, "edge"), work: work}
	e.publish(testCatalog(50))
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *edge) publish(catalog []byte) {
	e.t.Helper()
	e.published++
	src := writeFile(e.t, e.work, fmt.Sprintf("publish-%d.json", e.published), catalog)
	runCLI(e.t, "publish", src, "--edge", e.dir)
}

var addrPattern = regexp.MustCompile(`https?://[0-9.]+:[0-9]+`)

func (e *edge) start() {
	e.t.Helper()
	cmd := exec.Command(entitleBin(e.t), "serve", e.dir, "--addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, r) // keep the pipe drained
	}()
	select {
	case line := <-lines:
		url := addrPattern.FindString(line)
		if url == "" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			e.t.Fatalf("`entitle serve` did not name its address; first line: %q", line)
		}
		e.url = url
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		e.t.Fatal("`entitle serve` did not start within 30 s")
	}
	e.mu.Lock()
	e.cmd = cmd
	e.mu.Unlock()
}

func (e *edge) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-done
	}
	e.cmd = nil
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readFile reads a file or fails the test.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
