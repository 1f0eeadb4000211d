# fleet: build, test, benchmark, demo. `make help` lists the targets.
GO      ?= go
BIN     ?= bin/fleet
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/fleetdeploy/fleet/internal/cli.Version=$(VERSION)
DEMO    ?= $(CURDIR)/bin/demo

.PHONY: help build test e2e bench demo vet clean

help:
	@echo "make build   build bin/fleet"
	@echo "make test    unit tests and CLI scripts against the in-process API (fast)"
	@echo "make e2e     end-to-end suites against a real 'fleet local serve' process"
	@echo "make bench   API calls per up, polls per second per resource, status wall time"
	@echo "make demo    run up, promote, up, promote, rollback against a local API"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/fleet

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal)" || { gofmt -l cmd internal; echo "gofmt needed"; exit 1; }

test: vet
	$(GO) test ./...

e2e: build
	FLEET_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -v ./e2e/...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 1 ./internal/cli/ | tee bin/bench.txt

# The demo runs on the memory backend until the Docker-backed local cloud lands.
demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/keys
	@ssh-keygen -q -t ed25519 -N '' -C fleet-demo -f $(DEMO)/keys/deploy
	@cp -r cloud-init $(DEMO)/ && sed 's/^provider: .*/provider: local/' droplets.yaml > $(DEMO)/droplets.yaml
	@set -e; \
	$(BIN) local serve --backend memory --listen 127.0.0.1:8510 --token demo-token > $(DEMO)/serve.log 2>&1 & pid=$$!; \
	trap 'kill $$pid' EXIT; sleep 0.5; \
	export FLEET_API_URL=http://127.0.0.1:8510 DIGITALOCEAN_TOKEN=demo-token; \
	cd $(DEMO); F=$(CURDIR)/$(BIN); \
	echo '$$ fleet up v1.0.0'; $$F up v1.0.0; \
	echo '$$ fleet promote';   $$F promote; \
	echo '$$ fleet up v1.1.0'; $$F up v1.1.0; \
	echo '$$ fleet promote';   $$F promote; \
	echo '$$ fleet status';    $$F status; \
	echo '$$ fleet rollback';  $$F rollback; \
	echo '$$ fleet status';    $$F status

clean:
	rm -rf bin
