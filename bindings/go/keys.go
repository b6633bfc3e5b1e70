//go:build cgo

package entitle

/*
#include <entitle.h>
*/
import "C"

import (
	"encoding/binary"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// maxCachedKeys bounds how many feature keys an engine keeps handles for; lookups by key of
// further features take the path by key, as lookups of keys that are not features always do.
const maxCachedKeys = 256

// keyCache holds the feature handles that lookups by key (Enabled, Limit, Allows, Check and their
// At forms) use, so that they cost what a Feature's lookups do: the library then skips hashing and
// finding the key. Lookups read cur without a lock: an immutable table, replaced whole under mu.
//
// refresh fills the table with a handle for every feature of the content (a complete table) when
// there are at most maxCachedKeys of them; a lookup of a key the complete table does not hold then
// takes the library's call by key, as every lookup did before there were handles. Otherwise (more
// features, or no content yet) a key gets a handle on its first lookup that finds it to be a
// feature (learn), up to maxCachedKeys of them. Keys that are not features (any string an
// application passes) never get one.
//
// Handles answer right across every content change by themselves (one resolved against an older
// feature list finds its key again, never answering for another feature), and the library's call
// by key always answers from the current content: so the table is always correct, also between a
// change and the refresh that follows it, which only puts the handles back on the direct path.
// Replace, ReplaceFile and ApplyDelta refresh it; on an engine that syncs, so does the goroutine
// that follows its events (followEvents).
type keyCache struct {
	cur atomic.Pointer[keyTable]
	mu  sync.Mutex
	// stopped is set when a key could not be resolved (the process's table of keys is full, or
	// the engine is closed): no key is added after that, so that no lookup tries again each time.
	stopped atomic.Bool
}

// learn keeps a handle for key, which a lookup by key has just found to be a feature of e's
// content.
func (k *keyCache) learn(e *Engine, key string) {
	if key == "" {
		return // no feature has it (the table's empty slots have length 0)
	}
	if t := k.cur.Load(); t != nil && t.final() || k.stopped.Load() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.cur.Load()
	var entries []keyEntry
	if old != nil {
		if _, ok := old.get(key); ok || old.final() {
			return
		}
		entries = old.entries
	}
	// Never the caller's bytes, which may be reused (and so never make them escape): a copy.
	key = strings.Clone(key)
	if !e.enter() {
		k.stopped.Store(true)
		return
	}
	h, ok := resolve(e.ptr, key)
	e.exit()
	if !ok {
		k.stopped.Store(true)
		return
	}
	entries = append(entries[:len(entries):len(entries)], keyEntry{key: key, h: h})
	k.cur.Store(newKeyTable(entries))
}

// refresh brings the table up to date with the content of ptr (the live C engine): a complete
// table of its features when there are at most maxCachedKeys; otherwise the handles kept so far
// that were resolved against its feature list.
func (k *keyCache) refresh(ptr *C.entitle_engine) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.cur.Load()
	// A handle resolved now carries the identity of the current feature list.
	if old != nil && old.complete {
		if h, ok := resolve(ptr, old.entries[0].key); ok && h.table == old.entries[0].h.table {
			return // the same feature list
		}
	}
	if keys, ok := featureKeysOf(ptr); ok && len(keys) > 0 && len(keys) <= maxCachedKeys && !k.stopped.Load() {
		entries := make([]keyEntry, 0, len(keys))
		for _, key := range keys {
			if key == "" {
				break // no valid content has it, and the table cannot hold it: learn instead
			}
			h, ok := resolve(ptr, key)
			if !ok {
				k.stopped.Store(true) // the process's table of keys is full
				break
			}
			entries = append(entries, keyEntry{key: key, h: h})
		}
		if len(entries) == len(keys) {
			t := newKeyTable(entries)
			t.complete = true
			k.cur.Store(t)
			return
		}
	}
	if old == nil {
		return
	}
	current, ok := resolve(ptr, old.entries[0].key)
	if !ok {
		k.cur.Store(nil)
		return
	}
	var kept []keyEntry
	for _, en := range old.entries {
		if en.h.table == current.table {
			kept = append(kept, en)
		}
	}
	if len(kept) == 0 {
		k.cur.Store(nil)
	} else {
		k.cur.Store(newKeyTable(kept)) // learns the others again
	}
}

// keyEntry is a feature key and its handle.
type keyEntry struct {
	key string
	h   C.entitle_feature
}

// keyTable finds the handle of a key: open addressing over a power-of-two number of slots, at most
// half of them used. Never changed once built.
type keyTable struct {
	entries []keyEntry
	slots   []keySlot
	mask    uint64
	// lengths has bit min(n, 63) set for each key of n bytes: most keys that are no features
	// (each lookup of one takes the path by key) are told apart by their length alone.
	lengths uint64
	// complete: the table holds every feature of the content it was made for (by refresh).
	complete bool
}

