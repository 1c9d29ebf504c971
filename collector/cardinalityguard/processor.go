package cardinalityguard

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const (
	scopeName = "github.com/cugar/telemetry/collector/cardinalityguard"
	// Unlisted is the `attribute` label of overflow counts for attributes a metric must not
	// carry (they are removed, not renamed: the key itself is unbounded).
	Unlisted       = "(unlisted)"
	unknownService = "unknown"
	sdkOverflow    = "otel.metric.overflow"
)

type rule struct {
	closed      map[string]map[string]struct{}
	open        map[string]string // attribute key -> open set name
	passthrough map[string]struct{}
}

// keep reports whether a point attribute may stay: listed for the metric, or a passthrough key
// whose value is the resource's own (a copy of its identity, not a new dimension).
func (r *rule) keep(key string, v pcommon.Value, resource pcommon.Map) bool {
	if _, ok := r.closed[key]; ok {
		return true
	}
	if _, ok := r.open[key]; ok {
		return true
	}
	if _, ok := r.passthrough[key]; ok {
		own, found := resource.Get(key)
		return found && own.Equal(v)
	}
	return false
}

// admitted holds, per open set, the values one service has been granted. Values are never
// forgotten while the collector runs: a value's label therefore never changes, so an `other`
// series only ever sums the same input series and cumulative counters stay monotonic.
type admitted map[string]map[string]struct{}

type guard struct {
	rules       map[string]*rule
	limits      map[string]int
	maxServices int

	mu       sync.Mutex
	services map[string]admitted

	overflow metric.Int64Counter
	dropped  metric.Int64Counter
}

type countKey struct{ metric, attribute, service string }

func newGuard(cfg *Config, tel component.TelemetrySettings) (*guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &guard{rules: map[string]*rule{}, limits: cfg.OpenSets, maxServices: cfg.MaxServices,
		services: map[string]admitted{}}
	passthrough := map[string]struct{}{}
	for _, key := range cfg.Passthrough {
		passthrough[key] = struct{}{}
	}
	for _, m := range cfg.Metrics {
		r := &rule{closed: map[string]map[string]struct{}{}, open: m.Open, passthrough: passthrough}
		for key, values := range m.Closed {
			set := map[string]struct{}{Other: {}}
			for _, v := range values {
				set[v] = struct{}{}
			}
			r.closed[key] = set
		}
		g.rules[m.Name] = r
	}
	meter := tel.MeterProvider.Meter(scopeName)
	var err error
	g.overflow, err = meter.Int64Counter("otelcol_cardinality_guard_overflow_points",
		metric.WithDescription("Data points of catalogue metrics whose attribute value the "+
			"cardinality guard replaced with \"other\" (outside its closed set, or a new value "+
			"beyond the open set's bound per service) or removed (attribute not in the catalogue)."),
		metric.WithUnit("{point}"))
	if err != nil {
		return nil, fmt.Errorf("cardinality_guard: overflow counter: %w", err)
	}
	g.dropped, err = meter.Int64Counter("otelcol_cardinality_guard_dropped_points",
		metric.WithDescription("Data points the cardinality guard could not merge into the "+
			"series they collapsed into (histograms with other bucket bounds) and dropped."),
		metric.WithUnit("{point}"))
	if err != nil {
		return nil, fmt.Errorf("cardinality_guard: dropped counter: %w", err)
	}
	return g, nil
}

// service returns the admitted sets of a service (nil once max_services others are tracked).
func (g *guard) service(name string) admitted {
	if s, ok := g.services[name]; ok {
		return s
	}
	if len(g.services) >= g.maxServices {
		return nil
	}
	s := admitted{}
	g.services[name] = s
	return s
}

// admit reports the label an open-set value gets for a service.
func (g *guard) admit(svc admitted, set, value string) (string, bool) {
	if value == Other {
		return Other, true
	}
	if svc == nil {
		return Other, false
	}
	values := svc[set]
	if _, ok := values[value]; ok {
		return value, true
	}
	if len(values) >= g.limits[set] {
		return Other, false
	}
	if values == nil {
		values = map[string]struct{}{}
		svc[set] = values
	}
	values[value] = struct{}{}
	return value, true
}

type batch struct {
	g       *guard
	counts  map[countKey]int64
	dropped map[countKey]int64
}

