package cardinalityguard

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func testConfig() *Config {
	return &Config{
		MaxServices: 2,
		Passthrough: []string{"deployment.environment.name"},
		OpenSets:    map[string]int{"tool": 3},
		Metrics: []MetricConfig{
			{Name: "cugar.tool.calls", Closed: map[string][]string{"outcome": {"success", "error"}},
				Open: map[string]string{"tool": "tool"}},
			{Name: "cugar.tool.call.duration", Open: map[string]string{"tool": "tool"}},
		},
	}
}

type harness struct {
	t      testing.TB
	sink   *consumertest.MetricsSink
	reader *sdkmetric.ManualReader
	proc   interface {
		ConsumeMetrics(context.Context, pmetric.Metrics) error
	}
}

func newHarness(t testing.TB, cfg *Config) *harness {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	set := processortest.NewNopSettings(componentType)
	set.TelemetrySettings.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	sink := new(consumertest.MetricsSink)
	p, err := NewFactory().CreateMetrics(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return &harness{t: t, sink: sink, reader: reader, proc: p}
}

func (h *harness) send(md pmetric.Metrics) pmetric.Metrics {
	h.t.Helper()
	h.sink.Reset()
	if err := h.proc.ConsumeMetrics(context.Background(), md); err != nil {
		h.t.Fatal(err)
	}
	all := h.sink.AllMetrics()
	if len(all) != 1 {
		h.t.Fatalf("want 1 batch out, got %d", len(all))
	}
	return all[0]
}

// overflow reads otelcol_cardinality_guard_overflow_points by "metric/attribute/service".
func (h *harness) counter(name string) map[string]int64 {
	h.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		h.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				a, _ := dp.Attributes.Value("metric")
				b, _ := dp.Attributes.Value("attribute")
				c, _ := dp.Attributes.Value("service")
				out[a.AsString()+"/"+b.AsString()+"/"+c.AsString()] = dp.Value
			}
		}
	}
	return out
}

type point struct {
	attrs map[string]any
	value int64
}

func resource(md pmetric.Metrics, service, instance string) pmetric.MetricSlice {
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", service)
	rm.Resource().Attributes().PutStr("service.instance.id", instance)
	return rm.ScopeMetrics().AppendEmpty().Metrics()
}

func addSum(ms pmetric.MetricSlice, name string, pts ...point) {
	m := ms.AppendEmpty()
	m.SetName(name)
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for _, p := range pts {
		dp := s.DataPoints().AppendEmpty()
		if err := dp.Attributes().FromRaw(p.attrs); err != nil {
			panic(err)
		}
		dp.SetIntValue(p.value)
		dp.SetStartTimestamp(100)
		dp.SetTimestamp(200)
	}
}

// series lists the output points of a metric of one resource as "k=v,k=v" -> value.
func series(md pmetric.Metrics, resourceIndex int, name string) map[string]float64 {
	out := map[string]float64{}
	sms := md.ResourceMetrics().At(resourceIndex).ScopeMetrics()
	for j := 0; j < sms.Len(); j++ {
		ms := sms.At(j).Metrics()
		for k := 0; k < ms.Len(); k++ {
			m := ms.At(k)
			if m.Name() != name {
				continue
			}
			add := func(attrs pcommon.Map, v float64) {
				id := identity(attrs)
				if _, dup := out[id]; dup {
					panic("duplicate series " + id)
				}
				out[id] = v
			}
			switch m.Type() {
			case pmetric.MetricTypeSum:
				for i := 0; i < m.Sum().DataPoints().Len(); i++ {
					dp := m.Sum().DataPoints().At(i)
					add(dp.Attributes(), number(dp))
				}
			case pmetric.MetricTypeHistogram:
				for i := 0; i < m.Histogram().DataPoints().Len(); i++ {
					dp := m.Histogram().DataPoints().At(i)
					add(dp.Attributes(), float64(dp.Count()))
				}
			}
		}
	}
	return out
}

func key(kv ...string) string {
	m := pcommon.NewMap()
	for i := 0; i < len(kv); i += 2 {
		m.PutStr(kv[i], kv[i+1])
	}
	return identity(m)
}

func total(s map[string]float64) float64 {
	var t float64
	for _, v := range s {
		t += v
	}
	return t
}