// final reports whether no key is added to the table: it holds every feature of the content, or
// as many keys as it takes. A lookup of a key it does not hold then takes the library's call by
// key.
func (t *keyTable) final() bool {
	return t.complete || len(t.entries) >= maxCachedKeys
}

// keySlot is a used slot when n > 0 (learn never keeps the empty key). For keys of up to 16 bytes,
// (n, a, b) is the whole key (see keyWords), so no byte comparison is needed.
type keySlot struct {
	a, b uint64
	n    int
	key  string
	h    C.entitle_feature
}

func newKeyTable(entries []keyEntry) *keyTable {
	size := 8
	for size < 2*len(entries) {
		size *= 2
	}
	t := &keyTable{entries: entries, slots: make([]keySlot, size), mask: uint64(size - 1)}
	for _, en := range entries {
		a, b := keyWords(en.key)
		i := keyHash(a, b, len(en.key)) & t.mask
		for t.slots[i].n != 0 {
			i = (i + 1) & t.mask
		}
		t.slots[i] = keySlot{a: a, b: b, n: len(en.key), key: en.key, h: en.h}
		t.lengths |= 1 << min(len(en.key), 63)
	}
	return t
}

// get gives the handle of key, if the table has it. Keys of up to 16 bytes, the usual, take a path
// that calls nothing (a call costs spilled registers): keyWords by hand, and no byte comparison.
func (t *keyTable) get(key string) (C.entitle_feature, bool) {
	n := uintptr(len(key))
	if t.lengths&(1<<min(n, 63)) == 0 {
		return C.entitle_feature{}, false
	}
	if n > 16 {
		return t.getLong(key)
	}
	var a, b uint64
	p := unsafe.Pointer(unsafe.StringData(key))
	switch {
	case n >= 8:
		a = binary.LittleEndian.Uint64((*[8]byte)(p)[:])
		b = binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(p, n-8))[:])
	case n >= 4:
		a = uint64(binary.LittleEndian.Uint32((*[4]byte)(p)[:]))
		b = uint64(binary.LittleEndian.Uint32((*[4]byte)(unsafe.Add(p, n-4))[:]))
	case n > 0:
		a = uint64(*(*byte)(p))<<16 | uint64(*(*byte)(unsafe.Add(p, n/2)))<<8 | uint64(*(*byte)(unsafe.Add(p, n-1)))
	}
	for i := keyHash(a, b, int(n)) & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.n == 0 {
			return C.entitle_feature{}, false
		}
		if s.n == int(n) && s.a == a && s.b == b {
			return s.h, true
		}
	}
}

// getLong is get for keys longer than 16 bytes, whose words are a hash.
func (t *keyTable) getLong(key string) (C.entitle_feature, bool) {
	a, b := keyWords(key)
	for i := keyHash(a, b, len(key)) & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.n == 0 {
			return C.entitle_feature{}, false
		}
		if s.n == len(key) && s.a == a && s.b == b && s.key == key {
			return s.h, true
		}
	}
}

// keyWords reads key into two words. For keys of up to 16 bytes they hold every byte, so that two
// keys of the same length are equal exactly when their words are: up to 3 bytes, the first, middle
// and last byte; up to 7, the first and the last 4; up to 16, the first and the last 8. Longer
// keys also mix in 8 bytes from the middle (a hash then, not the key). The reads stay within the
// key's n bytes.
func keyWords(key string) (a, b uint64) {
	n := uintptr(len(key))
	p := unsafe.Pointer(unsafe.StringData(key))
	switch {
	case n >= 8:
		a = binary.LittleEndian.Uint64((*[8]byte)(p)[:])
		b = binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(p, n-8))[:])
		if n > 16 {
			a ^= bits.RotateLeft64(binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(p, n/2-4))[:]), 32)
		}
	case n >= 4:
		a = uint64(binary.LittleEndian.Uint32((*[4]byte)(p)[:]))
		b = uint64(binary.LittleEndian.Uint32((*[4]byte)(unsafe.Add(p, n-4))[:]))
	case n > 0:
		a = uint64(*(*byte)(p))<<16 | uint64(*(*byte)(unsafe.Add(p, n/2)))<<8 | uint64(*(*byte)(unsafe.Add(p, n-1)))
	}
	return a, b
}

// keyHash mixes a key's words and length into a slot number (before the mask).
func keyHash(a, b uint64, n int) uint64 {
	hi, lo := bits.Mul64(a^0x9e3779b97f4a7c15, b^0xbf58476d1ce4e5b9^uint64(n))
	return hi ^ lo
}