func (g *guard) processMetrics(ctx context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
	b := batch{g: g, counts: map[countKey]int64{}, dropped: map[countKey]int64{}}
	g.mu.Lock()
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		name := unknownService
		if v, ok := rm.Resource().Attributes().Get("service.name"); ok && v.AsString() != "" {
			name = v.AsString()
		}
		svc := g.service(name)
		label := name
		if svc == nil {
			label = Other
		}
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				if r, ok := g.rules[ms.At(k).Name()]; ok {
					b.metric(ms.At(k), r, guarded{svc, label, rm.Resource().Attributes()})
				}
			}
		}
	}
	g.mu.Unlock()
	for k, n := range b.counts {
		g.overflow.Add(ctx, n, metric.WithAttributes(attribute.String("metric", k.metric),
			attribute.String("attribute", k.attribute), attribute.String("service", k.service)))
	}
	for k, n := range b.dropped {
		g.dropped.Add(ctx, n, metric.WithAttributes(attribute.String("metric", k.metric),
			attribute.String("service", k.service)))
	}
	return md, nil
}

// guarded is the sender of the points being rewritten.
type guarded struct {
	svc      admitted // nil: beyond max_services
	service  string   // its label on the guard's own counters
	resource pcommon.Map
}

// rewrite bounds one point's attributes in place.
func (b *batch) rewrite(attrs pcommon.Map, r *rule, from guarded, m string) {
	svc, service := from.svc, from.service
	// An SDK's own cardinality overflow point (otel.metric.overflow=true, no other attributes)
	// joins the `other` series of every guarded attribute.
	if v, ok := attrs.Get(sdkOverflow); ok && v.Bool() {
		for key := range r.closed {
			attrs.PutStr(key, Other)
		}
		for key := range r.open {
			attrs.PutStr(key, Other)
		}
	}
	attrs.RemoveIf(func(key string, v pcommon.Value) bool {
		if r.keep(key, v, from.resource) {
			return false
		}
		b.counts[countKey{m, Unlisted, service}]++
		return true
	})
	attrs.Range(func(key string, v pcommon.Value) bool {
		if _, ok := r.passthrough[key]; ok {
			return true
		}
		if set, ok := r.closed[key]; ok {
			if _, in := set[v.Str()]; !in || v.Type() != pcommon.ValueTypeStr {
				v.SetStr(Other)
				b.counts[countKey{m, key, service}]++
			}
			return true
		}
		value := Other
		if v.Type() == pcommon.ValueTypeStr {
			value = v.Str()
		}
		label, kept := b.g.admit(svc, r.open[key], value)
		if !kept || v.Type() != pcommon.ValueTypeStr {
			v.SetStr(label)
			b.counts[countKey{m, key, service}]++
		}
		return true
	})
}

