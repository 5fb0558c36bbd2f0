# vigil — common tasks. `make help` lists them.
CARGO_TARGET_DIR ?= /var/tmp/vigil-target
export CARGO_TARGET_DIR

NEXTEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: help build test lint lint-proto fmt bench bench-ml bench-events bench-predictor up clean-tests

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## Build every crate and the `vigil` binary (release)
	cargo build --release --workspace

test: ## Run the whole test suite (needs NATS on :4222 and PostgreSQL on :5432)
ifeq ($(NEXTEST),yes)
	cargo nextest run --workspace --all-features --no-fail-fast
else
	cargo test --workspace --all-features --no-fail-fast
endif

lint: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

lint-proto: ## buf lint of proto/ (fetches buf from the npm registry)
	cd proto && npx --yes @bufbuild/buf@1 lint

fmt: ## Format the code
	cargo fmt --all

bench: bench-events bench-ml bench-predictor ## Run every benchmark (results: docs/benchmarks.md)

bench-events: ## End-to-end events/s and latency vs raw JetStream (needs NATS and PostgreSQL)
	cargo bench -p vigil-orchestrator --bench events

bench-ml: ## ML core: vigil-ml vs scikit-learn + xgboost + MLP on KDDTrain+ (Python venv in bench/.venv)
	bash bench/ml/run.sh

bench-predictor: ## Predictor over gRPC on loopback vs a no-op tonic service
	cargo bench -p vigil-predictor --bench grpc

up: ## Run every vigil service in one process against local NATS and PostgreSQL
	cargo run --release -p vigil-cli -- up
