// Package ofprovider is an OpenFeature provider (github.com/open-feature/go-sdk) backed by an
// entitle engine: flags are entitle features, the targeting key is the customer id. It maps
// answers as the other entitle packages' providers do.
//
//	engine, _ := entitle.FromFile("catalog.snap")
//	_ = openfeature.SetProviderAndWait(ofprovider.New(engine))
//	client := openfeature.NewClient("billing")
//	sso, _ := client.BooleanValue(ctx, "sso", false, openfeature.NewEvaluationContext("cus_123", nil))
//	seats, _ := client.IntValue(ctx, "seats", 0, openfeature.NewEvaluationContext("cus_123", nil))
//
// Evaluations:
//   - Boolean: whether the feature is enabled (a flag's value; a limit that is unlimited or > 0).
//   - Int: a limit feature's value; an unlimited limit is math.MaxInt64, with the variant
//     "unlimited" and the flag metadata "unlimited" true. A flag is a TYPE_MISMATCH.
//   - Float: a limit feature's value; unlimited is +Inf. A flag is a TYPE_MISMATCH.
//   - String and Object: always a TYPE_MISMATCH (entitle features are flags or limits).
//
// Reasons: entitle's "override" and "subscription" are TARGETING_MATCH (the customer's own data
// decided); "default" and "customer_not_found" are DEFAULT. The variant is the value as text
// ("true", "50", "unlimited"); the flag metadata holds "entitleReason" (entitle's reason) and
// "version" (the content version). A feature that is not in the snapshot is a FLAG_NOT_FOUND
// error, a missing or empty targeting key a TARGETING_KEY_MISSING error, and a closed engine a
// PROVIDER_NOT_READY error; each returns the caller's default value.
//
// An evaluation context attribute "at" (a time.Time, or unix seconds as an int64 or int)
// evaluates at that time instead of now.
package ofprovider

import (
	"context"
	"math"
	"strconv"
	"sync"
	"time"

	entitle "example.invalid/entitle/bindings/go"
	of "github.com/open-feature/go-sdk/openfeature"
)

// Provider answers OpenFeature evaluations from an entitle engine, and forwards its content changes
// as PROVIDER_CONFIGURATION_CHANGED events. It does not own the engine: Shutdown leaves it open,
// and its creator closes it. Safe for concurrent use.
type Provider struct {
	engine      *entitle.Engine
	readyWithin time.Duration
	events      chan of.Event
	mu          sync.Mutex
	stop        context.CancelFunc // ends the goroutine following the engine's events
	stopped     chan struct{}
}

// Option configures a Provider.
type Option func(*Provider)

// WithReadyTimeout bounds how long initialization waits for an engine that syncs to get its first
// content (default 10s); past it, the provider reports an initialization error and the SDK marks it
// as in error until then.
func WithReadyTimeout(d time.Duration) Option {
	return func(p *Provider) { p.readyWithin = d }
}

