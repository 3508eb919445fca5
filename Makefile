# Herald's build. `make run` starts the demo node; `make test` is the whole suite, as CI runs it.
GO        ?= go
STATICCHECK_VERSION := v0.6.1
BIN       := $(shell $(GO) env GOPATH)/bin

.PHONY: run build test deps proto docs vet staticcheck fmt-check bench fuzz

run: build
	./bin/herald serve

build:
	$(GO) build -o bin/herald ./cmd/herald

# deps installs what the tests need on a fresh Debian machine: redis-server for the
# Redis broker tests, protoc for `make proto`, and the Go tools.
deps:
	@command -v redis-server >/dev/null 2>&1 && command -v protoc >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server protobuf-compiler; \
		else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server protobuf-compiler; fi; }
	@test -x $(BIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@test -x $(BIN)/protoc-gen-go || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	@test -x $(BIN)/protoc-gen-go-grpc || $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

proto: deps
	PATH="$(BIN):$$PATH" protoc -I protocol --go_out=. --go_opt=module=github.com/heraldgg/herald \
		--go-grpc_out=. --go-grpc_opt=module=github.com/heraldgg/herald protocol/*.proto

# docs renders docs/configuration.md from the config tree and its doc comments.
docs:
	$(GO) test ./internal/config -run TestConfigurationDoc -update

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck: deps
	$(BIN)/staticcheck ./...

# test is the whole suite: formatting, vet, staticcheck, then every test under -race.
test: deps fmt-check vet staticcheck
	ulimit -n "$$(ulimit -Hn)" 2>/dev/null; $(GO) test -race -count=1 -timeout 15m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeJSON -fuzztime 30s ./protocol
	$(GO) test -run '^$$' -fuzz FuzzDecodeProto -fuzztime 30s ./protocol
	$(GO) test -run '^$$' -fuzz FuzzTCPReader -fuzztime 30s ./protocol
