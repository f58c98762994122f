# Haul — the commands a newcomer needs: `make demo`, `make install` and `make test`.
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
# Where `make install` puts haul; DESTDIR stages it (for packaging).
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
SHAREDIR = $(DESTDIR)$(PREFIX)/share
# swift-argument-parser's generate-manual plugin writes the man page here.
MANUAL = .build/plugins/GenerateManual/outputs/HaulCLI/haul.1
SYSTEM_PACKAGES = libcurl4-openssl-dev libssl-dev
BENCH_PACKAGES = nginx-light aria2 axel openssl time
# aria2's own Python client, driven against haul daemon in the tests.
PYTHON_PACKAGES = aria2p==0.12.3

.PHONY: demo test build release install uninstall manual deps bench-deps bench compare symbol-order clean

# Installs the system libraries Haul links (curl, OpenSSL) when they are missing.
deps:
	@bash scripts/ensure-packages.sh $(SYSTEM_PACKAGES)

bench-deps:
	@bash scripts/ensure-packages.sh $(SYSTEM_PACKAGES) $(BENCH_PACKAGES)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product haul --static-swift-stdlib

# The man page, from the command's own help (swift-argument-parser's generate-manual plugin).
# The plugin builds haul in the debug configuration: a release build of its own would be linked
# without --static-swift-stdlib in the same directory as `make release`, and the two would
# rebuild each other.
manual: deps
	$(SWIFT) package plugin generate-manual --configuration debug

# The release binary, bash/zsh/fish completions and the man page under $(DESTDIR)$(PREFIX).
install: manual release
	install -d $(BINDIR) $(SHAREDIR)/man/man1 $(SHAREDIR)/bash-completion/completions \
		$(SHAREDIR)/zsh/site-functions $(SHAREDIR)/fish/vendor_completions.d
	install -m 0755 "$$($(SWIFT) build -c release --show-bin-path)/haul" $(BINDIR)/haul
	$(BINDIR)/haul --generate-completion-script bash > $(SHAREDIR)/bash-completion/completions/haul
	$(BINDIR)/haul --generate-completion-script zsh > $(SHAREDIR)/zsh/site-functions/_haul
	$(BINDIR)/haul --generate-completion-script fish > $(SHAREDIR)/fish/vendor_completions.d/haul.fish
	install -m 0644 $(MANUAL) $(SHAREDIR)/man/man1/haul.1
	@echo "haul installed in $(BINDIR); try: haul --help, man haul"

uninstall:
	rm -f $(BINDIR)/haul $(SHAREDIR)/man/man1/haul.1 $(SHAREDIR)/bash-completion/completions/haul \
		$(SHAREDIR)/zsh/site-functions/_haul $(SHAREDIR)/fish/vendor_completions.d/haul.fish

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

# Options for Benchmarks/compare.py, e.g. COMPARE_ARGS="--rounds 5 --scenarios https-unthrottled-1g".
COMPARE_ARGS ?=
compare: bench-deps release
	bash Benchmarks/compare.sh $(COMPARE_ARGS)

# Lists again the functions typical downloads run (Linker/haul.order), which the release link
# places together so the command keeps fewer pages of code in memory (Benchmarks/symbol_order.py).
symbol-order: bench-deps release
	@bash scripts/ensure-packages.sh valgrind binutils
	python3 Benchmarks/symbol_order.py --haul "$$($(SWIFT) build -c release --show-bin-path)/haul" --out Linker/haul.order

clean:
	rm -rf .build
