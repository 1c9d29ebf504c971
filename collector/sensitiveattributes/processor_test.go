package sensitiveattributes

import (
	"context"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func testConfig() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.IgnoredKeys = []string{"gen_ai.token.type"}
	cfg.SecretKeyPatterns = []string{`(?i)(?:^|[^a-z0-9])(?:password|token|api[^a-z0-9]?key)(?:$|[^a-z0-9])`}
	cfg.ValuePatterns = []string{`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`, `\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b`}
	return cfg
}

func traces() (ptrace.Traces, ptrace.Span) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("owner", "ops@example.com")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().Attributes().PutStr("contact", "x 123-45-6789")
	span := ss.Spans().AppendEmpty()
	span.Attributes().PutStr("db.password", "hunter2")
	span.Attributes().PutInt("api_key", 12345)
	span.Attributes().PutStr("gen_ai.token.type", "input")
	span.Attributes().PutStr("note", "mail ann@example.org or 123-45-6789 now")
	span.Attributes().PutInt("ssn.number", 123456789)
	span.Attributes().PutStr("plain", "nothing here")
	span.Events().AppendEmpty().Attributes().PutStr("who", "bob@example.net")
	span.Links().AppendEmpty().Attributes().PutStr("who", "eve@example.net")
	return td, span
}

func run(t *testing.T, r *redactor, td ptrace.Traces) {
	t.Helper()
	if _, err := r.processTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
}

func str(m pcommon.Map, k string) string {
	v, _ := m.Get(k)
	return v.AsString()
}

func TestMasksKeysAndValuesEverywhere(t *testing.T) {
	r, err := newRedactor(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ { // the second round is served from the caches
		td, span := traces()
		run(t, r, td)
		rs := td.ResourceSpans().At(0)
		want := map[string]string{
			"db.password": "****", "api_key": "****", "gen_ai.token.type": "input",
			"note": "mail **** or **** now", "plain": "nothing here", "ssn.number": "123456789",
		}
		for k, w := range want {
			if got := str(span.Attributes(), k); got != w {
				t.Errorf("round %d: %s = %q, want %q", round, k, got, w)
			}
		}
		if got := str(rs.Resource().Attributes(), "owner"); got != "****" {
			t.Errorf("resource owner = %q", got)
		}
		if got := str(rs.ScopeSpans().At(0).Scope().Attributes(), "contact"); got != "x ****" {
			t.Errorf("scope contact = %q", got)
		}
		if got := str(span.Events().At(0).Attributes(), "who"); got != "****" {
			t.Errorf("event who = %q", got)
		}
		if got := str(span.Links().At(0).Attributes(), "who"); got != "****" {
			t.Errorf("link who = %q", got)
		}
	}
}

func TestCachesStayBoundedAndDoNotChangeResults(t *testing.T) {
	cfg := testConfig()
	cfg.KeyCacheSize, cfg.ValueCacheSize, cfg.ValueCacheMaxLength = 2, 3, 16
	r, err := newRedactor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		td, span := traces()
		span.Attributes().PutStr("long", "a long value that is never cached: x@example.com")
		run(t, r, td)
		if got := str(span.Attributes(), "long"); got != "a long value that is never cached: ****" {
			t.Fatalf("long = %q", got)
		}
		if got := str(span.Attributes(), "note"); got != "mail **** or **** now" {
			t.Fatalf("note = %q", got)
		}
	}
	if len(r.secretKey) > 2 || len(r.maskedValue) > 3 {
		t.Fatalf("caches grew past their bounds: %d keys, %d values", len(r.secretKey), len(r.maskedValue))
	}
}

func TestConfigValidation(t *testing.T) {
	cfg := testConfig()
	cfg.ValuePatterns = append(cfg.ValuePatterns, `(?!lookahead)`)
	cfg.Mask = ""
	if err := cfg.Validate(); err == nil {
		t.Fatal("an RE2-invalid pattern and an empty mask must be rejected")
	}
	if err := testConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestMasksNamesAndMessages(t *testing.T) {
	r, err := newRedactor(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"scope name": "lib of ****", "scope version": "****", "span name": "execute_tool lookup ****",
		"status message": "no account for ****", "event name": "mail ****",
	}
	for round := 0; round < 2; round++ { // the second round is served from the caches
		td, span := traces()
		scope := td.ResourceSpans().At(0).ScopeSpans().At(0).Scope()
		scope.SetName("lib of ops@example.com")
		scope.SetVersion("123-45-6789")
		span.SetName("execute_tool lookup ann@example.org")
		span.Status().SetMessage("no account for 123-45-6789")
		span.Events().At(0).SetName("mail bob@example.net")
		run(t, r, td)
		got := map[string]string{
			"scope name": scope.Name(), "scope version": scope.Version(), "span name": span.Name(),
			"status message": span.Status().Message(), "event name": span.Events().At(0).Name(),
		}
		for field, w := range want {
			if got[field] != w {
				t.Errorf("round %d: %s = %q, want %q", round, field, got[field], w)
			}
		}
	}
}