// New makes a provider that answers from engine.
func New(engine *entitle.Engine, opts ...Option) *Provider {
	p := &Provider{engine: engine, readyWithin: 10 * time.Second, events: make(chan of.Event, 16)}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Metadata names the provider "entitle".
func (p *Provider) Metadata() of.Metadata {
	return of.Metadata{Name: "entitle"}
}

// Hooks gives none.
func (p *Provider) Hooks() []of.Hook {
	return nil
}

// Init waits for the engine's first content (see WithReadyTimeout).
func (p *Provider) Init(evalCtx of.EvaluationContext) error {
	return p.InitWithContext(context.Background(), evalCtx)
}

// InitWithContext waits for the engine's first content, until ctx is done or the ready timeout.
func (p *Provider) InitWithContext(ctx context.Context, _ of.EvaluationContext) error {
	ctx, cancel := context.WithTimeout(ctx, p.readyWithin)
	defer cancel()
	if !p.engine.WaitReady(ctx) {
		return &of.ProviderInitError{ErrorCode: of.ProviderNotReadyCode,
			Message: "the entitle engine has no content yet (state " + string(p.engine.Status().State) + ")"}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop == nil {
		follow, stop := context.WithCancel(context.Background())
		p.stop, p.stopped = stop, make(chan struct{})
		go p.forward(follow, p.stopped)
	}
	return nil
}

// forward turns the engine's events into provider events until ctx ends or the engine closes:
// a content version change is PROVIDER_CONFIGURATION_CHANGED, staleness PROVIDER_STALE and a
// recovery PROVIDER_READY. Sync failures are not forwarded as errors: the engine keeps answering
// from its last good content, and an error state would hide it.
func (p *Provider) forward(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	var after uint64
	for {
		ev, err := p.engine.NextEvent(ctx, after)
		if err != nil {
			return // closed, or shut down
		}
		after = ev.Seq
		var out of.Event
		switch ev.Kind {
		case entitle.EventVersionChanged:
			out = of.Event{EventType: of.ProviderConfigChange, ProviderEventDetails: of.ProviderEventDetails{
				Message:       "entitle content version " + strconv.FormatUint(ev.NewVersion, 10),
				EventMetadata: map[string]any{"old_version": int64(ev.OldVersion), "new_version": int64(ev.NewVersion)}}}
		case entitle.EventStale:
			out = of.Event{EventType: of.ProviderStale, ProviderEventDetails: of.ProviderEventDetails{
				Message: "entitle content is stale"}}
		case entitle.EventSyncRecovered:
			out = of.Event{EventType: of.ProviderReady, ProviderEventDetails: of.ProviderEventDetails{
				Message: "entitle sync recovered"}}
		default:
			continue
		}
		out.ProviderName = "entitle"
		select {
		case p.events <- out:
		case <-ctx.Done():
			return
		}
	}
}

// EventChannel gives the provider's events to the SDK (see forward).
func (p *Provider) EventChannel() <-chan of.Event {
	return p.events
}

// Shutdown stops following the engine's events. It does not close the engine: the engine belongs
// to its creator.
func (p *Provider) Shutdown() {
	p.mu.Lock()
	stop, stopped := p.stop, p.stopped
	p.stop, p.stopped = nil, nil
	p.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
}

// ShutdownWithContext is Shutdown.
func (p *Provider) ShutdownWithContext(context.Context) error {
	p.Shutdown()
	return nil
}

// decide evaluates flag for the context's targeting key; a non-empty error result means the
// caller's default is returned.
func (p *Provider) decide(flag string, flatCtx of.FlattenedContext) (entitle.Decision, of.ProviderResolutionDetail) {
	customer, _ := flatCtx[of.TargetingKey].(string)
	if customer == "" {
		return entitle.Decision{}, failure(of.NewTargetingKeyMissingResolutionError(
			"the targeting key (the customer id) is missing"))
	}
	var d entitle.Decision
	switch at := flatCtx["at"].(type) {
	case time.Time:
		d = p.engine.CheckAt(customer, flag, at)
	case int64:
		d = p.engine.CheckAt(customer, flag, time.Unix(at, 0))
	case int:
		d = p.engine.CheckAt(customer, flag, time.Unix(int64(at), 0))
	default:
		d = p.engine.Check(customer, flag)
	}
	switch d.Reason {
	case entitle.ReasonClosed:
		return d, failure(of.NewProviderNotReadyResolutionError("the entitle engine is closed"))
	case entitle.ReasonFeatureNotFound:
		return d, failure(of.NewFlagNotFoundResolutionError("feature " + strconv.Quote(flag) + " is not in the catalog"))
	}
	detail := of.ProviderResolutionDetail{
		Reason:       of.DefaultReason,
		FlagMetadata: of.FlagMetadata{"entitleReason": string(d.Reason), "version": int64(d.Version)},
	}
	if d.Reason == entitle.ReasonOverride || d.Reason == entitle.ReasonSubscription {
		detail.Reason = of.TargetingMatchReason
	}
	return d, detail
}

func failure(err of.ResolutionError) of.ProviderResolutionDetail {
	return of.ProviderResolutionDetail{ResolutionError: err, Reason: of.ErrorReason}
}

func failed(detail of.ProviderResolutionDetail) bool {
	return detail.Reason == of.ErrorReason
}

func typeMismatch(flag string, d entitle.Decision, want string) of.ProviderResolutionDetail {
	return failure(of.NewTypeMismatchResolutionError(
		"feature " + strconv.Quote(flag) + " is a " + string(d.FeatureType) + ", not " + want))
}

// BooleanEvaluation answers whether the feature is enabled for the customer.
func (p *Provider) BooleanEvaluation(_ context.Context, flag string, defaultValue bool, flatCtx of.FlattenedContext) of.BoolResolutionDetail {
	d, detail := p.decide(flag, flatCtx)
	if failed(detail) {
		return of.BoolResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail}
	}
	detail.Variant = strconv.FormatBool(d.Enabled)
	return of.BoolResolutionDetail{Value: d.Enabled, ProviderResolutionDetail: detail}
}

// IntEvaluation answers a limit feature's value (math.MaxInt64 when unlimited).
func (p *Provider) IntEvaluation(_ context.Context, flag string, defaultValue int64, flatCtx of.FlattenedContext) of.IntResolutionDetail {
	d, detail := p.decide(flag, flatCtx)
	if !failed(detail) && d.FeatureType != entitle.FeatureLimit {
		detail = typeMismatch(flag, d, "a limit")
	}
	if failed(detail) {
		return of.IntResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail}
	}
	detail.FlagMetadata["unlimited"] = d.Limit.Unlimited
	detail.Variant = d.Limit.String()
	value := int64(math.MaxInt64)
	if !d.Limit.Unlimited {
		value = int64(d.Limit.Value) // finite limits never exceed math.MaxInt64
	}
	return of.IntResolutionDetail{Value: value, ProviderResolutionDetail: detail}
}

