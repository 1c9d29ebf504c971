"""CUGAr API: liveness/readiness and the fleet-wide golden-signals dashboard, read from Prometheus."""
