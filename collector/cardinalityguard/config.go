// Package cardinalityguard is the CUGAr collector's cardinality guard: a metrics processor that
// bounds the label values of the catalogue's metrics for every sender (not only our SDK).
//
// For each configured metric, every data point attribute is either
//   - closed: a fixed vocabulary; any other value becomes "other";
//   - open: a named set bounded per service.name (shared by every instance of the service and
//     by every metric using the set); the first `limit` distinct values seen are admitted for
//     the life of the process, later newcomers become "other";
//   - passthrough (every metric): kept when equal to the resource attribute of that key (the
//     resource identity a backend variant copies onto points: deployment.environment.name);
//   - unlisted: removed (the catalogue names every label a metric has).
//
// Points whose attributes become equal after the rewrite are merged into one point (sums add,
// histograms with equal bounds add bucket-wise), so no duplicate series reach the exporter.
// Every replaced value is counted in otelcol_cardinality_guard_overflow_points.
package cardinalityguard

import (
	"errors"
	"fmt"
	"sort"
)

// Other is the value that replaces a label value outside its set.
const Other = "other"

// MetricConfig names the attributes a catalogue metric may carry.
type MetricConfig struct {
	// Name is the OpenTelemetry metric name (cugar.tool.calls).
	Name string `mapstructure:"name"`
	// Closed maps an attribute key to its vocabulary.
	Closed map[string][]string `mapstructure:"closed"`
	// Open maps an attribute key to the name of an open set in Config.OpenSets.
	Open map[string]string `mapstructure:"open"`
}

// Config is the processor's configuration (generated from otel/catalogue.py).
type Config struct {
	// OpenSets bounds each open set: distinct values admitted per service.name.
	OpenSets map[string]int `mapstructure:"open_sets"`
	// MaxServices bounds the number of service.name values tracked; the open attributes of
	// services beyond it all become "other" (memory stays bounded).
	MaxServices int `mapstructure:"max_services"`
	// Passthrough lists attribute keys every guarded metric may carry when the value is the
	// resource's own (any other value would be a new, unbounded dimension: removed).
	Passthrough []string `mapstructure:"passthrough"`
	// Metrics lists the guarded metrics; others pass unchanged.
	Metrics []MetricConfig `mapstructure:"metrics"`
}

// Validate implements component.ConfigValidator.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxServices <= 0 {
		errs = append(errs, fmt.Errorf("max_services must be positive, got %d", c.MaxServices))
	}
	for name, limit := range c.OpenSets {
		if limit <= 0 {
			errs = append(errs, fmt.Errorf("open_sets.%s must be positive, got %d", name, limit))
		}
	}
	seen := map[string]bool{}
	for i, m := range c.Metrics {
		if m.Name == "" {
			errs = append(errs, fmt.Errorf("metrics[%d]: name is empty", i))
		}
		if seen[m.Name] {
			errs = append(errs, fmt.Errorf("metrics[%d]: %q listed twice", i, m.Name))
		}
		seen[m.Name] = true
		for key, set := range m.Open {
			if _, ok := c.OpenSets[set]; !ok {
				errs = append(errs, fmt.Errorf("metrics[%d] (%s): attribute %q uses open set %q, "+
					"which open_sets does not define", i, m.Name, key, set))
			}
			if _, both := m.Closed[key]; both {
				errs = append(errs, fmt.Errorf("metrics[%d] (%s): attribute %q is both closed and open",
					i, m.Name, key))
			}
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
