"""CUGAr monitoring as one source: the tunables (tunables.py), the PromQL (queries.py), the
Prometheus rules (rules.py) and the Grafana dashboards (dashboards.py).

    python -m services.monitoring            # write every generated file
    python -m services.monitoring --check    # exit 1 naming each stale file

The API's /dashboard (services/api/summary.py) asks Prometheus with the same query functions.
"""
