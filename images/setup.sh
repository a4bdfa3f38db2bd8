#!/usr/bin/env bash
# Installs what building and booting modvisor's images needs, saying what it
# installs; prints one line when everything is already there.
#   - the Rust toolchain pinned in rust-toolchain.toml, with the bare-metal
#     target x86_64-unknown-none (rustup);
#   - QEMU, Bochs with its BIOSes, and GRUB + xorriso + mtools for the ISOs
#     (Debian packages; installing them needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

installed=()

if ! command -v rustup >/dev/null 2>&1; then
    echo "setup: rustup is missing; install Rust through rustup first" >&2
    exit 1
fi
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^${channel}-"; then
    echo "setup: installing Rust ${channel} (rustup toolchain install)"
    # Without arguments rustup installs what rust-toolchain.toml names,
    # components and targets included.
    rustup toolchain install
    installed+=("rust-${channel}")
fi
if ! rustup target list --installed --toolchain "$channel" | grep -qx x86_64-unknown-none; then
    echo "setup: installing the Rust target x86_64-unknown-none (rustup target add)"
    rustup target add --toolchain "$channel" x86_64-unknown-none
    installed+=(x86_64-unknown-none)
fi
# `make lint` (and CI) needs rustfmt and clippy; the image build rust-src
# and llvm-tools (rust-lld).
for component in rustfmt clippy rust-src llvm-tools; do
    if ! rustup component list --installed --toolchain "$channel" | grep -q "^${component}"; then
        echo "setup: installing the Rust component ${component} (rustup component add)"
        rustup component add --toolchain "$channel" "$component"
        installed+=("$component")
    fi
done

# Debian package -> a file or command it provides. Probing the files keeps
# this fast and works whether or not dpkg is around.
declare -A probes=(
    [qemu-system-x86]=cmd:qemu-system-x86_64
    [bochs]=cmd:bochs
    [bochsbios]=file:/usr/share/bochs/BIOS-bochs-latest
    [vgabios]=file:/usr/share/vgabios/vgabios.bin
    [grub-pc-bin]=file:/usr/lib/grub/i386-pc/multiboot2.mod
    [grub-common]=cmd:grub-mkrescue
    [xorriso]=cmd:xorriso
    [mtools]=cmd:mformat
)
missing=()
for package in qemu-system-x86 bochs bochsbios vgabios grub-pc-bin grub-common xorriso mtools; do
    probe=${probes[$package]}
    case $probe in
        cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 || missing+=("$package") ;;
        file:*) [ -e "${probe#file:}" ] || missing+=("$package") ;;
    esac
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        echo "setup: install them as root: apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y "${missing[@]}"
    installed+=("${missing[@]}")
fi

if [ ${#installed[@]} -eq 0 ]; then
    echo "setup: all tools present"
else
    echo "setup: installed ${installed[*]}"
fi