func TestOpenSetBoundedPerServiceAcrossInstancesAndMerged(t *testing.T) {
	h := newHarness(t, testConfig())
	md := pmetric.NewMetrics()
	var a, b []point
	for i := 0; i < 5; i++ { // instance a: t0..t4, instance b: t3..t7
		a = append(a, point{map[string]any{"tool": fmt.Sprintf("t%d", i), "outcome": "success"}, int64(i + 1)})
		b = append(b, point{map[string]any{"tool": fmt.Sprintf("t%d", i+3), "outcome": "success"}, 10})
	}
	addSum(resource(md, "svc", "a"), "cugar.tool.calls", a...)
	addSum(resource(md, "svc", "b"), "cugar.tool.calls", b...)
	out := h.send(md)

	ga := series(out, 0, "cugar.tool.calls")
	want := map[string]float64{
		key("outcome", "success", "tool", "t0"):    1,
		key("outcome", "success", "tool", "t1"):    2,
		key("outcome", "success", "tool", "t2"):    3,
		key("outcome", "success", "tool", "other"): 4 + 5,
	}
	if fmt.Sprint(ga) != fmt.Sprint(want) {
		t.Fatalf("instance a: got %v want %v", ga, want)
	}
	// Instance b shares the service's bound: t0..t2 are taken, its t3..t7 all become other.
	gb := series(out, 1, "cugar.tool.calls")
	if len(gb) != 1 || gb[key("outcome", "success", "tool", "other")] != 50 {
		t.Fatalf("instance b: got %v", gb)
	}
	if got := h.counter("otelcol_cardinality_guard_overflow_points"); got["cugar.tool.calls/tool/svc"] != 7 {
		t.Fatalf("overflow counter: %v", got)
	}
}

func TestServicesHaveTheirOwnBoundAndMaxServicesHolds(t *testing.T) {
	h := newHarness(t, testConfig())
	md := pmetric.NewMetrics()
	for _, svc := range []string{"s1", "s2", "s3"} {
		var pts []point
		for i := 0; i < 4; i++ {
			pts = append(pts, point{map[string]any{"tool": fmt.Sprintf("t%d", i)}, 1})
		}
		addSum(resource(md, svc, "i"), "cugar.tool.calls", pts...)
	}
	out := h.send(md)
	for i, svc := range []string{"s1", "s2"} {
		if s := series(out, i, "cugar.tool.calls"); len(s) != 4 || s[key("tool", "other")] != 1 {
			t.Fatalf("%s: %v", svc, s)
		}
	}
	// max_services is 2: the third service's open values are all other.
	if s := series(out, 2, "cugar.tool.calls"); len(s) != 1 || s[key("tool", "other")] != 4 {
		t.Fatalf("s3: %v", s)
	}
	got := h.counter("otelcol_cardinality_guard_overflow_points")
	if got["cugar.tool.calls/tool/s1"] != 1 || got["cugar.tool.calls/tool/other"] != 4 {
		t.Fatalf("overflow counter: %v", got)
	}
}

