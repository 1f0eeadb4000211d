# fleet: build, test, benchmark, demo. `make help` lists the targets.
GO      ?= go
BIN     ?= bin/fleet
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/fleetdeploy/fleet/internal/cli.Version=$(VERSION)
DEMO    ?= $(CURDIR)/bin/demo

.PHONY: help build test race lint e2e e2e-host bench demo vet clean host release

# What the local cloud needs on a Debian or Ubuntu host (as root).
HOST_PKGS := docker.io debootstrap openssh-client curl
# What the end-to-end suites need besides (cloud-init's schema check, sshd,
# ssh-keygen/ssh-keyscan, the blog's browser and its NSS database tool).
E2E_PKGS  := cloud-init openssh-server chromium libnss3-tools git

# make lint's tools, pinned. The vulnerability database is the one the
# golang.org/x/vulndb module holds (vuln.go.dev is not reachable from every
# machine); bump VULNDB_VERSION for newer entries. Tools are built per Go
# version: a tool built with an older Go cannot read a newer standard library.
STATICCHECK    := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK    := golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB          = $(CURDIR)/bin/tools/vulndb-$(VULNDB_VERSION)
TOOLS           = $(CURDIR)/bin/tools/$(shell $(GO) env GOVERSION)

help:
	@echo "make build   build bin/fleet"
	@echo "make test    unit tests and CLI scripts against the in-process API (fast)"
	@echo "make race    the same tests under the race detector"
	@echo "make lint    go vet, gofmt, staticcheck and govulncheck (pinned versions)"
	@echo "make e2e     end-to-end suites against a real 'fleet local serve' process"
	@echo "make bench   API calls per up, polls/s per resource, status wall time, boot to SSH,"
	@echo "             failed requests across a reserved IP switch, idle droplet memory,"
	@echo "             a stack's fleet up phase by phase; the blog's freeze window, failed reads across"
	@echo "             a promote, rollback time, backup/restore throughput, the project lock's cost,"
	@echo "             hostile specs' load time at full vs an eighth of the size; requests held"
	@echo "             across a promote and a rollback under load; bytes over the operator's link"
	@echo "             for a one-layer change with build: local"
	@echo "make demo    run up, promote, up, promote, rollback against a local API"
	@echo "make release static binaries for linux and darwin on amd64 and arm64 in dist/, with SHA256SUMS"

# host installs what is missing and starts dockerd if it is not running.
host:
	@missing=""; for p in $(HOST_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@if ! docker info >/dev/null 2>&1; then \
	  echo "starting dockerd (log: /var/log/dockerd.log)"; \
	  nohup dockerd >/var/log/dockerd.log 2>&1 & \
	  for i in $$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done; \
	  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log"; exit 1; }; fi

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/fleet

# The blog's gate (stacks/blog/gate) is a module of its own (it builds with
# Debian trixie's Go 1.24): ./... does not reach it, so it is named here.
GATE := stacks/blog/gate

vet:
	$(GO) vet ./...
	cd $(GATE) && $(GO) vet ./...
	@test -z "$$(gofmt -l $(GATE))" || { gofmt -l $(GATE); echo "gofmt needed"; exit 1; }
	@test -z "$$(gofmt -l cmd internal e2e third_party)" || { gofmt -l cmd internal e2e third_party; echo "gofmt needed"; exit 1; }

# Needs Go, git and a shell; everything else it uses is in the repository
# (DigitalOcean's OpenAPI file: third_party/digitalocean-openapi).
test: vet
	$(GO) test ./...
	cd $(GATE) && $(GO) test ./...

# The unit packages only: the Docker suites are behind the e2e tag.
race:
	$(GO) test -race -count=1 ./...
	cd $(GATE) && $(GO) test -race -count=1 ./...

lint: vet
	$(GO) vet -tags e2e ./...
	GOBIN=$(TOOLS) $(GO) install $(STATICCHECK)
	GOBIN=$(TOOLS) $(GO) install $(GOVULNCHECK)
	$(TOOLS)/staticcheck ./...
	$(TOOLS)/staticcheck -tags e2e ./...
	@set -e; if [ ! -f $(VULNDB)/index/db.json ]; then \
	  GOBIN=$(TOOLS) $(GO) install golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION); \
	  src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | grep '"Dir"' | cut -d'"' -f4); \
	  rm -rf $(VULNDB).tmp; $(TOOLS)/indexdb -vulns $$src/data/osv -out $(VULNDB).tmp; mv $(VULNDB).tmp $(VULNDB); fi
	$(TOOLS)/govulncheck -db file://$(VULNDB) ./...

