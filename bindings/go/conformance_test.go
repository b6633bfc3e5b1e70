package entitle_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

// The shared conformance suite (tests/conformance, read from the repository, never copied): every
// case through Check, Enabled, Limit and Allows at the case's time, against an engine built from
// the catalog's exact bytes.

type conformanceCase struct {
	Name      string       `json:"name"`
	Customer  string       `json:"customer"`
	Feature   string       `json:"feature"`
	At        json.Number  `json:"at"`
	Usage     *json.Number `json:"usage"`
	Requested *json.Number `json:"requested"`
	Expected  struct {
		FeatureType *string `json:"feature_type"`
		Enabled     bool    `json:"enabled"`
		Limit       any     `json:"limit"`
		Reason      string  `json:"reason"`
		Allowed     *bool   `json:"allowed"`
	} `json:"expected"`
}

type conformanceFile struct {
	Catalog     json.RawMessage   `json:"catalog"`
	Cases       []conformanceCase `json:"cases"`
	ExpectError *string           `json:"expect_error"`
}

// rawCatalog cuts the exact text of the top-level "catalog" value out of a suite file (see
// tests/conformance/README.md): no parse and re-serialization touches it.
func rawCatalog(t *testing.T, text []byte) []byte {
	t.Helper()
	const marker = "\n  \"catalog\": "
	start := bytes.Index(text, []byte(marker))
	if start < 0 || bytes.Count(text, []byte(marker)) != 1 {
		t.Fatalf("the file must hold %q exactly once", marker)
	}
	start += len(marker)
	dec := json.NewDecoder(bytes.NewReader(text[start:]))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("reading the catalog value: %v", err)
	}
	end := start + int(dec.InputOffset())
	return text[start:end]
}

func readSuite(t *testing.T, path string) (conformanceFile, []byte) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f conformanceFile
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f, rawCatalog(t, text)
}

func parseUint(t *testing.T, n json.Number) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		t.Fatalf("not a whole number: %s", n)
	}
	return v
}

func TestConformance(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repo, "tests", "conformance", "*.json"))
	if len(files) == 0 {
		t.Fatal("no conformance files found under tests/conformance")
	}
	cases := 0
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, catalog := readSuite(t, path)
			if len(f.Cases) == 0 {
				t.Fatal("a valid suite file without cases")
			}
			e, err := entitle.FromCatalogJSON(catalog)
			if err != nil {
				t.Fatalf("loading the catalog: %v", err)
			}
			defer e.Close()
			for _, c := range f.Cases {
				cases++
				checkCase(t, e, c)
			}
		})
	}
	t.Logf("%d files, %d cases", len(files), cases)
}

func checkCase(t *testing.T, e *entitle.Engine, c conformanceCase) {
	t.Helper()
	secs, err := strconv.ParseInt(string(c.At), 10, 64)
	if err != nil {
		t.Fatalf("%s: at: %v", c.Name, err)
	}
	when := time.Unix(secs, 0)
	// Lookups by key three times: first each call without a feature handle kept for the key (the
	// path by key), then through the handle the engine keeps for a key that is a feature.
	entitle.ForgetFeatureKeys(e)
	d := checkCaseByKey(t, e, c, when, true)
	if keys, _ := entitle.FeatureKeys(e); slices.Contains(keys, c.Feature) != (d.FeatureType != entitle.FeatureUnknown) {
		t.Errorf("%s: a handle kept for %q: %v", c.Name, c.Feature, slices.Contains(keys, c.Feature))
	}
	if got := checkCaseByKey(t, e, c, when, false); got != d {
		t.Errorf("%s: CheckAt through the kept handle %+v, want %+v", c.Name, got, d)
	}
	// And with a handle for every feature (a key that is none then takes the library's call).
	entitle.RefreshFeatureKeys(e)
	if got := checkCaseByKey(t, e, c, when, false); got != d {
		t.Errorf("%s: CheckAt with every feature's handle %+v, want %+v", c.Name, got, d)
	}
	checkCaseHandles(t, e, c, when, d)
}

