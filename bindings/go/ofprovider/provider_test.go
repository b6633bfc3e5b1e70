package ofprovider_test

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	entitle "example.invalid/entitle/bindings/go"
	"example.invalid/entitle/bindings/go/ofprovider"
	of "github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"
)

const catalog = `{
  "features": [
    {"key": "sso", "type": "flag", "default": false},
    {"key": "projects", "type": "limit", "default": 3},
    {"key": "api_calls", "type": "limit", "default": 0}
  ],
  "products": [
    {"id": "prod_pro", "features": {"sso": true, "projects": 50}},
    {"id": "prod_ent", "features": {"sso": true, "projects": "unlimited"}}
  ],
  "customers": [
    {"id": "cus_pro", "subscriptions": [{"id": "s1", "status": "active", "items": [{"product": "prod_pro"}]}]},
    {"id": "cus_ent", "subscriptions": [{"id": "s2", "status": "active", "items": [{"product": "prod_ent"}]}]},
    {"id": "cus_override", "overrides": {"sso": true}},
    {"id": "cus_trial", "overrides": {"sso": {"value": true, "expires_at": 1750000000}}}
  ]
}`

// client sets up an isolated OpenFeature API with the entitle provider (no global state).
func client(t *testing.T) (*of.Client, *entitle.Engine) {
	t.Helper()
	engine, err := entitle.FromCatalogJSON([]byte(catalog))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	api := isolated.NewAPI()
	t.Cleanup(func() { _ = api.Shutdown(context.Background()) })
	if err := api.SetProviderAndWait(t.Context(), ofprovider.New(engine)); err != nil {
		t.Fatal(err)
	}
	return api.NewClient(), engine
}

func customer(id string) of.EvaluationContext {
	return of.NewEvaluationContext(id, nil)
}

func TestBooleanEvaluations(t *testing.T) {
	c, _ := client(t)
	ctx := t.Context()
	for _, tc := range []struct {
		customer, flag string
		value          bool
		reason         of.Reason
		entitleReason  string
	}{
		{"cus_pro", "sso", true, of.TargetingMatchReason, "subscription"},
		{"cus_override", "sso", true, of.TargetingMatchReason, "override"},
		{"cus_free", "sso", false, of.DefaultReason, "customer_not_found"},
		{"cus_pro", "projects", true, of.TargetingMatchReason, "subscription"}, // a limit > 0 is enabled
		{"cus_pro", "api_calls", false, of.DefaultReason, "default"},
	} {
		d, err := c.BooleanValueDetails(ctx, tc.flag, !tc.value, customer(tc.customer))
		want := "false"
		if tc.value {
			want = "true"
		}
		if err != nil || d.Value != tc.value || d.Reason != tc.reason || d.Variant != want {
			t.Errorf("%s/%s: %+v, %v", tc.customer, tc.flag, d, err)
		}
		if r, _ := d.FlagMetadata.GetString("entitleReason"); r != tc.entitleReason {
			t.Errorf("%s/%s: metadata %v", tc.customer, tc.flag, d.FlagMetadata)
		}
	}
}

func TestIntAndFloatEvaluations(t *testing.T) {
	c, _ := client(t)
	ctx := t.Context()
	d, err := c.IntValueDetails(ctx, "projects", -1, customer("cus_pro"))
	if err != nil || d.Value != 50 || d.Reason != of.TargetingMatchReason {
		t.Errorf("pro projects: %+v, %v", d, err)
	}
	d, err = c.IntValueDetails(ctx, "projects", -1, customer("cus_ent"))
	if unlimited, _ := d.FlagMetadata.GetBool("unlimited"); err != nil || d.Value != math.MaxInt64 || !unlimited || d.Variant != "unlimited" {
		t.Errorf("unlimited projects: %+v, %v", d, err)
	}
	d, err = c.IntValueDetails(ctx, "projects", -1, customer("cus_nobody"))
	if r, _ := d.FlagMetadata.GetString("entitleReason"); err != nil || d.Value != 3 || d.Reason != of.DefaultReason || d.Variant != "3" || r != "customer_not_found" {
		t.Errorf("unknown customer's projects: %+v, %v", d, err)
	}
	f, err := c.FloatValueDetails(ctx, "projects", -1, customer("cus_ent"))
	if err != nil || !math.IsInf(f.Value, 1) {
		t.Errorf("unlimited as a float: %+v, %v", f, err)
	}
	f, err = c.FloatValueDetails(ctx, "projects", -1, customer("cus_pro"))
	if err != nil || f.Value != 50 {
		t.Errorf("pro projects as a float: %+v, %v", f, err)
	}
	// A flag has no number.
	d, err = c.IntValueDetails(ctx, "sso", -1, customer("cus_pro"))
	if err == nil || d.Value != -1 || d.ErrorCode != of.TypeMismatchCode {
		t.Errorf("int of a flag: %+v, %v", d, err)
	}
	s, err := c.StringValueDetails(ctx, "sso", "x", customer("cus_pro"))
	if err == nil || s.Value != "x" || s.ErrorCode != of.TypeMismatchCode {
		t.Errorf("string of a flag: %+v, %v", s, err)
	}
}

