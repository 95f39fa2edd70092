# booking-ledger. `make run` starts the service on a working default;
# `make test` runs every test against a real PostgreSQL. Both start
# PostgreSQL when none answers (scripts/ensure-postgres.sh).

GO      ?= go
BIN     := bin/ledger
MODULE  := $(shell awk '/^module /{print $$2; exit}' go.mod)
PKGS    := ./...

# The server that answers, or the one ensure-postgres starts.
PG_BASE = $(shell scripts/ensure-postgres.sh)

# stripe-mock validates requests against Stripe's OpenAPI specification;
# `make test` runs it on a free port (scripts/with-stripe-mock.sh).
STRIPE_MOCK_VERSION ?= v0.203.0
STRIPE_MOCK         := bin/stripe-mock

.PHONY: build run test test-short lint fuzz chaos clean browser promtool nats mutants mutate

build:
	$(GO) build -o $(BIN) ./cmd/ledger

run: build
	@base="$(PG_BASE)"; \
	if [ -z "$$DATABASE_URL" ]; then export DATABASE_URL="$$base/booking_ledger?sslmode=disable"; fi; \
	exec ./$(BIN) serve --dev

test: $(STRIPE_MOCK) browser promtool nats
	@base="$(PG_BASE)"; \
	if [ -z "$$TEST_DATABASE_URL" ]; then export TEST_DATABASE_URL="$$base/postgres?sslmode=disable"; fi; \
	scripts/with-stripe-mock.sh $(STRIPE_MOCK) $(GO) test -race -count=1 -timeout 20m $(PKGS)

$(STRIPE_MOCK):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION)

# The auditor UI's browser test drives Chromium: install Debian's package
# when it is missing and we may (root, apt-get); else the test skips, except
# under CI=true, where it fails.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 && [ -z "$$CHROME_PATH" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing chromium for the browser test"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "could not install chromium"; \
		else echo "chromium missing: the browser test will skip (fail under CI=true)"; fi; \
	fi

# The alert rules are unit-tested with Prometheus' promtool: install
# Debian's prometheus package when it is missing and we may; else the test
# skips, except under CI=true, where it fails.
promtool:
	@if ! command -v promtool >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing prometheus (promtool) for the alert rules' test"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) || echo "could not install prometheus"; \
		else echo "promtool missing: the alert rules' test will skip (fail under CI=true)"; fi; \
	fi

# The forwarding tests need NATS with JetStream: the server on
# 127.0.0.1:4222 when it answers, else nats-server started on a free port
# (adapters/nats/natstest). Install Debian's package when it is missing and
# we may (root, apt-get); else those tests skip, except under CI=true, where
# they fail.
nats:
	@if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing nats-server for the forwarding tests"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null) || echo "could not install nats-server"; \
		else echo "nats-server missing: the forwarding tests use 127.0.0.1:4222 if it answers, else skip (fail under CI=true)"; fi; \
	fi

# The known one-line mutants of issue 19 (M1-M4), each applied to a scratch
# copy and run against the test meant to catch it.
mutants:
	@base="$(PG_BASE)"; \
	if [ -z "$$TEST_DATABASE_URL" ]; then export TEST_DATABASE_URL="$$base/postgres?sslmode=disable"; fi; \
	scripts/mutants.sh

# Mutation testing (gremlins) of the pure packages, each by its own tests,
# no database; prints each package's efficacy and mutant coverage and the
# surviving mutants (docs/MUTATION.md reviews them). Not part of `make
# test`: some ten minutes. MUTATE_PKGS="domain projections" to narrow it.
GREMLINS_VERSION ?= v0.6.0
GREMLINS         := bin/gremlins
MUTATE_PKGS      ?=
mutate: $(GREMLINS) $(STRIPE_MOCK)
	scripts/with-stripe-mock.sh $(STRIPE_MOCK) scripts/mutate.sh $(GREMLINS) $(MUTATE_PKGS)

$(GREMLINS):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION)

test-short:
	$(GO) test -short -count=1 $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@scripts/check-imports.sh
	@echo "lint ok"

# Ingestion against the database's own ceiling and projection rebuilds, on
# fresh databases beside DATABASE_URL's; writes bench/RESULTS.md.
.PHONY: bench
bench: build
	@base="$(PG_BASE)"; \
	if [ -z "$$DATABASE_URL" ]; then export DATABASE_URL="$$base/postgres?sslmode=disable"; fi; \
	./$(BIN) bench report --out bench/RESULTS.md

# Five minutes of fuzzing per target, as done before resolving an issue.
FUZZTIME ?= 5m
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseEvent -fuzztime=$(FUZZTIME) ./adapters/stripe/
	$(GO) test -run='^$$' -fuzz=FuzzWebhook -fuzztime=$(FUZZTIME) ./adapters/http/
	$(GO) test -run='^$$' -fuzz=FuzzCanonicalFast -fuzztime=$(FUZZTIME) ./domain/eventlog/
	$(GO) test -run='^$$' -fuzz=FuzzFoldBookingRaw -fuzztime=$(FUZZTIME) ./projections/

# The fault-injection run (cmd/chaos): the real server against a throwaway
# PostgreSQL cluster of its own, killed, cut off and flooded meanwhile; a few
# minutes. CHAOSFLAGS="-seed 3 -keep" to vary or inspect it.
CHAOSFLAGS ?=
chaos:
	$(GO) run ./cmd/chaos $(CHAOSFLAGS)

clean:
	rm -rf bin
