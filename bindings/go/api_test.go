package entitle_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

func TestLookups(t *testing.T) {
	e := mustEngine(t, 50)
	when := time.Unix(at, 0)
	if !e.EnabledAt("cus_pro", "sso", when) || e.EnabledAt("nobody", "sso", when) {
		t.Error("sso: pro enabled, unknown customer not")
	}
	if got := e.LimitAt("cus_pro", "projects", when); got != (entitle.Limit{Value: 50}) {
		t.Errorf("pro projects = %v", got)
	}
	if got := e.LimitAt("cus_ent", "projects", when); !got.Unlimited || got.String() != "unlimited" {
		t.Errorf("enterprise projects = %v", got)
	}
	if got := e.LimitAt("cus_pro", "seats", when); got.Value != 5 {
		t.Errorf("per-unit seats = %v, want 5", got)
	}
	if !e.AllowsAt("cus_pro", "projects", 49, 1, when) || e.AllowsAt("cus_pro", "projects", 50, 1, when) {
		t.Error("allows: 49+1 fits in 50, 50+1 does not")
	}
	if e.AllowsAt("cus_pro", "projects", ^uint64(0), 2, when) {
		t.Error("allows: an overflowing sum must not fit")
	}
	d := e.CheckAt("cus_override", "projects", when)
	want := entitle.Decision{FeatureType: entitle.FeatureLimit, Enabled: true, Limit: entitle.Limit{Value: 7},
		Reason: entitle.ReasonOverride, Version: 0}
	if d != want {
		t.Errorf("override: %+v, want %+v", d, want)
	}
	if d := e.Check("cus_pro", "nope"); d.FeatureType != entitle.FeatureUnknown || d.Reason != entitle.ReasonFeatureNotFound || d.Enabled {
		t.Errorf("unknown feature: %+v", d)
	}
	if d := e.Check("cus_pro", "sso"); d.FeatureType != entitle.FeatureFlag || !d.Enabled || d.Reason != entitle.ReasonSubscription || d.Limit != (entitle.Limit{}) {
		t.Errorf("flag: %+v", d)
	}
	// cus_cancelling's subscription ends an hour after `at`: time matters.
	if !e.EnabledAt("cus_cancelling", "sso", when) || e.EnabledAt("cus_cancelling", "sso", when.Add(2*time.Hour)) {
		t.Error("cancel_at is not honored")
	}
	all := e.EntitlementsAt("cus_pro", when)
	if len(all) != 4 || all["api_calls"].Limit.Value != 100_000 || !all["sso"].Enabled {
		t.Errorf("entitlements: %+v", all)
	}
	if all := e.Entitlements("nobody"); all["projects"].Reason != entitle.ReasonCustomerNotFound || all["projects"].Limit.Value != 3 {
		t.Errorf("unknown customer's entitlements: %+v", all)
	}
	if v := entitle.LibraryVersion(); v == "" || strings.Count(v, ".") < 2 {
		t.Errorf("library version %q", v)
	}
}

func TestStringsAreBytes(t *testing.T) {
	e := mustEngine(t, 50)
	// Bytes that are not UTF-8 match nothing; Check answers as the plain calls do instead of
	// failing, and Entitlements treats the customer as unknown.
	bad := "cus_pro\xff"
	if e.Enabled(bad, "sso") {
		t.Error("invalid UTF-8 matched")
	}
	if d := e.Check(bad, "projects"); d.Reason != entitle.ReasonCustomerNotFound || d.Limit.Value != 3 {
		t.Errorf("invalid customer: %+v", d)
	}
	if d := e.Check("cus_pro", "sso\xff"); d.Reason != entitle.ReasonFeatureNotFound {
		t.Errorf("invalid feature: %+v", d)
	}
	if all := e.Entitlements(bad); all["projects"].Reason != entitle.ReasonCustomerNotFound {
		t.Errorf("invalid customer's entitlements: %+v", all)
	}
	// Substrings and strings built at run time cross without a copy and keep their length.
	long := "cus_pro" + strings.Repeat("x", 10)
	if !e.Enabled(long[:7], "sso") || e.Enabled(long[:6], "sso") || e.Enabled("", "") {
		t.Error("string lengths are not honored")
	}
}

