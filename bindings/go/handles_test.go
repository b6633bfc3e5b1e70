package entitle_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
)

func TestFeatureHandles(t *testing.T) {
	e := mustEngine(t, 50)
	when := time.Unix(at, 0)
	projects, err := e.Feature("projects")
	if err != nil {
		t.Fatal(err)
	}
	if projects.Key() != "projects" {
		t.Errorf("key %q", projects.Key())
	}
	if got := projects.LimitAt("cus_pro", when); got.Value != 50 {
		t.Errorf("limit %v", got)
	}
	if !projects.Enabled("cus_pro") || !projects.Allows("cus_pro", 49, 1) || projects.Allows("cus_pro", 50, 1) {
		t.Error("enabled/allows through the handle")
	}
	if d := projects.Check("cus_ent"); !d.Limit.Unlimited || d.Reason != entitle.ReasonSubscription {
		t.Errorf("check %+v", d)
	}
	// Invalid UTF-8 in the customer id matches no customer, as for the lookups by key.
	if d := projects.Check("cus_pro\xff"); d.Reason != entitle.ReasonCustomerNotFound || d.Limit.Value != 3 {
		t.Errorf("invalid customer: %+v", d)
	}
	if _, err := e.Feature("bad\xff"); !errors.Is(err, entitle.ErrInvalidUTF8) {
		t.Errorf("invalid key: %v", err)
	}
	// A key not in the snapshot gives a handle that answers feature_not_found.
	missing, err := e.Feature("not_yet")
	if err != nil || missing.Check("cus_pro").Reason != entitle.ReasonFeatureNotFound || missing.Enabled("cus_pro") {
		t.Errorf("missing feature: %v", err)
	}

	sso, _ := e.Feature("sso")
	all, err := e.CheckFeatures("cus_pro", []entitle.Feature{sso, projects, missing})
	if err != nil || len(all) != 3 || !all[0].Enabled || all[1].Limit.Value != 50 || all[2].Reason != entitle.ReasonFeatureNotFound {
		t.Errorf("CheckFeatures: %+v, %v", all, err)
	}
	customers := []string{"cus_pro", "cus_ent", "nobody", "cus_override", "cus_pro\xff"}
	many, err := projects.CheckManyAt(customers, when)
	if err != nil || len(many) != len(customers) {
		t.Fatalf("CheckMany: %+v, %v", many, err)
	}
	for i, c := range customers {
		if want := e.CheckAt(c, "projects", when); many[i] != want {
			t.Errorf("CheckMany[%d] (%q) = %+v, want %+v", i, c, many[i], want)
		}
	}
	if none, err := projects.CheckMany(nil); err != nil || len(none) != 0 {
		t.Errorf("empty batch: %v, %v", none, err)
	}
}

// Handles stay right across content whose feature list changes: a removed feature is not found
// (never another feature's value), and a reordered list still answers the handle's own feature.
func TestFeatureHandlesAcrossSwaps(t *testing.T) {
	dir := t.TempDir()
	build := func(name string, catalog string) []byte {
		src := writeFile(t, dir, name+".json", []byte(catalog))
		runCLI(t, "build", src, "-o", dir+"/"+name+".snap")
		return readFile(t, dir+"/"+name+".snap")
	}
	v1 := build("v1", `{"features": [{"key": "a", "type": "limit", "default": 1}, {"key": "b", "type": "limit", "default": 2}]}`)
	reordered := build("v2", `{"features": [{"key": "b", "type": "limit", "default": 2}, {"key": "a", "type": "limit", "default": 1}]}`)
	without := build("v3", `{"features": [{"key": "b", "type": "limit", "default": 2}]}`)

	e, err := entitle.FromSnapshot(v1)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	a, _ := e.Feature("a")
	if a.Limit("x").Value != 1 {
		t.Fatal("v1")
	}
	if err := e.Replace(reordered); err != nil || a.Limit("x").Value != 1 {
		t.Fatalf("reordered: %v, limit %v", err, a.Limit("x"))
	}
	if err := e.Replace(without); err != nil || a.Check("x").Reason != entitle.ReasonFeatureNotFound || a.Limit("x").Value != 0 {
		t.Fatalf("removed: %v, %+v", err, a.Check("x"))
	}
	if err := e.Replace(v1); err != nil || a.Limit("x").Value != 1 {
		t.Fatalf("back: %v", err)
	}
	// A handle from another engine works too (looked up again by key).
	other, _ := entitle.FromSnapshot(reordered)
	defer other.Close()
	b, _ := other.Feature("b")
	if all, err := e.CheckFeatures("x", []entitle.Feature{b, a}); err != nil || all[0].Limit.Value != 2 || all[1].Limit.Value != 1 {
		t.Errorf("handles of another engine: %+v, %v", all, err)
	}
}

func TestFeatureHandlesOnAClosedEngine(t *testing.T) {
	e, err := entitle.FromCatalogJSON(testCatalog(50))
	if err != nil {
		t.Fatal(err)
	}
	sso, _ := e.Feature("sso")
	_ = e.Close()
	if sso.Enabled("cus_pro") || sso.Check("cus_pro").Reason != entitle.ReasonClosed || sso.Limit("cus_pro") != (entitle.Limit{}) {
		t.Error("a handle of a closed engine must fail closed")
	}
	if _, err := sso.CheckMany([]string{"cus_pro"}); !errors.Is(err, entitle.ErrClosed) {
		t.Errorf("CheckMany: %v", err)
	}
	if _, err := e.CheckFeatures("cus_pro", []entitle.Feature{sso}); !errors.Is(err, entitle.ErrClosed) {
		t.Errorf("CheckFeatures: %v", err)
	}
	if _, err := e.Feature("sso"); !errors.Is(err, entitle.ErrClosed) {
		t.Errorf("Feature: %v", err)
	}
}

func TestFeatureHandlesAllocateNothing(t *testing.T) {
	e := mustEngine(t, 50)
	f, _ := e.Feature("projects")
	customer := strings.Clone("cus_pro")
	var sink bool
	var d entitle.Decision
	for name, call := range map[string]func(){
		"Enabled": func() { sink = f.Enabled(customer) },
		"Limit":   func() { sink = f.Limit(customer).Unlimited },
		"Allows":  func() { sink = f.Allows(customer, 1, 1) },
		"Check":   func() { d = f.Check(customer) },
		"CheckAt": func() { d = f.CheckAt(customer, time.Unix(at, 0)) },
	} {
		if n := testing.AllocsPerRun(1000, call); n != 0 {
			t.Errorf("Feature.%s allocates %v times per call", name, n)
		}
	}
	_, _ = sink, d
}
