# Orrery. `make run` and `make test` each do their own set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO_LOCKED := $(if $(filter true,$(CI)),--locked,)
NEXTEST := $(shell command -v cargo-nextest >/dev/null 2>&1 && echo yes)
HOST_PACKAGES := --workspace --exclude orrery-frontend

.PHONY: setup build build-console build-server run test lint test-rust test-cron-reference test-e2e test-db-stop clean

setup:
	@infra/dev/setup.sh

build-console:
	@echo "== console (wasm)"
	@infra/dev/build-console.sh

build-server:
	@echo "== server"
	@cargo build -q $(CARGO_LOCKED) -p orrery-server

build: build-console build-server

## run: build everything and start Orrery on a private database (prints the URL and the login)
run: setup build
	@target/debug/orrery up

## test: every check — formatting, lints, Rust tests on real PostgreSQL, browser tests in Chromium
test: setup lint test-rust test-cron-reference build test-e2e
	@echo "== all checks passed"

lint:
	@echo "== rustfmt"
	@cargo fmt --all --check
	@echo "== clippy (server side)"
	@cargo clippy -q $(CARGO_LOCKED) $(HOST_PACKAGES) --all-targets -- -D warnings
	@echo "== clippy (browser side)"
	@infra/dev/build-console.sh clippy

test-rust:
	@echo "== Rust tests"
ifeq ($(NEXTEST),yes)
	@cargo nextest run $(CARGO_LOCKED) $(HOST_PACKAGES) --no-fail-fast; rc=$$?; infra/dev/test-db-stop.sh; exit $$rc
else
	@cargo test $(CARGO_LOCKED) $(HOST_PACKAGES) --no-fail-fast; rc=$$?; infra/dev/test-db-stop.sh; exit $$rc
endif

## the cron dialects against Quartz (Java) and cronsim (Python), installed by `make setup`
test-cron-reference:
	@echo "== cron against its references"
ifeq ($(NEXTEST),yes)
	@cargo nextest run $(CARGO_LOCKED) -p orrery-model --test cron_reference --run-ignored only
else
	@cargo test $(CARGO_LOCKED) -p orrery-model --test cron_reference -- --ignored
endif

test-e2e: build
	@echo "== browser tests (Chromium)"
	@cd e2e && node --test tests/*.test.mjs

test-db-stop:
	@infra/dev/test-db-stop.sh --remove

clean: test-db-stop
	cargo clean