func TestClosedSetsUnlistedAttributesAndNonStrings(t *testing.T) {
	h := newHarness(t, testConfig())
	md := pmetric.NewMetrics()
	addSum(resource(md, "svc", "i"), "cugar.tool.calls",
		point{map[string]any{"tool": "x", "outcome": "success"}, 1},
		point{map[string]any{"tool": "x", "outcome": "weird"}, 2},
		point{map[string]any{"tool": "x", "outcome": "error", "user.id": "u1"}, 3},
		point{map[string]any{"tool": "x", "outcome": "error", "user.id": "u2"}, 4},
		point{map[string]any{"tool": int64(7), "outcome": int64(1)}, 5},
		point{map[string]any{"tool": "other", "outcome": "other"}, 6},
		point{map[string]any{"tool": "x", "outcome": "success", "deployment.environment.name": "prod"}, 8},
		// Not the resource's own value: a new dimension, removed.
		point{map[string]any{"tool": "x", "outcome": "success", "deployment.environment.name": "e-1"}, 10},
		point{map[string]any{"otel.metric.overflow": true}, 9},
	)
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr("deployment.environment.name", "prod")
	addSum(resource(md, "svc", "i"), "not.in.catalogue",
		point{map[string]any{"anything": "goes"}, 1})
	out := h.send(md)
	got := series(out, 0, "cugar.tool.calls")
	want := map[string]float64{
		key("outcome", "success", "tool", "x"):                                        11,
		key("outcome", "other", "tool", "x"):                                          2,
		key("outcome", "error", "tool", "x"):                                          7,
		key("outcome", "other", "tool", "other"):                                      20,
		key("deployment.environment.name", "prod", "outcome", "success", "tool", "x"): 8,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if s := series(out, 1, "not.in.catalogue"); s[key("anything", "goes")] != 1 {
		t.Fatalf("a metric outside the catalogue must pass unchanged: %v", s)
	}
	c := h.counter("otelcol_cardinality_guard_overflow_points")
	if c["cugar.tool.calls/outcome/svc"] != 2 || c["cugar.tool.calls/(unlisted)/svc"] != 4 ||
		c["cugar.tool.calls/tool/svc"] != 1 {
		t.Fatalf("overflow counter: %v", c)
	}
}

// Cumulative counters: a value keeps its label across batches (admission is never forgotten),
// so `other` sums the same input series every time and stays monotonic.
func TestMappingIsStableAcrossBatches(t *testing.T) {
	h := newHarness(t, testConfig())
	for round := int64(1); round <= 3; round++ {
		md := pmetric.NewMetrics()
		var pts []point
		for i := 0; i < 6; i++ {
			pts = append(pts, point{map[string]any{"tool": fmt.Sprintf("t%d", (i+int(round))%6)}, round * int64(i+1)})
		}
		addSum(resource(md, "svc", "i"), "cugar.tool.calls", pts...)
		got := series(h.send(md), 0, "cugar.tool.calls")
		if len(got) != 4 {
			t.Fatalf("round %d: %v", round, got)
		}
		if got[key("tool", "other")] == 0 || total(got) != float64(round*21) {
			t.Fatalf("round %d: %v", round, got)
		}
		for _, admittedTool := range []string{"t1", "t2", "t3"} {
			if _, ok := got[key("tool", admittedTool)]; !ok {
				t.Fatalf("round %d: %s lost its label: %v", round, admittedTool, got)
			}
		}
	}
}

func addHistogram(ms pmetric.MetricSlice, name string, tool string, bounds []float64, counts []uint64, sum float64) {
	var m pmetric.Metric
	for i := 0; i < ms.Len(); i++ {
		if ms.At(i).Name() == name {
			m = ms.At(i)
		}
	}
	if m == (pmetric.Metric{}) {
		m = ms.AppendEmpty()
		m.SetName(name)
		m.SetEmptyHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	}
	dp := m.Histogram().DataPoints().AppendEmpty()
	dp.Attributes().PutStr("tool", tool)
	dp.ExplicitBounds().FromRaw(bounds)
	dp.BucketCounts().FromRaw(counts)
	var n uint64
	for _, c := range counts {
		n += c
	}
	dp.SetCount(n)
	dp.SetSum(sum)
	dp.SetMin(0.1)
	dp.SetMax(sum)
}

func TestHistogramsMergeBucketWise(t *testing.T) {
	h := newHarness(t, testConfig())
	md := pmetric.NewMetrics()
	ms := resource(md, "svc", "i")
	name := "cugar.tool.call.duration"
	for i, tool := range []string{"a", "b", "c", "d", "e"} {
		addHistogram(ms, name, tool, []float64{1, 2}, []uint64{1, uint64(i), 2}, float64(i+1))
	}
	addHistogram(ms, name, "f", []float64{5}, []uint64{1, 1}, 9) // other bounds: cannot merge
	out := h.send(md)
	dps := out.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Histogram().DataPoints()
	if dps.Len() != 4 {
		t.Fatalf("want a, b, c and other, got %d points", dps.Len())
	}
	o := dps.At(3)
	if v, _ := o.Attributes().Get("tool"); v.Str() != Other {
		t.Fatalf("last point is %v", o.Attributes().AsRaw())
	}
	if fmt.Sprint(o.BucketCounts().AsRaw()) != "[2 7 4]" || o.Count() != 13 || o.Sum() != 9 ||
		o.Min() != 0.1 || o.Max() != 5 {
		t.Fatalf("merged other: buckets %v count %d sum %v min %v max %v",
			o.BucketCounts().AsRaw(), o.Count(), o.Sum(), o.Min(), o.Max())
	}
	if d := h.counter("otelcol_cardinality_guard_dropped_points"); len(d) != 1 {
		t.Fatalf("dropped counter: %v", d)
	}
}

func TestConfigFromYAMLAndValidation(t *testing.T) {
	conf := confmap.NewFromStringMap(map[string]any{
		"max_services": 10,
		"open_sets":    map[string]any{"tool": 5},
		"metrics": []any{map[string]any{
			"name": "m", "closed": map[string]any{"outcome": []any{"success"}},
			"open": map[string]any{"tool": "tool"}}},
	})
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := conf.Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics[0].Closed["outcome"][0] != "success" || cfg.OpenSets["tool"] != 5 {
		t.Fatalf("%+v", cfg)
	}
	bad := &Config{MaxServices: 0, OpenSets: map[string]int{"tool": 0},
		Metrics: []MetricConfig{{Name: "m", Open: map[string]string{"x": "nope"}}, {Name: "m"}}}
	err := bad.Validate()
	for _, want := range []string{"max_services", "open_sets.tool", "open set \"nope\"", "listed twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("want %q in %v", want, err)
		}
	}
	var _ component.Config = cfg
}