# e2e-host installs what the end-to-end suites need besides the local cloud.
e2e-host:
	@missing=""; for p in $(E2E_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

e2e: host e2e-host build killrerun
	FLEET_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -p 1 -timeout 60m -v ./e2e/... ./internal/localcloud/ ./internal/cloudinit/ ./internal/remote/

bench: host
	@mkdir -p bin
	$(GO) test -run '^$$' -bench . -benchtime 3x -count 1 ./internal/cli/ | tee bin/bench.txt
	FLEET_KILL_REPORT=1 $(MAKE) -s --no-print-directory killrerun | grep -v -e '^=== ' -e '^    --- PASS' | tee -a bin/bench.txt
	$(GO) test -run '^$$' -bench Lock -benchtime 50x -count 1 ./internal/lock/ | tee -a bin/bench.txt
	$(GO) test -run '^$$' -bench LoadHostile -benchtime 3x -count 1 ./internal/spec/ | tee -a bin/bench.txt
	$(GO) test -tags e2e -run '^$$' -bench . -benchtime 3x -count 1 ./internal/localcloud/ | tee -a bin/bench.txt
	$(GO) build -o $(BIN) ./cmd/fleet
	FLEET_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -run '^$$' -bench 'StackUp|BlogCutover|BlogHold|LocalBuildShipping' -benchtime 1x -count 1 -timeout 60m ./e2e/ | tee -a bin/bench.txt

# The demo: the hello stack from a throwaway git repository in bin/demo,
# deployed to a real droplet container on the local cloud and promoted to the
# reserved IP; each run tags and ships the next release (v1.0.0, v1.1.0, ...).
demo: host build
	@set -e; if [ ! -d $(DEMO)/.git ]; then \
	  rm -rf $(DEMO) && mkdir -p $(DEMO)/keys && cp -r cloud-init stacks $(DEMO)/; \
	  ssh-keygen -q -t ed25519 -N '' -C fleet-demo -f $(DEMO)/keys/deploy; \
	  sed 's/^provider: .*/provider: local/' droplets.yaml > $(DEMO)/droplets.yaml; \
	  printf '\nstack:\n  dir: stacks/hello\n  secrets: {file: .env.secrets}\n  health: {host: hello.example.com, paths: [/healthz, /]}\n' >> $(DEMO)/droplets.yaml; \
	  printf '.env.secrets\nkeys/deploy\n' > $(DEMO)/.gitignore; \
	  printf 'HELLO_TOKEN=%s\n' "$$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > $(DEMO)/.env.secrets; \
	  chmod 600 $(DEMO)/.env.secrets; \
	  git -C $(DEMO) init -q -b main && git -C $(DEMO) add -A && \
	  git -C $(DEMO) -c user.name=demo -c user.email=demo@example.com commit -q -m "hello stack"; fi
	@set -e; F=$(CURDIR)/$(BIN); cd $(DEMO); \
	v=v1.$$(git tag | wc -l).0; \
	git -c user.name=demo -c user.email=demo@example.com commit -q --allow-empty -m "release $$v"; git tag $$v; \
	echo '$$ fleet local start'; $$F local start >/dev/null; \
	echo "$$ fleet up $$v"; $$F up $$v; \
	echo '$$ fleet promote';   $$F promote; \
	echo '$$ fleet status';    $$F status; \
	ip=$$($$F status --json | sed -n 's/.*"reserved_ip": "\(.*\)".*/\1/p'); \
	echo "$$ curl http://$$ip/"; curl -s --max-time 10 http://$$ip/

clean:
	rm -rf bin dist

# release: static binaries (no cgo; -trimpath, so no build machine paths)
# named fleet_<version>_<os>_<arch>, and SHA256SUMS (check with
# `sha256sum -c SHA256SUMS`). The version is `git describe --tags`: build at
# a tag for a release; a dirty tree is refused. -buildvcs=true records the
# tag as the module's version too (`go version -m`; -trimpath leaves the
# ldflags out). e2e/release_test.go checks it all.
RELEASE_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
DIST ?= dist
release:
	@case "$(VERSION)" in *dirty*|dev) echo "make release: version $(VERSION): commit first, and tag the release (git tag vX.Y.Z)"; exit 1;; esac
	@set -e; rm -rf $(DIST).tmp; mkdir -p $(DIST).tmp; \
	for p in $(RELEASE_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; out=fleet_$(VERSION)_$${os}_$${arch}; \
	  echo "build $(DIST)/$$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=true -ldflags "-s -w $(LDFLAGS)" -o $(DIST).tmp/$$out ./cmd/fleet; \
	done; \
	cd $(DIST).tmp && sha256sum fleet_* > SHA256SUMS
	@rm -rf $(DIST) && mv $(DIST).tmp $(DIST) && cat $(DIST)/SHA256SUMS

# The kill-and-rerun suite in full (internal/cli/killrerun_test.go): 30 tries
# per phase, signal and moment. FLEET_KILL_REPORT=1 prints without failing.
killrerun:
	$(GO) test -tags killrerun -count=1 -run '^TestKillRerun$$' -parallel 6 -timeout 150m -v ./internal/cli/