// FloatEvaluation answers a limit feature's value (+Inf when unlimited).
func (p *Provider) FloatEvaluation(_ context.Context, flag string, defaultValue float64, flatCtx of.FlattenedContext) of.FloatResolutionDetail {
	d, detail := p.decide(flag, flatCtx)
	if !failed(detail) && d.FeatureType != entitle.FeatureLimit {
		detail = typeMismatch(flag, d, "a limit")
	}
	if failed(detail) {
		return of.FloatResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail}
	}
	detail.FlagMetadata["unlimited"] = d.Limit.Unlimited
	detail.Variant = d.Limit.String()
	value := math.Inf(1)
	if !d.Limit.Unlimited {
		value = float64(d.Limit.Value)
	}
	return of.FloatResolutionDetail{Value: value, ProviderResolutionDetail: detail}
}

// StringEvaluation is always a type mismatch: entitle has no string features.
func (p *Provider) StringEvaluation(_ context.Context, flag string, defaultValue string, flatCtx of.FlattenedContext) of.StringResolutionDetail {
	d, detail := p.decide(flag, flatCtx)
	if !failed(detail) {
		detail = typeMismatch(flag, d, "a string")
	}
	return of.StringResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail}
}

// ObjectEvaluation is always a type mismatch: entitle features are flags or limits.
func (p *Provider) ObjectEvaluation(_ context.Context, flag string, defaultValue any, flatCtx of.FlattenedContext) of.InterfaceResolutionDetail {
	d, detail := p.decide(flag, flatCtx)
	if !failed(detail) {
		detail = typeMismatch(flag, d, "an object")
	}
	return of.InterfaceResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail}
}

var (
	_ of.FeatureProvider          = (*Provider)(nil)
	_ of.ContextAwareStateHandler = (*Provider)(nil)
	_ of.EventHandler             = (*Provider)(nil)
)
