# Haul — the two commands a newcomer needs: `make demo` and `make test`.
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
SYSTEM_PACKAGES = libcurl4-openssl-dev libssl-dev
BENCH_PACKAGES = nginx-light aria2 axel
# aria2's own Python client, driven against haul daemon in the tests.
PYTHON_PACKAGES = aria2p==0.12.3

.PHONY: demo test build release deps bench-deps bench compare clean

# Installs the system libraries Haul links (curl, OpenSSL) when they are missing.
deps:
	@bash scripts/ensure-packages.sh $(SYSTEM_PACKAGES)

bench-deps:
	@bash scripts/ensure-packages.sh $(SYSTEM_PACKAGES) $(BENCH_PACKAGES)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product haul --static-swift-stdlib

test: deps
	@bash scripts/ensure-python-packages.sh $(PYTHON_PACKAGES)
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

demo: deps
	$(SWIFT) build -c release --product haul --static-swift-stdlib
	$$($(SWIFT) build -c release --show-bin-path)/haul demo

# package-benchmark suite (Benchmarks/ is its own package).
bench: deps
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark

compare: bench-deps release
	bash Benchmarks/compare.sh

clean:
	rm -rf .build
