package entitle

import (
	"log/slog"
	"strconv"
	"time"
)

// Limit is a feature's allowance: a number, or unlimited.
//
// Unlimited is said explicitly rather than with a magic number: when Unlimited is true, Value is
// 0 and means nothing. Finite limits are at most math.MaxInt64.
type Limit struct {
	// Value is the limit when Unlimited is false.
	Value uint64
	// Unlimited is true when the feature has no limit.
	Unlimited bool
}

// Allows reports whether usage plus requested fits in the limit (a sum that overflows never fits;
// an unlimited limit allows everything).
func (l Limit) Allows(usage, requested uint64) bool {
	if l.Unlimited {
		return true
	}
	sum := usage + requested
	return sum >= usage && sum <= l.Value
}

// String gives the number, or "unlimited".
func (l Limit) String() string {
	if l.Unlimited {
		return "unlimited"
	}
	return strconv.FormatUint(l.Value, 10)
}

// Reason says why a decision came out as it did. The values are spelled as in the conformance
// suite and every other entitle package.
type Reason string

// The reasons a decision can have.
const (
	// ReasonDefault: the feature's default applied; no granting subscription gave more.
	ReasonDefault Reason = "default"
	// ReasonSubscription: a granting subscription's products gave the value.
	ReasonSubscription Reason = "subscription"
	// ReasonOverride: a customer override replaced the value.
	ReasonOverride Reason = "override"
	// ReasonCustomerNotFound: the customer is not in the snapshot; the feature's default applied.
	ReasonCustomerNotFound Reason = "customer_not_found"
	// ReasonFeatureNotFound: the feature is not in the snapshot.
	ReasonFeatureNotFound Reason = "feature_not_found"
	// ReasonClosed: the engine was closed before the call, so nothing was evaluated and the answer
	// fails closed (not enabled, limit 0). Only this package gives it: the library never does.
	ReasonClosed Reason = "closed"
)

// FeatureType is the type of the feature a decision is about.
type FeatureType string

// The feature types.
const (
	// FeatureFlag is an on/off feature.
	FeatureFlag FeatureType = "flag"
	// FeatureLimit is a numeric allowance, possibly unlimited.
	FeatureLimit FeatureType = "limit"
	// FeatureUnknown: the feature is not in the snapshot (the conformance suite's null).
	FeatureUnknown FeatureType = "unknown"
)

// Decision is one evaluated answer: what Check returns.
//
// For a flag, Limit is zero; for an unknown feature, FeatureType is FeatureUnknown, Enabled is
// false and Reason is ReasonFeatureNotFound.
type Decision struct {
	// FeatureType is flag, limit, or unknown.
	FeatureType FeatureType
	// Enabled is a flag's value; for a limit, unlimited or greater than 0.
	Enabled bool
	// Limit is a limit feature's allowance (zero for flags and unknown features).
	Limit Limit
	// Reason says why.
	Reason Reason
	// Version is the content version of the snapshot that answered.
	Version uint64
}

// Allows applies the decision to a usage question: a flag allows when enabled, a limit when
// usage plus requested fits (SEMANTICS 2.7), an unknown feature never.
func (d Decision) Allows(usage, requested uint64) bool {
	switch d.FeatureType {
	case FeatureFlag:
		return d.Enabled
	case FeatureLimit:
		return d.Limit.Allows(usage, requested)
	default:
		return false
	}
}

// SyncState says where an engine's sync stands.
type SyncState string

// The sync states.
const (
	// SyncStarting: no content yet and no sync round has finished; every feature is unknown.
	SyncStarting SyncState = "starting"
	// SyncReady: serving content confirmed by the edge (or read from the cache) within
	// MaxStaleness. Engines that do not sync are always ready.
	SyncReady SyncState = "ready"
	// SyncStale: serving content, but the last confirmation is older than MaxStaleness.
	SyncStale SyncState = "stale"
	// SyncFailed: no content, and syncing has failed so far; every feature is unknown.
	SyncFailed SyncState = "failed"
	// SyncClosed: the engine was closed (this package's state; the library has no such state).
	SyncClosed SyncState = "closed"
)

