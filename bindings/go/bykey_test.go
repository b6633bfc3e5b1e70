package entitle_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

// Lookups by key go through feature handles the engine keeps for keys that are features of its
// content (see keyCache in keys.go). These tests hold them to the answers of the path by key
// through content whose feature list changes, and check which keys get handles.

// The key table finds every key it holds, for every length (up to 16 bytes a key is compared as
// two words, longer ones also byte by byte), and nothing else: not a key that differs from one of
// them in a single byte, nor one of another length.
func TestKeyTable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := "abcdefghijklmnopqrstuvwxyz_0123456789"
	randomKey := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	for _, size := range []int{1, 2, 7, 40, 256} {
		seen := map[string]bool{}
		var keys []string
		for len(keys) < size {
			k := randomKey(1 + r.IntN(40))
			if size == 256 && len(keys)%4 == 0 {
				// Keys alike but for their middle: the same first and last 8 bytes.
				k = "feature_" + randomKey(r.IntN(12)) + "_enabled"
			}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		found := entitle.TableFinds(keys, keys)
		for i, f := range found {
			if f != i {
				t.Fatalf("size %d: key %q found as %d, want %d", size, keys[i], f, i)
			}
		}
		var probes []string
		for _, k := range keys {
			for pos := 0; pos < len(k); pos++ {
				b := []byte(k)
				b[pos] ^= 0x20
				probes = append(probes, string(b))
			}
			probes = append(probes, k+"x", k[:len(k)-1], "x"+k)
		}
		probes = append(probes, "", "\xff")
		for i, f := range entitle.TableFinds(keys, probes) {
			if f >= 0 && !seen[probes[i]] {
				t.Fatalf("size %d: %q found as %q", size, probes[i], keys[f])
			}
			if f >= 0 && keys[f] != probes[i] {
				t.Fatalf("size %d: %q found as %q", size, probes[i], keys[f])
			}
		}
	}
}

// want is what a lookup of one key answers in one version of the content: a limit feature (limit
// > 0), a flag (limit < 0: enabled is the flag's value), or no feature (nil).
type want struct {
	limit   int64
	enabled bool
}

// expectByKey asks e for each key by key (Check, Enabled, Limit, Allows) and compares with the
// content of the given version.
func expectByKey(t *testing.T, e *entitle.Engine, version uint64, features map[string]*want) {
	t.Helper()
	for _, key := range []string{"a", "b", "c", "f", "late_feature_added", "nope"} {
		w := features[key]
		d := e.Check("x", key)
		wantD := entitle.Decision{FeatureType: entitle.FeatureUnknown, Reason: entitle.ReasonFeatureNotFound,
			Version: version}
		switch {
		case w == nil:
		case w.limit > 0:
			wantD = entitle.Decision{FeatureType: entitle.FeatureLimit, Enabled: true,
				Limit: entitle.Limit{Value: uint64(w.limit)}, Reason: entitle.ReasonCustomerNotFound, Version: version}
		default:
			wantD = entitle.Decision{FeatureType: entitle.FeatureFlag, Enabled: w.enabled,
				Reason: entitle.ReasonCustomerNotFound, Version: version}
		}
		if d != wantD {
			t.Errorf("v%d: Check(%q) = %+v, want %+v", version, key, d, wantD)
		}
		if got := e.Enabled("x", key); got != wantD.Enabled {
			t.Errorf("v%d: Enabled(%q) = %v", version, key, got)
		}
		if got := e.Limit("x", key); got != wantD.Limit {
			t.Errorf("v%d: Limit(%q) = %v", version, key, got)
		}
		if got := e.Allows("x", key, 0, 1); got != wantD.Allows(0, 1) {
			t.Errorf("v%d: Allows(%q, 0, 1) = %v", version, key, got)
		}
		if got := e.Allows("x", key, 0, 2); got != wantD.Allows(0, 2) {
			t.Errorf("v%d: Allows(%q, 0, 2) = %v", version, key, got)
		}
	}
}

