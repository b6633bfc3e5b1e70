package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	entitle "example.invalid/entitle/bindings/go"
)

const catalog = `{
  "features": [
    {"key": "audit_log", "type": "flag", "default": false},
    {"key": "projects", "type": "limit", "default": 3}
  ],
  "products": [{"id": "prod_pro", "features": {"audit_log": true, "projects": 50}}],
  "customers": [
    {"id": "cus_pro", "subscriptions": [{"id": "s1", "status": "active", "items": [{"product": "prod_pro"}]}]},
    {"id": "cus_free"}
  ]
}`

// The example served on loopback (httptest listens on 127.0.0.1, a free port) and called over HTTP.
func TestMiddlewareOnLoopback(t *testing.T) {
	engine, err := entitle.FromCatalogJSON([]byte(catalog))
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	server := httptest.NewServer(Routes(engine))
	defer server.Close()

	for _, tc := range []struct {
		method, path, customer string
		status                 int
		reason                 string
	}{
		{"GET", "/reports/audit-log", "cus_pro", http.StatusOK, ""},
		{"GET", "/reports/audit-log", "cus_free", http.StatusForbidden, "default"},
		{"GET", "/reports/audit-log", "cus_nobody", http.StatusForbidden, "customer_not_found"},
		{"GET", "/reports/audit-log", "", http.StatusForbidden, "customer_not_found"},
		{"POST", "/projects?existing=49", "cus_pro", http.StatusOK, ""},
		{"POST", "/projects?existing=50", "cus_pro", http.StatusForbidden, "limit_reached"},
		{"POST", "/projects?existing=2", "cus_free", http.StatusOK, ""},
		{"POST", "/projects?existing=3", "cus_free", http.StatusForbidden, "limit_reached"},
	} {
		req, err := http.NewRequest(tc.method, server.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.customer != "" {
			req.Header.Set(CustomerHeader, tc.customer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body denial
		if tc.status == http.StatusForbidden {
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Errorf("%s %s as %q: the 403 body: %v", tc.method, tc.path, tc.customer, err)
			}
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || body.Reason != tc.reason {
			t.Errorf("%s %s as %q: %d %q, want %d %q", tc.method, tc.path, tc.customer,
				resp.StatusCode, body.Reason, tc.status, tc.reason)
		}
	}
}
