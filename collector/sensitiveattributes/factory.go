package sensitiveattributes

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
)

// TypeStr is the processor's name in collector configurations.
const TypeStr = "sensitive_attributes"

var componentType = component.MustNewType(TypeStr)

// NewFactory creates the sensitive_attributes processor factory.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		componentType,
		createDefaultConfig,
		processor.WithTraces(createTracesProcessor, component.StabilityLevelDevelopment),
	)
}

func createDefaultConfig() component.Config {
	return &Config{Mask: "****", KeyCacheSize: 2048, ValueCacheSize: 4096, ValueCacheMaxLength: 128}
}

func createTracesProcessor(
	ctx context.Context,
	set processor.Settings,
	cfg component.Config,
	next consumer.Traces,
) (processor.Traces, error) {
	r, err := newRedactor(cfg.(*Config))
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, next, r.processTraces,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}))
}