// identity is a point's attribute set as a map key (all values are strings after rewrite).
func identity(attrs pcommon.Map) string {
	keys := make([]string, 0, attrs.Len())
	attrs.Range(func(k string, _ pcommon.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.Sort(keys)
	var sb strings.Builder
	for _, k := range keys {
		v, _ := attrs.Get(k)
		sb.WriteString(k)
		sb.WriteByte(0)
		sb.WriteString(v.AsString())
		sb.WriteByte(0)
	}
	return sb.String()
}

// points is what the guard needs of any data point slice: rewrite every point, then merge
// each later point into the first one of the same identity (merge reports false when it
// cannot: the point is dropped and counted).
type points[P any] interface {
	Len() int
	At(int) P
	RemoveIf(func(P) bool)
}

func guardPoints[P any, S points[P]](b *batch, s S, attrs func(P) pcommon.Map,
	merge func(dst, src P) bool, r *rule, from guarded, m string) {
	first := map[string]int{}
	remove := make([]bool, s.Len())
	merged := false
	for i := 0; i < s.Len(); i++ {
		p := s.At(i)
		b.rewrite(attrs(p), r, from, m)
		id := identity(attrs(p))
		if j, ok := first[id]; ok {
			if !merge(s.At(j), p) {
				b.dropped[countKey{m, "", from.service}]++
			}
			remove[i], merged = true, true
			continue
		}
		first[id] = i
	}
	if merged {
		i := 0
		s.RemoveIf(func(P) bool {
			i++
			return remove[i-1]
		})
	}
}

func (b *batch) metric(m pmetric.Metric, r *rule, from guarded) {
	name := m.Name()
	switch m.Type() {
	case pmetric.MetricTypeSum:
		guardPoints(b, m.Sum().DataPoints(), pmetric.NumberDataPoint.Attributes, mergeSum, r, from, name)
	case pmetric.MetricTypeGauge:
		guardPoints(b, m.Gauge().DataPoints(), pmetric.NumberDataPoint.Attributes, mergeGauge, r, from, name)
	case pmetric.MetricTypeHistogram:
		guardPoints(b, m.Histogram().DataPoints(), pmetric.HistogramDataPoint.Attributes, mergeHistogram, r, from, name)
	case pmetric.MetricTypeExponentialHistogram:
		guardPoints(b, m.ExponentialHistogram().DataPoints(), pmetric.ExponentialHistogramDataPoint.Attributes, mergeExponential, r, from, name)
	case pmetric.MetricTypeSummary:
		guardPoints(b, m.Summary().DataPoints(), pmetric.SummaryDataPoint.Attributes, mergeSummary, r, from, name)
	}
}

type timed interface {
	StartTimestamp() pcommon.Timestamp
	SetStartTimestamp(pcommon.Timestamp)
	Timestamp() pcommon.Timestamp
	SetTimestamp(pcommon.Timestamp)
}

// span widens dst's interval to cover src's.
func span(dst, src timed) {
	if s := src.StartTimestamp(); s != 0 && (dst.StartTimestamp() == 0 || s < dst.StartTimestamp()) {
		dst.SetStartTimestamp(s)
	}
	if src.Timestamp() > dst.Timestamp() {
		dst.SetTimestamp(src.Timestamp())
	}
}

func number(p pmetric.NumberDataPoint) float64 {
	if p.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(p.IntValue())
	}
	return p.DoubleValue()
}

// exemplarValue is an exemplar's value as a float (int exemplars included).
func exemplarValue(e pmetric.Exemplar) float64 {
	if e.ValueType() == pmetric.ExemplarValueTypeInt {
		return float64(e.IntValue())
	}
	return e.DoubleValue()
}

// newestFirst orders exemplars newest first (then by value, for a stable result).
func newestFirst(a, b pmetric.Exemplar) int {
	if c := cmp.Compare(b.Timestamp(), a.Timestamp()); c != 0 {
		return c
	}
	return cmp.Compare(exemplarValue(a), exemplarValue(b))
}

// rebuild refills dst with the exemplars of all (src's appended to dst's) in `order`, keeping
// those `keep` admits (called in that order).
func rebuild(dst, src pmetric.ExemplarSlice, order func(a, b pmetric.Exemplar) int,
	keep func(pmetric.Exemplar) bool) {
	all := pmetric.NewExemplarSlice()
	dst.MoveAndAppendTo(all)
	src.MoveAndAppendTo(all)
	idx := make([]int, all.Len())
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return order(all.At(a), all.At(b)) })
	for _, i := range idx {
		if keep(all.At(i)) {
			all.At(i).CopyTo(dst.AppendEmpty())
		}
	}
}

// keepExemplars moves src's exemplars into dst (a merged point keeps the traces behind both),
// keeping as many as the larger of the two held, the newest: what one SDK reservoir of that
// size would hold for the merged series.
func keepExemplars(dst, src pmetric.ExemplarSlice) {
	limit := max(dst.Len(), src.Len())
	if dst.Len()+src.Len() <= limit {
		src.MoveAndAppendTo(dst)
		return
	}
	n := 0
	rebuild(dst, src, newestFirst, func(pmetric.Exemplar) bool {
		n++
		return n <= limit
	})
}

// keepBucketExemplars merges exemplars of explicit-bucket histograms as the SDK's aligned
// reservoir does: per bucket the newest one, in bucket (value) order, so that Prometheus'
// OTLP receiver attaches each to its own `le` series.
func keepBucketExemplars(dst, src pmetric.ExemplarSlice, bounds pcommon.Float64Slice) {
	if src.Len() == 0 {
		return
	}
	raw := bounds.AsRaw()
	bucket := func(e pmetric.Exemplar) int {
		i, _ := slices.BinarySearch(raw, exemplarValue(e)) // bucket i holds (bounds[i-1], bounds[i]]
		return i
	}
	last := -1
	rebuild(dst, src, func(a, b pmetric.Exemplar) int {
		if c := cmp.Compare(bucket(a), bucket(b)); c != 0 {
			return c
		}
		return newestFirst(a, b)
	}, func(e pmetric.Exemplar) bool {
		b := bucket(e)
		first := b != last
		last = b
		return first
	})
}