func TestObjectAndStringAreTypeMismatches(t *testing.T) {
	c, _ := client(t)
	d, err := c.ObjectValueDetails(t.Context(), "projects", "dflt", customer("cus_ent"))
	if err == nil || d.Value != "dflt" || d.ErrorCode != of.TypeMismatchCode {
		t.Errorf("object: %+v, %v", d, err)
	}
}

// The evaluation context's "at" evaluates at that time: an override that expires.
func TestEvaluationTime(t *testing.T) {
	c, _ := client(t)
	ctx := t.Context()
	before := of.NewEvaluationContext("cus_trial", map[string]any{"at": time.Unix(1_700_000_000, 0)})
	after := of.NewEvaluationContext("cus_trial", map[string]any{"at": int64(1_800_000_000)})
	if v, err := c.BooleanValue(ctx, "sso", false, before); err != nil || !v {
		t.Errorf("before the override expires: %v, %v", v, err)
	}
	if v, err := c.BooleanValue(ctx, "sso", true, after); err != nil || v {
		t.Errorf("after the override expired: %v, %v", v, err)
	}
}

func TestErrors(t *testing.T) {
	c, engine := client(t)
	ctx := t.Context()
	d, err := c.BooleanValueDetails(ctx, "nope", true, customer("cus_pro"))
	if err == nil || !d.Value || d.ErrorCode != of.FlagNotFoundCode || d.Reason != of.ErrorReason {
		t.Errorf("unknown feature: %+v, %v", d, err)
	}
	d, err = c.BooleanValueDetails(ctx, "sso", true, of.NewTargetlessEvaluationContext(nil))
	if err == nil || !d.Value || d.ErrorCode != of.TargetingKeyMissingCode {
		t.Errorf("no targeting key: %+v, %v", d, err)
	}
	d, err = c.BooleanValueDetails(ctx, "sso", true, customer(""))
	if err == nil || !d.Value || d.ErrorCode != of.TargetingKeyMissingCode {
		t.Errorf("empty targeting key: %+v, %v", d, err)
	}
	_ = engine.Close()
	d, err = c.BooleanValueDetails(ctx, "sso", true, customer("cus_pro"))
	if err == nil || !d.Value || d.ErrorCode != of.ProviderNotReadyCode {
		t.Errorf("closed engine: %+v, %v", d, err)
	}
}

func TestInitWaitsForContent(t *testing.T) {
	// An engine syncing from nowhere never gets content: initialization reports it.
	engine, err := entitle.Connect(entitle.SyncConfig{URL: "http://127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	api := isolated.NewAPI()
	defer api.Shutdown(context.Background())
	err = api.SetProviderAndWait(t.Context(), ofprovider.New(engine, ofprovider.WithReadyTimeout(200e6)))
	if err == nil {
		t.Fatal("initialization succeeded without content")
	}
}

// A change of the engine's content reaches the SDK's handlers as PROVIDER_CONFIGURATION_CHANGED.
func TestContentChangesAreConfigurationChanges(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "catalog.json")
	if err := os.WriteFile(src, []byte(catalog), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2"} {
		out, err := exec.Command(entitleBin(t), "build", src, "-o", filepath.Join(dir, "v"+v+".snap"), "--version", v).CombinedOutput()
		if err != nil {
			t.Fatalf("entitle build: %v\n%s", err, out)
		}
	}
	engine, err := entitle.FromFile(filepath.Join(dir, "v1.snap"))
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	api := isolated.NewAPI()
	defer api.Shutdown(context.Background())
	changes := make(chan of.EventDetails, 4)
	handler := func(d of.EventDetails) { changes <- d }
	api.AddHandler(of.ProviderConfigChange, &handler)
	if err := api.SetProviderAndWait(t.Context(), ofprovider.New(engine)); err != nil {
		t.Fatal(err)
	}
	if err := engine.ReplaceFile(filepath.Join(dir, "v2.snap")); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-changes:
		if d.ProviderName != "entitle" || d.EventMetadata["new_version"] != int64(2) {
			t.Errorf("event details: %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no PROVIDER_CONFIGURATION_CHANGED after the content changed")
	}
}

// entitleBin is the entitle command: $ENTITLE_BIN or the repository's release build.
func entitleBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("ENTITLE_BIN"); bin != "" {
		return bin
	}
	_, file, _, _ := runtime.Caller(0)
	target := os.Getenv("CARGO_TARGET_DIR")
	repo := filepath.Join(filepath.Dir(file), "..", "..", "..")
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