func TestSnapshotsReplaceAndDeltas(t *testing.T) {
	s := buildSnapshots(t)
	e, err := entitle.FromSnapshot(s.v1)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Version() != 1 || e.Limit("cus_pro", "projects").Value != 50 {
		t.Fatalf("v1: version %d", e.Version())
	}
	if err := e.ApplyDelta(s.delta); err != nil {
		t.Fatal(err)
	}
	if e.Version() != 2 || e.Check("cus_pro", "projects").Version != 2 || e.Limit("cus_pro", "projects").Value != 60 {
		t.Fatalf("after the delta: version %d", e.Version())
	}
	// The delta was made for v1: applying it to v2 names the wrong base, and keeps v2.
	err = e.ApplyDelta(s.delta)
	if !errors.Is(err, entitle.ErrWrongBase) || e.Version() != 2 {
		t.Fatalf("delta on the wrong base: %v", err)
	}
	if err := e.Replace(s.v1); err != nil || e.Version() != 1 {
		t.Fatalf("replace: %v", err)
	}
	if err := e.Replace([]byte("not a snapshot")); !errors.Is(err, entitle.ErrBadMagic) || e.Version() != 1 {
		t.Fatalf("replace with garbage: %v", err)
	}
	corrupt := append([]byte(nil), s.v2...)
	corrupt[len(corrupt)/2] ^= 0xff
	if err := e.Replace(corrupt); !errors.Is(err, entitle.ErrCorrupt) {
		t.Fatalf("replace with a flipped byte: %v", err)
	}
	if err := e.ReplaceFile(s.v1Path); err != nil {
		t.Fatal(err)
	}
	f, err := entitle.FromFile(s.v1Path)
	if err != nil || f.Version() != 1 {
		t.Fatalf("from file: %v", err)
	}
	f.Close()
}

func TestErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.snap")
	_, err := entitle.FromFile(missing)
	var ee *entitle.Error
	if !errors.As(err, &ee) || ee.Code != entitle.CodeIO || !errors.Is(err, entitle.ErrIO) {
		t.Fatalf("missing file: %#v", err)
	}
	if !strings.Contains(ee.Detail, missing) || !strings.Contains(err.Error(), missing) {
		t.Errorf("the detail does not name the file: %q", ee.Detail)
	}
	if errors.Is(err, entitle.ErrCorrupt) {
		t.Error("an I/O error matches ErrCorrupt")
	}
	_, err = entitle.FromCatalogJSON([]byte(`{"features": [{"key": "a", "type": "flag", "default": 3}]}`))
	if !errors.As(err, &ee) || ee.Code != entitle.CodeInvalidCatalog || !strings.HasPrefix(ee.Detail, "features[0].default:") {
		t.Errorf("invalid catalog: %v", err)
	}
	if _, err := entitle.FromSnapshot(nil); !errors.Is(err, entitle.ErrBadMagic) && !errors.Is(err, entitle.ErrCorrupt) {
		t.Errorf("empty snapshot: %v", err)
	}
	if _, err := entitle.Connect(entitle.SyncConfig{URL: "ftp://example"}); !errors.Is(err, entitle.ErrInvalidConfig) {
		t.Errorf("ftp URL: %v", err)
	}
	if _, err := entitle.Connect(entitle.SyncConfig{URL: "http://127.0.0.1:9", PollInterval: -time.Second}); !errors.Is(err, entitle.ErrInvalidConfig) || !strings.Contains(err.Error(), "PollInterval") {
		t.Errorf("negative duration: %v", err)
	}
	if got := (&entitle.Error{Code: entitle.CodeClosed}).Error(); got != "entitle: the engine is closed" {
		t.Errorf("message without detail: %q", got)
	}
}