// BenchmarkHundredThousandTools: one request of 100,000 points with distinct tool names
// (go test -bench . -benchtime 20x).
func BenchmarkHundredThousandTools(b *testing.B) {
	cfg := testConfig()
	cfg.OpenSets["tool"] = 256
	h := newHarness(b, cfg)
	pts := make([]point, 100_000)
	for i := range pts {
		pts[i] = point{map[string]any{"tool": fmt.Sprintf("t%06d", i), "outcome": "success"}, 1}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		md := pmetric.NewMetrics()
		addSum(resource(md, "svc", "i"), "cugar.tool.calls", pts...)
		b.StartTimer()
		if err := h.proc.ConsumeMetrics(context.Background(), md); err != nil {
			b.Fatal(err)
		}
	}
}

func TestExponentialHistogramsSummariesAndGaugesMerge(t *testing.T) {
	h := newHarness(t, testConfig())
	md := pmetric.NewMetrics()
	ms := resource(md, "svc", "i")
	exp := ms.AppendEmpty()
	exp.SetName("cugar.tool.call.duration")
	sum := ms.AppendEmpty()
	sum.SetName("cugar.tool.calls")
	exp.SetEmptyExponentialHistogram()
	sum.SetEmptySummary()
	for i, tool := range []string{"a", "b", "c", "d", "e"} {
		p := exp.ExponentialHistogram().DataPoints().AppendEmpty()
		p.Attributes().PutStr("tool", tool)
		p.SetScale(2)
		p.Positive().SetOffset(1)
		p.Positive().BucketCounts().FromRaw([]uint64{1, uint64(i)})
		p.SetZeroCount(1)
		p.SetCount(uint64(2 + i))
		p.SetSum(float64(i))
		sp := sum.Summary().DataPoints().AppendEmpty()
		sp.Attributes().PutStr("tool", tool)
		sp.SetCount(uint64(i + 1))
		sp.SetSum(1)
		sp.QuantileValues().AppendEmpty().SetValue(5)
	}
	gauge := resource(md, "svc", "j").AppendEmpty()
	gauge.SetName("cugar.tool.calls")
	gauge.SetEmptyGauge()
	for i, tool := range []string{"a", "x", "y"} {
		dp := gauge.Gauge().DataPoints().AppendEmpty()
		dp.Attributes().PutStr("tool", tool)
		dp.SetTimestamp(pcommon.Timestamp(100 - i))
		dp.SetDoubleValue(float64(i))
	}
	out := h.send(md).ResourceMetrics()
	e := out.At(0).ScopeMetrics().At(0).Metrics().At(0).ExponentialHistogram().DataPoints()
	if e.Len() != 4 || e.At(3).Count() != 11 || e.At(3).ZeroCount() != 2 || e.At(3).Sum() != 7 ||
		fmt.Sprint(e.At(3).Positive().BucketCounts().AsRaw()) != "[2 7]" {
		t.Fatalf("exponential: %d points, other %+v", e.Len(), e.At(e.Len()-1).Positive().BucketCounts().AsRaw())
	}
	s := out.At(0).ScopeMetrics().At(0).Metrics().At(1).Summary().DataPoints()
	if s.Len() != 4 || s.At(3).Count() != 9 || s.At(3).Sum() != 2 || s.At(3).QuantileValues().Len() != 0 {
		t.Fatalf("summary: %d points", s.Len())
	}
	// Gauges do not add: the latest value of the collapsed points wins. Instance j shares
	// the service's bound (a, b, c taken): a stays, x and y become other.
	g := out.At(1).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints()
	if g.Len() != 2 || g.At(1).DoubleValue() != 1 || g.At(1).Timestamp() != 99 {
		t.Fatalf("gauge: %d points, other %v at %v", g.Len(), g.At(1).DoubleValue(), g.At(1).Timestamp())
	}
}