// Status is a snapshot of an engine's sync status.
type Status struct {
	// State says where the sync stands.
	State SyncState
	// Syncing is true for engines made by Connect.
	Syncing bool
	// WarmStart is true when the content was read from the cache directory at start.
	WarmStart bool
	// LongPoll is true when the edge honors long-polling.
	LongPoll bool
	// Version is the content version being served.
	Version uint64
	// LastSuccess is when a sync round last succeeded (zero: never).
	LastSuccess time.Time
	// DataAge is how old the content is (now minus its creation time); valid when HasDataAge.
	DataAge time.Duration
	// HasDataAge is true when DataAge is known.
	HasDataAge bool
	// LastErrorAt is when the last sync error happened (zero: never).
	LastErrorAt time.Time
	// LastError is the most recent sync error (kept after recovery: compare LastErrorAt with
	// LastSuccess); empty when there was none.
	LastError string
	// CacheError is the last problem with the cache file; empty when there was none.
	CacheError string
	// Lineage describes where the content being served came from, when known.
	Lineage string
	// EdgeVersion is the latest version the edge announced; valid when HasEdgeVersion.
	EdgeVersion uint64
	// HasEdgeVersion is true when EdgeVersion is known.
	HasEdgeVersion bool
	// Syncs counts successful sync rounds (including those that found nothing new).
	Syncs uint64
	// Failures counts failed sync rounds.
	Failures uint64
	// ConsecutiveFailures counts failed rounds since the last success.
	ConsecutiveFailures uint64
	// Updates counts rounds that changed the content.
	Updates uint64
	// DeltasApplied counts deltas applied.
	DeltasApplied uint64
	// SnapshotsFetched counts full snapshots fetched from the edge.
	SnapshotsFetched uint64
}

// HasData reports whether the engine serves content (its own, the cache's or the edge's).
func (s Status) HasData() bool {
	return s.State == SyncReady || s.State == SyncStale
}

// SyncConfig says how Connect follows an edge. Only URL is required; a zero duration picks the
// default shown. Durations are passed in whole milliseconds (a positive duration below one
// millisecond counts as one).
type SyncConfig struct {
	// URL is the edge's base URL, http:// or https:// (the manifest is URL + "/manifest.json").
	URL string
	// Token is a bearer token sent with every request (printable ASCII); empty for none.
	Token string
	// CacheDir is a directory for the last good snapshot; empty for none. With a cached snapshot
	// a new engine serves at once, before (or without) reaching the edge.
	CacheDir string
	// PollInterval is the time between manifest checks (default 5s, varied by ±20 %).
	PollInterval time.Duration
	// ConnectTimeout is the time allowed to connect, TCP and TLS (default 2s).
	ConnectTimeout time.Duration
	// RequestTimeout is the time allowed for one whole request (default 60s).
	RequestTimeout time.Duration
	// MaxStaleness: after this long without a successful sync the state is SyncStale
	// (default 2m).
	MaxStaleness time.Duration
	// LongPoll asks the edge to hold manifest requests up to this long and answer as soon as a
	// new version is published (at most 25s); zero polls instead.
	LongPoll time.Duration
	// MaxBackoff is the longest pause between retries after failures (default 60s).
	MaxBackoff time.Duration
	// PersistInterval is the shortest time between two cache writes after deltas (default 30s).
	PersistInterval time.Duration
	// MaxArtifactBytes is the largest snapshot or delta the engine downloads, in bytes after
	// decompression (0: the library's default, 256 MiB). A larger one is refused, before it is
	// requested when the manifest announces it; Status reports it and the engine keeps its content.
	MaxArtifactBytes uint64
	// Logger, when set, receives the engine's events from a goroutine that waits for them in the
	// library (ended by Close): content version changes (from the sync or from Replace and
	// ApplyDelta) and recoveries at Info; sync failures, staleness and cache problems at Warn.
	// Messages start with "entitle: "; attributes: seq, at, message, old_version and new_version.
	Logger *slog.Logger
}
