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

.PHONY: build run test test-short lint fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/ledger

run: build
	@base="$(PG_BASE)"; \
	if [ -z "$$DATABASE_URL" ]; then export DATABASE_URL="$$base/booking_ledger?sslmode=disable"; fi; \
	exec ./$(BIN) serve --dev

test: $(STRIPE_MOCK)
	@base="$(PG_BASE)"; \
	if [ -z "$$TEST_DATABASE_URL" ]; then export TEST_DATABASE_URL="$$base/postgres?sslmode=disable"; fi; \
	scripts/with-stripe-mock.sh $(STRIPE_MOCK) $(GO) test -race -count=1 -timeout 20m $(PKGS)

$(STRIPE_MOCK):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION)

test-short:
	$(GO) test -short -count=1 $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@bad=$$($(GO) list -deps ./domain/... | grep -E '^$(MODULE)/(adapters|projections|cmd)|watermill|stripe-go|lib/pq|gorilla|database/sql|net/http' || true); \
	if [ -n "$$bad" ]; then echo "domain/ must import the standard library only, but depends on:"; echo "$$bad"; exit 1; fi
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

clean:
	rm -rf bin
