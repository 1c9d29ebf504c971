// Package sensitiveattributes masks secrets and personal data in span attributes: the CUGAr
// collector's trace redaction, configured from otel/sensitive.py (the table the SDK applies).
//
// It does what the contrib redaction processor does with allow_all_keys, redact_all_types,
// ignored_keys, blocked_key_patterns and blocked_values, on resource, scope, span, span event
// and span link attributes, but decides each distinct key once and each short distinct value
// once (bounded caches): the contrib processor runs every pattern over every key and value of
// every span, which made redaction seven times the cost of the rest of the traces pipeline.
// Patterns are applied in order, each match replaced by the mask, exactly like the contrib
// processor; the caches change the cost, never the result.
package sensitiveattributes

import (
	"errors"
	"fmt"
	"regexp"
)

// Config is the processor's configuration (generated from otel/sensitive.py).
type Config struct {
	// IgnoredKeys are left untouched (exact key names).
	IgnoredKeys []string `mapstructure:"ignored_keys"`
	// SecretKeyPatterns: an attribute whose key matches any of them has its whole value masked.
	SecretKeyPatterns []string `mapstructure:"secret_key_patterns"`
	// ValuePatterns: every match in any other attribute value is masked.
	ValuePatterns []string `mapstructure:"value_patterns"`
	// Mask replaces what is masked.
	Mask string `mapstructure:"mask"`
	// KeyCacheSize and ValueCacheSize bound the caches (entries); ValueCacheMaxLength is the
	// longest key or value cached (longer ones are always scanned). At the defaults the caches
	// hold at most about 2 MiB.
	KeyCacheSize        int `mapstructure:"key_cache_size"`
	ValueCacheSize      int `mapstructure:"value_cache_size"`
	ValueCacheMaxLength int `mapstructure:"value_cache_max_length"`
}

// Validate implements component.ConfigValidator.
func (c *Config) Validate() error {
	var errs []error
	for _, group := range []struct {
		name     string
		patterns []string
	}{{"secret_key_patterns", c.SecretKeyPatterns}, {"value_patterns", c.ValuePatterns}} {
		for i, p := range group.patterns {
			if _, err := regexp.Compile(p); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", group.name, i, err))
			}
		}
	}
	if c.Mask == "" {
		errs = append(errs, errors.New("mask must not be empty"))
	}
	if c.KeyCacheSize < 0 || c.ValueCacheSize < 0 || c.ValueCacheMaxLength < 0 {
		errs = append(errs, errors.New("cache sizes must not be negative"))
	}
	return errors.Join(errs...)
}