// Every kind of failure comes back as the *Error of its result code, matched by its sentinel and
// by no other.
func TestEachFailureHasTheCodeOfItsKind(t *testing.T) {
	s := buildSnapshots(t)
	newer := append([]byte(nil), s.v1...)
	newer[8] = 99 // the format version, after the 8-byte magic
	v2, err := entitle.FromSnapshot(s.v2)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	closed, err := entitle.FromSnapshot(s.v1)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	fail := func(_ *entitle.Engine, err error) error { return err }
	sentinels := []*entitle.Error{entitle.ErrNullParameter, entitle.ErrInvalidUTF8,
		entitle.ErrInvalidParameter, entitle.ErrPanic, entitle.ErrBufferTooSmall, entitle.ErrOutOfRange,
		entitle.ErrIO, entitle.ErrInvalidCatalog, entitle.ErrBadMagic, entitle.ErrUnsupportedVersion,
		entitle.ErrCorrupt, entitle.ErrTooLarge, entitle.ErrWrongBase, entitle.ErrFeatureMismatch,
		entitle.ErrInvalidConfig, entitle.ErrTimeout, entitle.ErrClosed}
	for i, sentinel := range sentinels {
		if sentinel.Code != entitle.Code(i+1) {
			t.Fatalf("sentinel %d has code %d", i+1, sentinel.Code)
		}
	}
	cases := []struct {
		name string
		err  error
		code entitle.Code
	}{
		{"invalid catalog", fail(entitle.FromCatalogJSON([]byte("{"))), entitle.CodeInvalidCatalog},
		{"bad magic", fail(entitle.FromSnapshot([]byte("junk"))), entitle.CodeBadMagic},
		{"newer format", fail(entitle.FromSnapshot(newer)), entitle.CodeUnsupportedVersion},
		{"truncated", fail(entitle.FromSnapshot(s.v1[:100])), entitle.CodeCorrupt},
		{"delta bad magic", v2.ApplyDelta([]byte("junk")), entitle.CodeBadMagic},
		{"wrong base", v2.ApplyDelta(s.delta), entitle.CodeWrongBase},
		{"missing file", fail(entitle.FromFile(filepath.Join(t.TempDir(), "none"))), entitle.CodeIO},
		{"ftp URL", fail(entitle.Connect(entitle.SyncConfig{URL: "ftp://example"})), entitle.CodeInvalidConfig},
		{"closed", closed.Replace(s.v2), entitle.CodeClosed},
	}
	for _, c := range cases {
		var ee *entitle.Error
		if !errors.As(c.err, &ee) || ee.Code != c.code {
			t.Errorf("%s: %#v, want code %d", c.name, c.err, c.code)
			continue
		}
		for _, sentinel := range sentinels {
			if errors.Is(c.err, sentinel) != (sentinel.Code == c.code) {
				t.Errorf("%s: errors.Is(%v) is wrong", c.name, sentinel)
			}
		}
	}
}

