# modvisor: build images, boot them, test them.
#
#   make / make images   build the loader, the plugins, the test guests, the Hermit apps and every image (images/out/)
#   make run             boot IMAGE (default: default) in QEMU on this terminal
#   make bochs           boot IMAGE's ISO in Bochs
#   make test            host unit tests, then every test image in QEMU and Bochs
#   make lint            cargo fmt --check and clippy (host and kernel), warnings are errors
#   make bench           instruction counts against their goals, and image sizes (exit 2: a goal missed)
#   make profile         WINDOW's instructions per function (firmware, boot, load-and-link, cpu-offline-online)
#   make swap PLUGIN=x   upload plugin x to the running `make run` and swap it in
#   make guest-upload FILE=f [NAME=n]  upload guest program f to the running image (VMs load uploads/n)
#   make cpu-add         hot-add a CPU to the running `make run` (QMP)
#   make cpu-del CPU=n   hot-remove QEMU's cpu n from the running `make run`
#   make setup           install missing tools (run, bochs, test, bench do it first)
#   make clean           remove images/out and cargo's target/
#
# Variables: IMAGE=<name> (run, bochs), QEMU_ARGS="..." (run),
# BOCHS_MODEL=corei7_skylake_x|tigerlake (bochs; default corei7_skylake_x),
# BOCHS_CPUS=<n> (bochs; 1 to 8, default 2), FILTER=<substr>
# and JOBS=<n> (test), WINDOW=<name> (profile; default boot), PLUGIN=<name> and VERSION=<version> (swap),
# FEATURES='"sse4.2": false' (cpu-add: extra CPU properties), CPU=<n> (cpu-del),
# ACCEL=tcg|kvm (QEMU's accelerator; default tcg).

CARGO ?= cargo
IMAGE ?= default
RUNNER := $(CARGO) run --quiet -p images --bin runner --
export ACCEL

WINDOW ?= boot

.PHONY: all images setup run bochs test lint bench profile swap guest-upload cpu-add cpu-del clean

all: images

images:
	$(RUNNER) build

setup:
	@images/setup.sh

run: setup
	$(RUNNER) run --image $(IMAGE) -- $(QEMU_ARGS)

bochs: setup
	$(RUNNER) bochs --image $(IMAGE) $(if $(BOCHS_MODEL),--model $(BOCHS_MODEL)) $(if $(BOCHS_CPUS),--cpus $(BOCHS_CPUS))

test: setup
	$(CARGO) test
	$(RUNNER) test $(if $(FILTER),--filter "$(FILTER)") $(if $(JOBS),--jobs $(JOBS))

# The kernel is checked for its own target too, with and without its
# in-image tests, since each build leaves out code the other has; so are
# the test guests, whose entry and panic handler exist only there. The
# Hermit apps (a workspace of their own) are plain std code: checked for
# the host with the stable toolchain, which needs no Hermit kernel (their
# build script only names the library's folder; nothing is linked).
lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p loader --target x86_64-unknown-none -- -D warnings
	$(CARGO) clippy -p loader --target x86_64-unknown-none --features ktest -- -D warnings
	$(CARGO) clippy -p test-guests --target x86_64-unknown-none -- -D warnings
	$(CARGO) fmt --all --check --manifest-path images/guests/hermit/Cargo.toml
	HERMIT_LIB_DIR=images/out/hermit $(CARGO) clippy --manifest-path images/guests/hermit/Cargo.toml \
		--target-dir target/hermit-lint --all-targets -- -D warnings

bench: setup
	$(RUNNER) bench

profile: setup
	$(RUNNER) bench --profile $(WINDOW)

swap:
	$(RUNNER) swap --plugin "$(PLUGIN)" $(if $(VERSION),--version "$(VERSION)")

guest-upload:
	$(RUNNER) guest-upload --file "$(FILE)" $(if $(NAME),--name "$(NAME)")

cpu-add:
	$(RUNNER) cpu-add $(if $(FEATURES),--features '$(FEATURES)')

cpu-del:
	$(RUNNER) cpu-del --cpu "$(CPU)"

clean:
	rm -rf images/out
	$(CARGO) clean
