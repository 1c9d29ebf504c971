"""Kept only for `from services.promql import COLLECTOR_JOB` in services/stack/pipeline.py: the
scrape job of the collector's old prometheus exporter, which the OTLP push pipeline no longer
has. Delete this module with that import. CUGAr's PromQL lives in services/monitoring/queries.py.
"""

COLLECTOR_JOB = "otel-collector"
