# vigil — common tasks. `make help` lists them.
# Builds go to the clone's own target/ unless CARGO_TARGET_DIR says otherwise (CI sets one that
# outlives the clone, so later runs reuse the compiled dependencies).

NEXTEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)
ifeq ($(NEXTEST),yes)
RUN_TESTS := cargo nextest run --workspace --all-features --no-fail-fast
else
RUN_TESTS := cargo test --workspace --all-features --no-fail-fast
endif
# Tests that need no NATS and no PostgreSQL: every unit test, and the integration tests of
# packages that do not use the test sandbox (vigil-testkit).
UNIT_FILTER := not (rdeps(vigil-testkit) & kind(test))

.PHONY: help setup build up demo test test-unit lint deny lint-proto lint-deploy image fmt bench bench-ml bench-events bench-soak bench-predictor bench-learning bench-libs

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## Install build packages, start NATS (JetStream) and PostgreSQL when absent (idempotent)
	@bash scripts/setup

up: setup ## Run every vigil service in one process against local NATS and PostgreSQL
	cargo run --release -p vigil-cli -- up

demo: setup ## Five-minute tour: train, replay NSL-KDD, feedback, retrain, report
	cargo run --release -p vigil-cli -- demo

build: ## Build every crate and the `vigil` binary (release)
	@VIGIL_SETUP_SKIP_SERVICES=1 bash scripts/setup
	cargo build --release --workspace

test: setup ## Run the whole test suite against the real NATS and PostgreSQL
	$(RUN_TESTS)

test-unit: ## Run the tests that need no servers (no NATS, no PostgreSQL)
	@VIGIL_SETUP_SKIP_SERVICES=1 bash scripts/setup
ifeq ($(NEXTEST),yes)
	cargo nextest run --workspace --all-features --no-fail-fast -E '$(UNIT_FILTER)'
else
	cargo test --workspace --all-features --lib --bins
endif

lint: ## rustfmt check and clippy with warnings as errors
	@VIGIL_SETUP_SKIP_SERVICES=1 bash scripts/setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

deny: ## cargo deny check licenses bans sources (deny.toml; installs cargo-deny once into /var/tmp/vigil-tools)
	@VIGIL_SETUP_SKIP_SERVICES=1 VIGIL_SETUP_CARGO_DENY=1 bash scripts/setup
	PATH="$${CARGO_DENY_ROOT:-/var/tmp/vigil-tools/cargo-deny}/bin:$$PATH" cargo deny --locked check licenses bans sources

lint-proto: ## buf lint of proto/ (fetches buf from the npm registry)
	cd proto && npx --yes @bufbuild/buf@1 lint

lint-deploy: ## helm lint of charts/vigil and docker-compose config (no cluster or engine needed)
	@VIGIL_SETUP_SKIP_SERVICES=1 bash scripts/setup
	scripts/helm lint --strict charts/vigil
	docker-compose -f docker-compose.yml config -q

image: ## Build the container image (needs a Docker engine): every service binary and vigil
	docker build -t vigil:latest .

fmt: ## Format the code
	cargo fmt --all

bench: bench-events bench-ml bench-predictor bench-learning ## Run every benchmark (results: docs/benchmarks.md)

bench-events: setup ## The event path as a user runs it: vigil up, a KDDTrain+ model in the predictor, default caps, alerts to a loopback webhook (BASE=<rev> [RUNS=n]: against another commit)
ifdef BASE
	bash bench/events/compare.sh $(BASE) $(or $(RUNS),3)
else
	cargo build --release -p vigil-cli
	cargo bench -p vigil-e2e --bench events
endif

bench-soak: setup ## A million signals at a steady rate through every service, each its own process; resident memory sampled (SOAK_SIGNALS, SOAK_RATE)
	cargo build --release -p vigil-cli
	cargo bench -p vigil-e2e --bench soak

bench-libs: ## The hand-written forest and k-means against smartcore, linfa, XGBoost's forest mode (ARGS="--only vigil", docs/ml.md)
	@VIGIL_SETUP_SKIP_SERVICES=1 bash scripts/setup
	cargo run --release --manifest-path bench/libs/Cargo.toml -- $(ARGS)

bench-ml: ## ML core: vigil vs XGBoost, RandomForest, MLP on NSL-KDD and synthetic flows, 1 core and all (venv in bench/.venv)
	@VIGIL_SETUP_SKIP_SERVICES=1 bash scripts/setup
	bash bench/ml/run.sh

bench-predictor: ## Predictor over gRPC on loopback vs a no-op tonic service
	@VIGIL_SETUP_SKIP_SERVICES=1 bash scripts/setup
	cargo bench -p vigil-predictor --bench grpc

bench-learning: ## Learning loop: analysts' verdicts on unseen attack families through the running system (all, 2 % by the review queue, 2 % at random)
	bash bench/learning/run.sh