func mergeSum(dst, src pmetric.NumberDataPoint) bool {
	if dst.ValueType() == pmetric.NumberDataPointValueTypeInt && src.ValueType() == pmetric.NumberDataPointValueTypeInt {
		dst.SetIntValue(dst.IntValue() + src.IntValue())
	} else {
		dst.SetDoubleValue(number(dst) + number(src))
	}
	keepExemplars(dst.Exemplars(), src.Exemplars())
	span(dst, src)
	return true
}

// mergeGauge keeps the latest value (gauges do not add up).
func mergeGauge(dst, src pmetric.NumberDataPoint) bool {
	if src.Timestamp() > dst.Timestamp() {
		if src.ValueType() == pmetric.NumberDataPointValueTypeInt {
			dst.SetIntValue(src.IntValue())
		} else {
			dst.SetDoubleValue(src.DoubleValue())
		}
	}
	keepExemplars(dst.Exemplars(), src.Exemplars())
	span(dst, src)
	return true
}

func addCounts(dst, src pcommon.UInt64Slice) {
	for i := 0; i < dst.Len(); i++ {
		dst.SetAt(i, dst.At(i)+src.At(i))
	}
}

func mergeHistogram(dst, src pmetric.HistogramDataPoint) bool {
	if !dst.ExplicitBounds().Equal(src.ExplicitBounds()) || dst.BucketCounts().Len() != src.BucketCounts().Len() {
		return false
	}
	addCounts(dst.BucketCounts(), src.BucketCounts())
	keepBucketExemplars(dst.Exemplars(), src.Exemplars(), dst.ExplicitBounds())
	mergeStats(dst, src)
	return true
}

// stats is what explicit and exponential histogram points share.
type stats interface {
	timed
	Count() uint64
	SetCount(uint64)
	HasSum() bool
	Sum() float64
	SetSum(float64)
	RemoveSum()
	HasMin() bool
	Min() float64
	SetMin(float64)
	RemoveMin()
	HasMax() bool
	Max() float64
	SetMax(float64)
	RemoveMax()
}

// mergeStats adds count and sum and combines min and max (dropped when either lacks one).
func mergeStats(dst, src stats) {
	dst.SetCount(dst.Count() + src.Count())
	if dst.HasSum() && src.HasSum() {
		dst.SetSum(dst.Sum() + src.Sum())
	} else {
		dst.RemoveSum()
	}
	if dst.HasMin() && src.HasMin() {
		dst.SetMin(min(dst.Min(), src.Min()))
	} else {
		dst.RemoveMin()
	}
	if dst.HasMax() && src.HasMax() {
		dst.SetMax(max(dst.Max(), src.Max()))
	} else {
		dst.RemoveMax()
	}
	span(dst, src)
}

func sameBuckets(a, b pmetric.ExponentialHistogramDataPointBuckets) bool {
	return a.Offset() == b.Offset() && a.BucketCounts().Len() == b.BucketCounts().Len()
}

// mergeExponential adds histograms of the same scale and bucket layout (others are dropped).
func mergeExponential(dst, src pmetric.ExponentialHistogramDataPoint) bool {
	if dst.Scale() != src.Scale() || dst.ZeroThreshold() != src.ZeroThreshold() ||
		!sameBuckets(dst.Positive(), src.Positive()) || !sameBuckets(dst.Negative(), src.Negative()) {
		return false
	}
	addCounts(dst.Positive().BucketCounts(), src.Positive().BucketCounts())
	addCounts(dst.Negative().BucketCounts(), src.Negative().BucketCounts())
	dst.SetZeroCount(dst.ZeroCount() + src.ZeroCount())
	keepExemplars(dst.Exemplars(), src.Exemplars())
	mergeStats(dst, src)
	return true
}

// mergeSummary adds count and sum; quantiles of different series do not combine: removed.
func mergeSummary(dst, src pmetric.SummaryDataPoint) bool {
	dst.SetCount(dst.Count() + src.Count())
	dst.SetSum(dst.Sum() + src.Sum())
	dst.QuantileValues().RemoveIf(func(pmetric.SummaryDataPointValueAtQuantile) bool { return true })
	span(dst, src)
	return true
}
