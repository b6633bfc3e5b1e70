// Package entitle is the Go package of entitle, an embedded entitlement engine: it answers "may
// this customer use this feature, and up to what limit?" from memory, with the same answers as
// every other entitle package (the project's docs/SEMANTICS.md and its conformance suite).
//
// It calls libentitle, the project's C library, through cgo, linked statically: the program needs
// no shared library at run time.
//
//	engine, err := entitle.FromFile("catalog.snap")
//	if err != nil {
//		return err
//	}
//	defer engine.Close()
//
//	if engine.Enabled("cus_123", "sso") { ... }
//	if engine.Allows("cus_123", "projects", projectCount, 1) { ... }
//	limit := engine.Limit("cus_123", "seats") // Limit{Value: 5} or Limit{Unlimited: true}
//	d := engine.Check("cus_123", "seats")     // type, enabled, limit, reason, version
//
// # Keeping data fresh
//
// Connect follows an edge (the files `entitle publish` writes, served by `entitle serve` or any
// static host) in a background thread; WaitReady waits for the first content, Status reports the
// sync, Close stops it.
//
// # Concurrency
//
// An Engine is safe for concurrent use by any number of goroutines. Lookups take no lock and never
// wait for a writer: a lookup sees the content before or after a concurrent Replace, ApplyDelta or
// sync update, never a mix. Close may be called at any time, from any goroutine, any number of
// times: it waits for calls in flight to finish before it releases the engine, and later calls
// fail closed (false, a zero Limit, ReasonClosed, ErrClosed).
//
// # Errors
//
// Every error is an *Error carrying the library's result Code and its detail; errors.Is matches
// it against the sentinel of its code (ErrInvalidCatalog, ErrCorrupt, ErrClosed, ...). The
// library's per-thread error detail is read inside the same C call that failed, so it is the
// detail of this failure even though goroutines move between threads.
//
// # Cost
//
// Enabled, Limit, Allows and Check cost one cgo call each, allocate nothing, and pass strings as
// pointer and length without copying them.
package entitle
