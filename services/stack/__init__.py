"""Starting and stopping the pipeline's real processes (collector, Prometheus, Alertmanager)."""
