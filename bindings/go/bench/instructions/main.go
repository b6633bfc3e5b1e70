// Command instructions runs one kind of call N times, for bench/instructions.sh to count the
// instructions per call under callgrind (a count the machine's load does not change).
//
//	instructions ROW N
//
// Rows: loop (the loop alone), map (the map[string]map[string]bool floor), enabled, limit,
// allows, check (by key, a feature), enabled_unknown (by key, a key that is no feature),
// feature_enabled, feature_check (through a Feature handle). The customer is the same every call.
package main

import (
	"fmt"
	"os"
	"strconv"

	entitle "example.invalid/entitle/bindings/go"
)

const catalog = `{
  "features": [
    {"key": "sso", "type": "flag", "default": false},
    {"key": "projects", "type": "limit", "default": 3},
    {"key": "seats", "type": "limit", "default": 1}
  ],
  "products": [{"id": "prod_pro", "features": {"sso": true, "projects": 50, "seats": 10}}],
  "customers": [
    {"id": "cus_0001", "subscriptions": [{"id": "sub_1", "status": "active", "items": [{"product": "prod_pro"}]}]},
    {"id": "cus_0002", "overrides": {"projects": 7}}
  ]
}`

var (
	sinkBool     bool
	sinkLimit    entitle.Limit
	sinkDecision entitle.Decision
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: instructions ROW N")
		os.Exit(2)
	}
	row := os.Args[1]
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	e, err := entitle.FromCatalogJSON([]byte(catalog))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer e.Close()
	sso, err := e.Feature("sso")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	floor := map[string]map[string]bool{"cus_0001": {"sso": true, "projects": true}}
	customer := "cus_0001"
	// The same warm-up for every row and every N: each kind of call once.
	sinkBool = e.Enabled(customer, "sso") && e.Enabled(customer, "nothing")
	sinkLimit = e.Limit(customer, "projects")
	sinkBool = e.Allows(customer, "projects", 1, 1)
	sinkDecision = e.Check(customer, "projects")
	sinkBool = sso.Enabled(customer)
	sinkDecision = sso.Check(customer)
	sinkBool = floor[customer]["sso"]
	switch row {
	case "loop":
		for i := 0; i < n; i++ {
			sinkBool = i < 0
		}
	case "map":
		for i := 0; i < n; i++ {
			sinkBool = floor[customer]["sso"]
		}
	case "enabled":
		for i := 0; i < n; i++ {
			sinkBool = e.Enabled(customer, "sso")
		}
	case "enabled_unknown":
		for i := 0; i < n; i++ {
			sinkBool = e.Enabled(customer, "nothing")
		}
	case "limit":
		for i := 0; i < n; i++ {
			sinkLimit = e.Limit(customer, "projects")
		}
	case "allows":
		for i := 0; i < n; i++ {
			sinkBool = e.Allows(customer, "projects", 1, 1)
		}
	case "check":
		for i := 0; i < n; i++ {
			sinkDecision = e.Check(customer, "projects")
		}
	case "feature_enabled":
		for i := 0; i < n; i++ {
			sinkBool = sso.Enabled(customer)
		}
	case "feature_check":
		for i := 0; i < n; i++ {
			sinkDecision = sso.Check(customer)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown row %q\n", row)
		os.Exit(2)
	}
}
