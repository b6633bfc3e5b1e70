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
// finding the key. A key gets a handle on its first lookup that finds it to be a feature of the
// content; keys that are not features (any string an application passes) never get one, and at
// most maxCachedKeys do. Lookups read cur without a lock: an immutable table, replaced whole under
// mu when a key is added or after the content changed.
//
// Handles answer right across every content change by themselves (one resolved against an older
// feature list finds its key again, never answering for another feature), so the table is always
// correct; refresh drops the handles of an older feature list, so that their keys get handles on
// the direct path again. Replace, ReplaceFile and ApplyDelta refresh it; on an engine that syncs,
// so does the goroutine that follows its events (followEvents).
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
	if t := k.cur.Load(); t != nil && len(t.entries) >= maxCachedKeys || k.stopped.Load() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.cur.Load()
	var entries []keyEntry
	if old != nil {
		if _, ok := old.get(key); ok || len(old.entries) >= maxCachedKeys {
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

// refresh drops the handles resolved against another feature list than the content's current one
// (ptr is the live C engine). Their keys get new handles on their next lookup, if they are still
// features.
func (k *keyCache) refresh(ptr *C.entitle_engine) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.cur.Load()
	if old == nil {
		return
	}
	// A handle resolved now carries the identity of the current feature list.
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
	switch len(kept) {
	case len(old.entries):
	case 0:
		k.cur.Store(nil)
	default:
		k.cur.Store(newKeyTable(kept))
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