// The detail of a failure is read in the same C call: goroutines failing at the same time, and
// moving between threads, each get their own message.
func TestErrorDetailBelongsToItsCall(t *testing.T) {
	var wg sync.WaitGroup
	failures := make(chan string, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				key := fmt.Sprintf("k%d_%d", g, i)
				doc := fmt.Sprintf(`{"features": [{"key": %q, "type": "flag"}, {"key": %q, "type": "flag"}]}`, key, key)
				_, err := entitle.FromCatalogJSON([]byte(doc))
				var ee *entitle.Error
				if !errors.As(err, &ee) || !strings.HasPrefix(ee.Detail, "features[1].key:") || !strings.Contains(ee.Detail, key) {
					failures <- fmt.Sprintf("goroutine %d, round %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
}

func TestCloseIsIdempotentAndFailsClosed(t *testing.T) {
	s := buildSnapshots(t)
	e, err := entitle.FromSnapshot(s.v1)
	if err != nil {
		t.Fatal(err)
	}
	if e.Closed() || !e.Enabled("cus_pro", "sso") {
		t.Fatal("a new engine")
	}
	for i := 0; i < 3; i++ {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !e.Closed() || e.Enabled("cus_pro", "sso") || e.Limit("cus_pro", "projects") != (entitle.Limit{}) ||
		e.Allows("cus_pro", "projects", 0, 1) || e.Version() != 0 || e.Entitlements("cus_pro") != nil {
		t.Error("a closed engine must fail closed")
	}
	if d := e.Check("cus_pro", "sso"); d.Reason != entitle.ReasonClosed || d.Enabled {
		t.Errorf("check on a closed engine: %+v", d)
	}
	if err := e.Replace(s.v1); !errors.Is(err, entitle.ErrClosed) {
		t.Errorf("replace on a closed engine: %v", err)
	}
	if err := e.ApplyDelta(s.delta); !errors.Is(err, entitle.ErrClosed) {
		t.Errorf("delta on a closed engine: %v", err)
	}
	if st := e.Status(); st.State != entitle.SyncClosed {
		t.Errorf("status of a closed engine: %+v", st)
	}
	if e.WaitReady(t.Context()) {
		t.Error("a closed engine is not ready")
	}
}

func TestStatusOfALocalEngine(t *testing.T) {
	e := mustEngine(t, 50)
	st := e.Status()
	if st.State != entitle.SyncReady || st.Syncing || !st.HasData() || st.Failures != 0 {
		t.Errorf("status: %+v", st)
	}
	if !e.WaitReady(t.Context()) {
		t.Error("a local engine is ready at once")
	}
}

func TestFromFileReadsCatalogs(t *testing.T) {
	path := writeFile(t, t.TempDir(), "catalog.json", testCatalog(50))
	e, err := entitle.FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Limit("cus_pro", "projects").Value != 50 {
		t.Error("catalog file")
	}
	if err := os.WriteFile(path, testCatalog(70), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.ReplaceFile(path); err != nil || e.Limit("cus_pro", "projects").Value != 70 {
		t.Errorf("replace from a catalog file: %v", err)
	}
}

// Zero allocations on the hot path, for strings built at run time as much as for constants.
func TestHotPathAllocatesNothing(t *testing.T) {
	e := mustEngine(t, 50)
	customer := strings.Clone("cus_pro")
	feature := strings.Clone("projects")
	when := time.Unix(at, 0)
	var sink bool
	var lim entitle.Limit
	var d entitle.Decision
	calls := map[string]func(){
		"Enabled":   func() { sink = e.Enabled(customer, feature) },
		"EnabledAt": func() { sink = e.EnabledAt(customer, feature, when) },
		"Limit":     func() { lim = e.Limit(customer, feature) },
		"LimitAt":   func() { lim = e.LimitAt(customer, feature, when) },
		"Allows":    func() { sink = e.Allows(customer, feature, 3, 1) },
		"AllowsAt":  func() { sink = e.AllowsAt(customer, feature, 3, 1, when) },
		"Check":     func() { d = e.Check(customer, feature) },
		"CheckAt":   func() { d = e.CheckAt(customer, feature, when) },
		"Unknown":   func() { d = e.Check("nobody", "nothing") },
		// Keys that are no features take the path by key on every call.
		"EnabledUnknownFeature": func() { sink = e.Enabled(customer, "nothing") },
		"LimitUnknownFeature":   func() { lim = e.Limit(customer, "nothing") },
		"AllowsUnknownFeature":  func() { sink = e.Allows(customer, "nothing", 3, 1) },
		"CheckUnknownFeature":   func() { d = e.Check(customer, "nothing") },
	}
	for name, call := range calls {
		if n := testing.AllocsPerRun(1000, call); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
	_, _, _ = sink, lim, d
}