// The content versions of these tests: the feature list is reordered (v2), loses a feature and
// renames another (v3), gains one (v4), and keeps v4's list with other values (v5).
var swapVersions = []struct {
	catalog  string
	features map[string]*want
}{
	1: {`[{"key": "a", "type": "limit", "default": 1}, {"key": "b", "type": "limit", "default": 2},
		{"key": "f", "type": "flag", "default": true}]`,
		map[string]*want{"a": {limit: 1}, "b": {limit: 2}, "f": {limit: -1, enabled: true}}},
	2: {`[{"key": "f", "type": "flag", "default": true}, {"key": "b", "type": "limit", "default": 2},
		{"key": "a", "type": "limit", "default": 1}]`,
		map[string]*want{"a": {limit: 1}, "b": {limit: 2}, "f": {limit: -1, enabled: true}}},
	3: {`[{"key": "c", "type": "limit", "default": 3}, {"key": "f", "type": "flag", "default": true}]`,
		map[string]*want{"c": {limit: 3}, "f": {limit: -1, enabled: true}}},
	4: {`[{"key": "c", "type": "limit", "default": 3}, {"key": "f", "type": "flag", "default": true},
		{"key": "late_feature_added", "type": "limit", "default": 4}]`,
		map[string]*want{"c": {limit: 3}, "f": {limit: -1, enabled: true}, "late_feature_added": {limit: 4}}},
	5: {`[{"key": "c", "type": "limit", "default": 3}, {"key": "f", "type": "flag", "default": false},
		{"key": "late_feature_added", "type": "limit", "default": 4}]`,
		map[string]*want{"c": {limit: 3}, "f": {limit: -1}, "late_feature_added": {limit: 4}}},
}

// swapSnapshots builds swapVersions[1:] as snapshots (content version = index) and gives their
// bytes and paths.
func swapSnapshots(t *testing.T) (snaps [][]byte, paths []string) {
	dir := t.TempDir()
	snaps, paths = make([][]byte, len(swapVersions)), make([]string, len(swapVersions))
	for v := 1; v < len(swapVersions); v++ {
		src := writeFile(t, dir, fmt.Sprintf("v%d.json", v), []byte(`{"features": `+swapVersions[v].catalog+`}`))
		paths[v] = filepath.Join(dir, fmt.Sprintf("v%d.snap", v))
		runCLI(t, "build", src, "-o", paths[v], "--version", fmt.Sprint(v))
		snaps[v] = readFile(t, paths[v])
	}
	return snaps, paths
}

func expectKeys(t *testing.T, e *entitle.Engine, when string, keys ...string) {
	t.Helper()
	got, stale := entitle.FeatureKeys(e)
	if !slices.Equal(got, keys) || stale != 0 {
		t.Errorf("%s: handles kept for %q (%d of them stale), want %q", when, got, stale, keys)
	}
}

