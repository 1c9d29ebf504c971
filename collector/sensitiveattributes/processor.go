package sensitiveattributes

import (
	"context"
	"regexp"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

type redactor struct {
	ignored map[string]struct{}
	keys    []*regexp.Regexp
	values  []*regexp.Regexp
	mask    string

	mu              sync.Mutex
	secretKey       map[string]bool   // key -> whether its value is masked whole
	maskedValue     map[string]string // value -> the value with every match masked
	keyCacheSize    int
	valueCacheSize  int
	valueCacheLimit int
}

func newRedactor(cfg *Config) (*redactor, error) {
	r := &redactor{
		ignored:         make(map[string]struct{}, len(cfg.IgnoredKeys)),
		mask:            cfg.Mask,
		secretKey:       map[string]bool{},
		maskedValue:     map[string]string{},
		keyCacheSize:    cfg.KeyCacheSize,
		valueCacheSize:  cfg.ValueCacheSize,
		valueCacheLimit: cfg.ValueCacheMaxLength,
	}
	for _, k := range cfg.IgnoredKeys {
		r.ignored[k] = struct{}{}
	}
	for _, p := range cfg.SecretKeyPatterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, err
		}
		r.keys = append(r.keys, re)
	}
	for _, p := range cfg.ValuePatterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, err
		}
		r.values = append(r.values, re)
	}
	return r, nil
}

func (r *redactor) processTraces(_ context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	for _, rs := range td.ResourceSpans().All() {
		r.redact(rs.Resource().Attributes())
		for _, ss := range rs.ScopeSpans().All() {
			scope := ss.Scope()
			r.redact(scope.Attributes())
			scope.SetName(r.maskValue(scope.Name()))
			scope.SetVersion(r.maskValue(scope.Version()))
			for _, span := range ss.Spans().All() {
				r.redact(span.Attributes())
				span.SetName(r.maskValue(span.Name()))
				status := span.Status()
				status.SetMessage(r.maskValue(status.Message()))
				for _, event := range span.Events().All() {
					r.redact(event.Attributes())
					event.SetName(r.maskValue(event.Name()))
				}
				for _, link := range span.Links().All() {
					r.redact(link.Attributes())
				}
			}
		}
	}
	return td, nil
}

func (r *redactor) redact(attrs pcommon.Map) {
	for k, v := range attrs.All() {
		if _, ok := r.ignored[k]; ok {
			continue
		}
		text := v.AsString() // numbers and arrays too: a card number sent as an int
		if r.isSecretKey(k) {
			if text != "" {
				v.SetStr(r.mask)
			}
			continue
		}
		if masked := r.maskValue(text); masked != text {
			v.SetStr(masked)
		}
	}
}

func (r *redactor) isSecretKey(k string) bool {
	r.mu.Lock()
	secret, ok := r.secretKey[k]
	r.mu.Unlock()
	if ok {
		return secret
	}
	for _, re := range r.keys {
		if re.MatchString(k) {
			secret = true
			break
		}
	}
	if len(k) <= r.valueCacheLimit {
		r.mu.Lock()
		if len(r.secretKey) < r.keyCacheSize {
			r.secretKey[k] = secret
		}
		r.mu.Unlock()
	}
	return secret
}

func (r *redactor) maskValue(text string) string {
	if text == "" {
		return text
	}
	cacheable := len(text) <= r.valueCacheLimit && r.valueCacheSize > 0
	if cacheable {
		r.mu.Lock()
		masked, ok := r.maskedValue[text]
		r.mu.Unlock()
		if ok {
			return masked
		}
	}
	masked := text
	for _, re := range r.values {
		if re.MatchString(masked) {
			masked = re.ReplaceAllLiteralString(masked, r.mask)
		}
	}
	if cacheable {
		r.mu.Lock()
		if len(r.maskedValue) >= r.valueCacheSize {
			clear(r.maskedValue) // bounded: start afresh rather than grow
		}
		r.maskedValue[text] = masked
		r.mu.Unlock()
	}
	return masked
}
