.PHONY: run test deps collector bench monitoring k8s clean

run:        ## bring the whole pipeline up with a simulated agent workload (Ctrl-C stops it)
	bash scripts/run.sh $(ARGS)

test:       ## install what is needed and run every test
	bash scripts/test.sh $(ARGS)

deps:       ## install Debian packages, Python deps and the collector build
	bash scripts/bootstrap.sh

collector:  ## build (or reuse the cached) collector distribution
	bash collector/build.sh

bench:      ## overhead benchmark (see docs/benchmarks.md)
	.venv/bin/python -m bench.overhead

monitoring: ## regenerate rules, dashboards and the collector config's generated blocks (ARGS=--check: fail if stale)
	.venv/bin/python -m services.monitoring $(ARGS)

k8s:        ## regenerate the Kubernetes manifests in deploy/k8s from the configs (ARGS=--check: fail if stale)
	.venv/bin/python -m deploy $(ARGS)


clean:
	rm -rf .venv collector/_build .pytest_cache