func addExemplar(es pmetric.ExemplarSlice, value float64, ts pcommon.Timestamp, trace byte) {
	e := es.AppendEmpty()
	e.SetDoubleValue(value)
	e.SetTimestamp(ts)
	e.SetTraceID(pcommon.TraceID{trace})
	e.SetSpanID(pcommon.SpanID{trace})
}

// exemplarTraces lists exemplars as "value@trace" (the first byte of the trace id).
func exemplarTraces(es pmetric.ExemplarSlice) string {
	out := make([]string, 0, es.Len())
	for i := 0; i < es.Len(); i++ {
		out = append(out, fmt.Sprintf("%v@%d", es.At(i).DoubleValue(), es.At(i).TraceID()[0]))
	}
	return strings.Join(out, " ")
}

// Points collapsing into one series keep the exemplars behind them: a latency panel's link to
// the slow trace must survive the guard. Per bucket the newest one stays (the SDK's aligned
// reservoir), in bucket order; sums keep the newest, as many as the larger side held.
func TestMergedPointsKeepTheirExemplars(t *testing.T) {
	h := newHarness(t, testConfig())
	md := pmetric.NewMetrics()
	ms := resource(md, "svc", "i")
	name := "cugar.tool.call.duration"
	for i, tool := range []string{"a", "b", "c", "d", "e", "f"} {
		addHistogram(ms, name, tool, []float64{1, 2}, []uint64{1, 1, 1}, float64(i))
	}
	dps := ms.At(0).Histogram().DataPoints()
	addExemplar(dps.At(3).Exemplars(), 0.5, 10, 3) // d: bucket <=1, older
	addExemplar(dps.At(3).Exemplars(), 9, 10, 4)   // d: bucket +Inf
	addExemplar(dps.At(4).Exemplars(), 0.7, 20, 5) // e: bucket <=1, newer than d's
	addExemplar(dps.At(5).Exemplars(), 1.5, 5, 6)  // f: bucket (1, 2]
	// The service's tool bound (3) is taken by a, b and c: v and w collapse into other.
	addSum(ms, "cugar.tool.calls", point{map[string]any{"tool": "a"}, 1},
		point{map[string]any{"tool": "b"}, 1}, point{map[string]any{"tool": "c"}, 1},
		point{map[string]any{"tool": "v"}, 1}, point{map[string]any{"tool": "w"}, 1})
	sums := ms.At(1).Sum().DataPoints()
	addExemplar(sums.At(3).Exemplars(), 1, 30, 7)
	addExemplar(sums.At(4).Exemplars(), 1, 40, 8) // newest: the one kept (both held one)

	out := h.send(md).ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	hist := out.At(0).Histogram().DataPoints()
	if hist.Len() != 4 {
		t.Fatalf("want a, b, c and other, got %d points", hist.Len())
	}
	if got := exemplarTraces(hist.At(3).Exemplars()); got != "0.7@5 1.5@6 9@4" {
		t.Fatalf("other's exemplars: %q", got)
	}
	sum := out.At(1).Sum().DataPoints()
	if got := exemplarTraces(sum.At(3).Exemplars()); sum.Len() != 4 || got != "1@8" {
		t.Fatalf("sum other: %d points, exemplars %q", sum.Len(), got)
	}
}