// checkCaseByKey checks the case through the lookups by key (CheckAt, EnabledAt, LimitAt,
// AllowsAt), each after forgetting the engine's feature handles if forget is set.
func checkCaseByKey(t *testing.T, e *entitle.Engine, c conformanceCase, when time.Time, forget bool) entitle.Decision {
	t.Helper()
	fresh := func() {
		if forget {
			entitle.ForgetFeatureKeys(e)
		}
	}
	want := c.Expected
	fresh()
	d := e.CheckAt(c.Customer, c.Feature, when)

	wantType := entitle.FeatureUnknown
	if want.FeatureType != nil {
		wantType = entitle.FeatureType(*want.FeatureType)
	}
	if d.FeatureType != wantType {
		t.Errorf("%s: feature_type %q, want %q", c.Name, d.FeatureType, wantType)
	}
	if d.Enabled != want.Enabled {
		t.Errorf("%s: enabled %v, want %v", c.Name, d.Enabled, want.Enabled)
	}
	if string(d.Reason) != want.Reason {
		t.Errorf("%s: reason %q, want %q", c.Name, d.Reason, want.Reason)
	}
	// limit: a number, "unlimited", or null (flags and unknown features: a zero Limit).
	var wantLimit entitle.Limit
	switch l := want.Limit.(type) {
	case nil:
		if d.FeatureType == entitle.FeatureLimit {
			t.Errorf("%s: a limit feature where the suite expects limit null", c.Name)
		}
	case string:
		if l != "unlimited" {
			t.Fatalf("%s: unexpected limit %q", c.Name, l)
		}
		wantLimit = entitle.Limit{Unlimited: true}
	case json.Number:
		wantLimit = entitle.Limit{Value: parseUint(t, l)}
	default:
		t.Fatalf("%s: unexpected limit %v", c.Name, l)
	}
	if d.Limit != wantLimit {
		t.Errorf("%s: limit %v, want %v", c.Name, d.Limit, wantLimit)
	}
	// The plain calls answer the same.
	fresh()
	if got := e.EnabledAt(c.Customer, c.Feature, when); got != want.Enabled {
		t.Errorf("%s: EnabledAt %v, want %v", c.Name, got, want.Enabled)
	}
	fresh()
	if got := e.LimitAt(c.Customer, c.Feature, when); got != wantLimit {
		t.Errorf("%s: LimitAt %v, want %v", c.Name, got, wantLimit)
	}
	if c.Usage != nil {
		if want.Allowed == nil {
			t.Fatalf("%s: usage without expected.allowed", c.Name)
		}
		usage := parseUint(t, *c.Usage)
		requested := uint64(1) // the suite's default; Allows has no default argument in Go
		if c.Requested != nil {
			requested = parseUint(t, *c.Requested)
		}
		fresh()
		if got := e.AllowsAt(c.Customer, c.Feature, usage, requested, when); got != *want.Allowed {
			t.Errorf("%s: AllowsAt(%d, %d) %v, want %v", c.Name, usage, requested, got, *want.Allowed)
		}
		if got := d.Allows(usage, requested); got != *want.Allowed {
			t.Errorf("%s: Decision.Allows(%d, %d) %v, want %v", c.Name, usage, requested, got, *want.Allowed)
		}
	} else if want.Allowed != nil {
		t.Fatalf("%s: expected.allowed without usage", c.Name)
	}
	return d
}

// checkCaseHandles checks the case through a Feature handle, one by one and in batches, and
// through Entitlements, against d (the decision by key).
func checkCaseHandles(t *testing.T, e *entitle.Engine, c conformanceCase, when time.Time, d entitle.Decision) {
	t.Helper()
	want := c.Expected
	wantLimit := d.Limit
	f, err := e.Feature(c.Feature)
	if err != nil {
		t.Fatalf("%s: Feature(%q): %v", c.Name, c.Feature, err)
	}
	if got := f.CheckAt(c.Customer, when); got != d {
		t.Errorf("%s: Feature.CheckAt %+v, want %+v", c.Name, got, d)
	}
	if got := f.EnabledAt(c.Customer, when); got != want.Enabled {
		t.Errorf("%s: Feature.EnabledAt %v", c.Name, got)
	}
	if got := f.LimitAt(c.Customer, when); got != wantLimit {
		t.Errorf("%s: Feature.LimitAt %v", c.Name, got)
	}
	if c.Usage != nil {
		usage, requested := parseUint(t, *c.Usage), uint64(1)
		if c.Requested != nil {
			requested = parseUint(t, *c.Requested)
		}
		if got := f.AllowsAt(c.Customer, usage, requested, when); got != *want.Allowed {
			t.Errorf("%s: Feature.AllowsAt %v", c.Name, got)
		}
	}
	many, err := f.CheckManyAt([]string{"", c.Customer, c.Customer}, when)
	if err != nil || len(many) != 3 || many[1] != d || many[2] != d {
		t.Errorf("%s: CheckManyAt %+v, %v; want %+v", c.Name, many, err, d)
	}
	features, err := e.CheckFeaturesAt(c.Customer, []entitle.Feature{f, f}, when)
	if err != nil || len(features) != 2 || features[0] != d || features[1] != d {
		t.Errorf("%s: CheckFeaturesAt %+v, %v; want %+v", c.Name, features, err, d)
	}
	// Entitlements lists the same decision under the feature's key (for features in the catalog).
	if d.FeatureType != entitle.FeatureUnknown {
		all := e.EntitlementsAt(c.Customer, when)
		if got, ok := all[c.Feature]; !ok || got != d {
			t.Errorf("%s: EntitlementsAt[%q] = %+v (present %v), want %+v", c.Name, c.Feature, got, ok, d)
		}
	}
}

func TestConformanceInvalid(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repo, "tests", "conformance", "invalid", "*.json"))
	if len(files) == 0 {
		t.Fatal("no invalid catalogs found under tests/conformance/invalid")
	}
	for _, path := range files {
		f, catalog := readSuite(t, path)
		if f.ExpectError == nil {
			t.Fatalf("%s: no expect_error", path)
		}
		e, err := entitle.FromCatalogJSON(catalog)
		if err == nil {
			e.Close()
			t.Errorf("%s: the catalog loaded", filepath.Base(path))
			continue
		}
		var ee *entitle.Error
		if !errors.As(err, &ee) || !errors.Is(err, entitle.ErrInvalidCatalog) {
			t.Errorf("%s: %v is not an invalid-catalog *Error", filepath.Base(path), err)
			continue
		}
		if !strings.HasPrefix(ee.Detail, *f.ExpectError+":") {
			t.Errorf("%s: detail %q does not start with %q", filepath.Base(path), ee.Detail, *f.ExpectError+":")
		}
	}
}
