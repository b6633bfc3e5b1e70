package entitle

import (
	"slices"
	"unsafe"
)

// EnabledUnguarded exposes enabledUnguarded to the benchmarks (package entitle_test).
var EnabledUnguarded = (*Engine).enabledUnguarded

// ForgetFeatureKeys drops the feature handles e keeps for lookups by key, so that the next lookup
// of each key takes the path by key.
func ForgetFeatureKeys(e *Engine) {
	e.keys.mu.Lock()
	defer e.keys.mu.Unlock()
	e.keys.cur.Store(nil)
}

// RefreshFeatureKeys makes e take handles for its content's features, as after a swap.
func RefreshFeatureKeys(e *Engine) {
	if e.enter() {
		e.keys.refresh(e.ptr)
		e.exit()
	}
}

// SaveFeatureKeys gives the feature handles e keeps now, for RestoreFeatureKeys.
func SaveFeatureKeys(e *Engine) any {
	return e.keys.cur.Load()
}

// RestoreFeatureKeys makes e keep the handles SaveFeatureKeys gave, whatever the content now is.
func RestoreFeatureKeys(e *Engine, saved any) {
	e.keys.mu.Lock()
	defer e.keys.mu.Unlock()
	e.keys.cur.Store(saved.(*keyTable))
}

// FeatureKeys gives the keys e keeps feature handles for, sorted, and how many of those handles
// were resolved against another feature list than the content's current one.
func FeatureKeys(e *Engine) (keys []string, stale int) {
	e.keys.mu.Lock()
	defer e.keys.mu.Unlock()
	t := e.keys.cur.Load()
	if t == nil {
		return nil, 0
	}
	current, err := e.Feature(t.entries[0].key)
	if err != nil {
		panic(err)
	}
	for _, en := range t.entries {
		keys = append(keys, en.key)
		if en.h.table != current.h.table {
			stale++
		}
	}
	slices.Sort(keys)
	return keys, stale
}

// TableFinds builds a key table of keys and reports, for each probe, whether the table finds it
// and, if so, the position in keys of the key it answers for.
func TableFinds(keys, probes []string) (found []int) {
	entries := make([]keyEntry, len(keys))
	for i, k := range keys {
		entries[i].key = k
		*(*uint32)(unsafe.Pointer(&entries[i].h.index)) = uint32(i)
	}
	t := newKeyTable(entries)
	for _, p := range probes {
		h, ok := t.get(p)
		if !ok {
			found = append(found, -1)
			continue
		}
		found = append(found, int(*(*uint32)(unsafe.Pointer(&h.index))))
	}
	return found
}
