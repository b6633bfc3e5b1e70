// Command middleware serves an HTTP API whose routes are guarded by entitlements: a net/http
// middleware answers 403, with the reason, when the calling customer is not entitled.
//
//	go run ./examples/middleware -snapshot catalog.snap -addr 127.0.0.1:8080
//	curl -H 'X-Customer-Id: cus_123' http://127.0.0.1:8080/reports/audit-log
//
// The customer comes from the X-Customer-Id header here; a real service takes it from its
// authenticated session.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strconv"

	entitle "example.invalid/entitle/bindings/go"
)

// CustomerHeader carries the customer id in this example.
const CustomerHeader = "X-Customer-Id"

// denial is the body of a 403 answer.
type denial struct {
	Error    string `json:"error"`
	Customer string `json:"customer"`
	Feature  string `json:"feature"`
	Reason   string `json:"reason"`
}

func deny(w http.ResponseWriter, customer, feature string, reason entitle.Reason) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_ = json.NewEncoder(w).Encode(denial{Error: "not entitled", Customer: customer, Feature: feature,
		Reason: string(reason)})
}

// RequireFeature lets a request through only when its customer has feature enabled; otherwise it
// answers 403 with a JSON body naming the reason (for example "default": the plan does not
// include it, or "customer_not_found").
func RequireFeature(engine *entitle.Engine, feature string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			customer := r.Header.Get(CustomerHeader)
			if d := engine.Check(customer, feature); !d.Enabled {
				deny(w, customer, feature, d.Reason)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// RequireRoom lets a request through only when its customer may use one more of a limit feature
// on top of the usage that usageOf reports (a project count, say); otherwise it answers 403.
func RequireRoom(engine *entitle.Engine, feature string, usageOf func(*http.Request) uint64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			customer := r.Header.Get(CustomerHeader)
			d := engine.Check(customer, feature)
			if !d.Allows(usageOf(r), 1) {
				reason := d.Reason
				if d.Enabled {
					reason = "limit_reached"
				}
				deny(w, customer, feature, reason)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Routes builds the example API on engine.
func Routes(engine *entitle.Engine) http.Handler {
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /reports/audit-log", RequireFeature(engine, "audit_log")(ok))
	mux.Handle("POST /projects", RequireRoom(engine, "projects", func(r *http.Request) uint64 {
		n, _ := strconv.ParseUint(r.URL.Query().Get("existing"), 10, 64) // a real service counts them
		return n
	})(ok))
	return mux
}

func main() {
	snapshot := flag.String("snapshot", "", "a snapshot or catalog JSON file")
	addr := flag.String("addr", "127.0.0.1:8080", "the address to listen on")
	flag.Parse()
	engine, err := entitle.FromFile(*snapshot)
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	log.Printf("listening on http://%s", *addr)
	log.Fatal(http.ListenAndServe(*addr, Routes(engine)))
}