// Lookups by key answer as the content says through every swap: features reordered, removed,
// renamed, added later, and the same feature list with other values. The engine keeps a handle
// for every feature of its content (never for other keys), taken again when a swap changes the
// feature list.
func TestLookupsByKeyAcrossSwaps(t *testing.T) {
	snaps, paths := swapSnapshots(t)
	e, err := entitle.FromSnapshot(snaps[1])
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	expectKeys(t, e, "new engine", "a", "b", "f")
	expectByKey(t, e, 1, swapVersions[1].features)
	expectKeys(t, e, "v1", "a", "b", "f")
	// A handle resolved by the application sees the same swaps.
	a, err := e.Feature("a")
	if err != nil {
		t.Fatal(err)
	}

	for v := 2; v < len(swapVersions); v++ {
		if v == 3 {
			err = e.ReplaceFile(paths[v])
		} else {
			err = e.Replace(snaps[v])
		}
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		var keys []string
		for k := range swapVersions[v].features {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		expectKeys(t, e, fmt.Sprintf("after v%d", v), keys...)
		expectByKey(t, e, uint64(v), swapVersions[v].features)
		expectKeys(t, e, fmt.Sprintf("v%d", v), keys...)
		if got, want := a.Check("x").FeatureType != entitle.FeatureUnknown, swapVersions[v].features["a"] != nil; got != want {
			t.Errorf("v%d: the application's handle of a: found %v", v, got)
		}
	}

	// Back to v1, whose list differs: the engine's handles go, the answers are v1's.
	if err := e.Replace(snaps[1]); err != nil {
		t.Fatal(err)
	}
	expectKeys(t, e, "back to v1", "a", "b", "f")
	expectByKey(t, e, 1, swapVersions[1].features)
	expectKeys(t, e, "v1 again", "a", "b", "f")

	// A failed replacement keeps the content and the handles.
	if err := e.Replace([]byte("not a snapshot")); err == nil {
		t.Fatal("a bad snapshot was accepted")
	}
	expectKeys(t, e, "after a failed replace", "a", "b", "f")
	expectByKey(t, e, 1, swapVersions[1].features)

	// Without the engine's handles (as for content with more than 256 features), each feature's key
	// gets one on its first lookup; the answers stay the same.
	entitle.ForgetFeatureKeys(e)
	expectKeys(t, e, "forgotten")
	expectByKey(t, e, 1, swapVersions[1].features)
	expectKeys(t, e, "learned", "a", "b", "f")
	if err := e.Replace(snaps[3]); err != nil {
		t.Fatal(err)
	}
	expectKeys(t, e, "v3 after learning", "c", "f")
	expectByKey(t, e, 3, swapVersions[3].features)
}

// Handles the engine kept before a swap still answer right when they were not refreshed (content
// that changed in the background, before the goroutine following the engine's events refreshes
// them): a stale handle finds its key again, never another feature's value, and a feature the
// older table does not know is looked up by key.
func TestLookupsByKeyThroughStaleHandles(t *testing.T) {
	snaps, _ := swapSnapshots(t)
	e, err := entitle.FromSnapshot(snaps[1])
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	expectByKey(t, e, 1, swapVersions[1].features)
	// Keep v1's handles across the swaps: restore them after each (FeatureKeys then counts them
	// stale), as a lookup racing with the swap could have left them.
	kept := entitle.SaveFeatureKeys(e)
	for v := 2; v < len(swapVersions); v++ {
		if err := e.Replace(snaps[v]); err != nil {
			t.Fatal(err)
		}
		entitle.RestoreFeatureKeys(e, kept)
		if _, stale := entitle.FeatureKeys(e); stale == 0 {
			t.Fatalf("v%d: no stale handle to test with", v)
		}
		expectByKey(t, e, uint64(v), swapVersions[v].features)
	}
}

// Only keys that are features get handles, at most 256 of them: an application that passes
// arbitrary strings as feature keys does not grow the engine, and every answer stays right.
func TestLookupsByKeyKeepFewHandles(t *testing.T) {
	var features []string
	for i := 0; i < 300; i++ {
		features = append(features, fmt.Sprintf(`{"key": "feature_%03d", "type": "limit", "default": %d}`, i, i+1))
	}
	e, err := entitle.FromCatalogJSON([]byte(`{"features": [` + strings.Join(features, ", ") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for round := 0; round < 2; round++ {
		for i := 0; i < 300; i++ {
			key := fmt.Sprintf("feature_%03d", i)
			if got := e.Limit("x", key); got.Value != uint64(i+1) {
				t.Fatalf("round %d: Limit(%q) = %v", round, key, got)
			}
			if d := e.Check("x", key); d.Limit.Value != uint64(i+1) || d.FeatureType != entitle.FeatureLimit {
				t.Fatalf("round %d: Check(%q) = %+v", round, key, d)
			}
		}
	}
	keys, _ := entitle.FeatureKeys(e)
	if len(keys) != 256 {
		t.Errorf("%d handles kept, want 256", len(keys))
	}
	// The features beyond those take the path by key, without allocating.
	for _, key := range []string{keys[0], "feature_299", "feature_257"} {
		if slices.Contains(keys, key) != (key == keys[0]) {
			t.Fatalf("%q kept: %v", key, slices.Contains(keys, key))
		}
		if n := testing.AllocsPerRun(100, func() { _ = e.Enabled("x", key) }); n != 0 {
			t.Errorf("Enabled(%q) allocates %v times per call", key, n)
		}
	}
	entitle.ForgetFeatureKeys(e)
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 10_000; i++ {
		key := fmt.Sprintf("feature_%d_%x", i, r.Uint64())
		if e.Enabled("x", key) || e.Limit("x", key) != (entitle.Limit{}) || e.Allows("x", key, 0, 0) ||
			e.Check("x", key).Reason != entitle.ReasonFeatureNotFound {
			t.Fatalf("%q answers as a feature", key)
		}
	}
	for _, key := range []string{"", "feature_000\xff", "\xff"} {
		if e.Enabled("x", key) || e.Check("x", key).Reason != entitle.ReasonFeatureNotFound {
			t.Errorf("%q answers as a feature", key)
		}
	}
	if keys, _ := entitle.FeatureKeys(e); len(keys) != 0 {
		t.Errorf("handles kept for keys that are no features: %q", keys)
	}
}

// 64 goroutines look features up by key while the content swaps between feature lists that
// reorder, remove, rename and add features: every Check is exactly its version's answer, and no
// Enabled, Limit or Allows ever gives the value of another feature. Run under -race by
// scripts/test-go.sh.
func TestLookupsByKeyDuringFeatureListSwaps(t *testing.T) {
	snaps, _ := swapSnapshots(t)
	e, err := entitle.FromSnapshot(snaps[1])
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Per key, the limits it has in any of versions 1-4 (0: not a feature there).
	limits := map[string][]uint64{"a": {0, 1}, "b": {0, 2}, "c": {0, 3}, "late_feature_added": {0, 4}, "f": {0}, "nope": {0}}
	keys := []string{"a", "b", "c", "f", "late_feature_added", "nope"}
	rounds := 200
	if testing.Short() {
		rounds = 40
	}
	var stop atomic.Bool
	var lookups atomic.Int64
	errs := make(chan string, readers)
	var wg sync.WaitGroup
	for g := 0; g < readers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := keys[(g+i)%len(keys)]
				d := e.Check("x", key)
				if d.Version < 1 || d.Version > 4 {
					errs <- fmt.Sprintf("Check(%q): version %d", key, d.Version)
					return
				}
				w := swapVersions[d.Version].features[key]
				ok := d.Reason == entitle.ReasonFeatureNotFound && w == nil ||
					w != nil && w.limit > 0 && d.Limit.Value == uint64(w.limit) && d.FeatureType == entitle.FeatureLimit ||
					w != nil && w.limit < 0 && d.Enabled == w.enabled && d.FeatureType == entitle.FeatureFlag
				if !ok {
					errs <- fmt.Sprintf("Check(%q) = %+v", key, d)
					return
				}
				if l := e.Limit("x", key); l.Unlimited || !slices.Contains(limits[key], l.Value) {
					errs <- fmt.Sprintf("Limit(%q) = %v", key, l)
					return
				}
				// f is an enabled flag in versions 1-4, nope never a feature.
				if en := e.Enabled("x", key); key == "f" && !en || key == "nope" && en {
					errs <- fmt.Sprintf("Enabled(%q) = %v", key, en)
					return
				}
				// Allows(0, 2) holds for the enabled flag f, never for a (a limit of 1) or nope.
				if al := e.Allows("x", key, 0, 2); al != (key == "f") && (key == "a" || key == "f" || key == "nope") {
					errs <- fmt.Sprintf("Allows(%q, 0, 2) = true", key)
					return
				}
				lookups.Add(1)
				runtime.Gosched() // 64 busy goroutines on a few cores: let the swaps run
			}
		}()
	}
	// At least `rounds` swaps, and on until the readers have done some lookups (bounded).
	deadline := time.Now().Add(20 * time.Second)
	i := 0
	for ; i < rounds || lookups.Load() < int64(50*rounds) && time.Now().Before(deadline); i++ {
		if err := e.Replace(snaps[1+i%4]); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if _, stale := entitle.FeatureKeys(e); stale != 0 {
		t.Errorf("%d stale handles kept after the last swap", stale)
	}
	t.Logf("%d rounds of 4 lookups by key by %d goroutines over %d swaps", lookups.Load(), readers, i)
}

// Calls by key after Close answer as on a closed engine, whether the key had a handle or not.
func TestLookupsByKeyOnAClosedEngine(t *testing.T) {
	e, err := entitle.FromCatalogJSON(testCatalog(50))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Enabled("cus_pro", "sso") || e.Limit("cus_pro", "projects").Value != 50 {
		t.Fatal("before close")
	}
	_ = e.Close()
	for _, key := range []string{"sso", "projects", "seats", "nope"} {
		if e.Enabled("cus_pro", key) || e.Limit("cus_pro", key) != (entitle.Limit{}) ||
			e.Allows("cus_pro", key, 0, 1) || e.Check("cus_pro", key) != (entitle.Decision{
			FeatureType: entitle.FeatureUnknown, Reason: entitle.ReasonClosed}) {
			t.Errorf("%q: a closed engine must fail closed", key)
		}
	}
}

// A usage and request whose sum overflows never fit, on the path by key as through a handle (the
// conformance suite stays within int64, where no sum overflows).
func TestAllowsByKeyOverflow(t *testing.T) {
	e := mustEngine(t, 50)
	projects, err := e.Feature("projects")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ usage, requested uint64 }{{math.MaxUint64, 2}, {2, math.MaxUint64}, {math.MaxUint64, math.MaxUint64}} {
		entitle.ForgetFeatureKeys(e)
		if e.Allows("cus_pro", "projects", c.usage, c.requested) {
			t.Errorf("by key, without a handle: Allows(%d, %d)", c.usage, c.requested)
		}
		if e.Allows("cus_pro", "projects", c.usage, c.requested) {
			t.Errorf("by key, through the kept handle: Allows(%d, %d)", c.usage, c.requested)
		}
		if projects.Allows("cus_pro", c.usage, c.requested) {
			t.Errorf("Feature.Allows(%d, %d)", c.usage, c.requested)
		}
	}
	// Unlimited stays unlimited.
	entitle.ForgetFeatureKeys(e)
	if !e.Allows("cus_ent", "projects", math.MaxUint64, math.MaxUint64) {
		t.Error("an unlimited limit must allow anything")
	}
}
