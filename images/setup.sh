#!/usr/bin/env bash
# Installs what building and booting modvisor's images needs, saying what it
# installs; prints one line when everything is already there.
#   - the Rust toolchain pinned in rust-toolchain.toml, with the bare-metal
#     target x86_64-unknown-none (rustup);
#   - the Hermit toolchain (a pinned nightly with rust-src and llvm-tools,
#     rustup) for the Hermit apps;
#   - Bochs with its BIOSes, and GRUB + xorriso + mtools for the ISOs
#     (Debian packages; installing them needs root);
#   - QEMU 10.0.2 from Debian's bookworm-backports suite, fetched with a
#     private apt configuration and unpacked under images/qemu/ (see
#     setup_qemu below). The runner uses that tree for every QEMU run; the
#     system's QEMU, if any, stays as it is.
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

# The Hermit toolchain, for the Hermit apps (images/src/build/hermit_build.rs
# names it too; a host test keeps the two equal): the nightly that
# hermit-kernel 0.11.0 is made for, with rust-src (core, alloc and std for
# the Hermit targets are built from it) and llvm-tools (the kernel's build
# script runs llvm-as, the archive step llvm-objcopy). The runner calls it
# by name, so it never becomes the default.
hermit_toolchain=nightly-2025-03-15
if ! rustup toolchain list | grep -q "^${hermit_toolchain}-"; then
    echo "setup: installing the Hermit toolchain Rust ${hermit_toolchain} with rust-src and llvm-tools (rustup toolchain install)"
    rustup toolchain install "$hermit_toolchain" --profile minimal --component rust-src,llvm-tools
    installed+=("rust-${hermit_toolchain}")
fi
for component in rust-src llvm-tools; do
    if ! rustup component list --installed --toolchain "$hermit_toolchain" | grep -q "^${component}"; then
        echo "setup: installing the Rust component ${component} of ${hermit_toolchain} (rustup component add)"
        rustup component add --toolchain "$hermit_toolchain" "$component"
        installed+=("${hermit_toolchain}-${component}")
    fi
done

# Debian package -> a file or command it provides. Probing the files keeps
# this fast and works whether or not dpkg is around.
declare -A probes=(
    [bochs]=cmd:bochs
    [bochsbios]=file:/usr/share/bochs/BIOS-bochs-latest
    [vgabios]=file:/usr/share/vgabios/vgabios.bin
    [grub-pc-bin]=file:/usr/lib/grub/i386-pc/multiboot2.mod
    [grub-common]=cmd:grub-mkrescue
    [xorriso]=cmd:xorriso
    [mtools]=cmd:mformat
)
missing=()
for package in bochs bochsbios vgabios grub-pc-bin grub-common xorriso mtools; do
    probe=${probes[$package]}
    case $probe in
        cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 || missing+=("$package") ;;
        file:*) [ -e "${probe#file:}" ] || missing+=("$package") ;;
    esac
done
# Installs Debian packages from the system's own sources (root only;
# otherwise says what to run). $1 says what they are for.
apt_install() {
    local what=$1
    shift
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages ($what): $*" >&2
        echo "setup: install them as root: apt-get update && apt-get install -y $*" >&2
        exit 1
    fi
    echo "setup: installing $* ($what; apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get -q update
    DEBIAN_FRONTEND=noninteractive apt-get -q install -y "$@"
    installed+=("$@")
}

if [ ${#missing[@]} -gt 0 ]; then
    apt_install "Bochs, GRUB and ISO tools" "${missing[@]}"
fi

# --- QEMU 10.0.2, unpacked in place ---------------------------------------
# The runner (images/src/machine/qemu.rs) starts
# $qemu_root/usr/bin/qemu-system-x86_64 with QEMU_MODULE_DIR and -L
# pointing into the tree. The packages are all of those QEMU's modules
# come in: it loads modules of its own build only, and with a module
# package left out it looks in the system's module folder and aborts on
# the first module of another build. seabios comes along because this
# QEMU wants 1.16.3 (its Depends: seabios >> 1.16.3-1~): with bookworm's
# 1.16.2 a q35 boot stalls some 32 s in the firmware.
qemu_version='1:10.0.2+ds-2+deb13u1~bpo12+1'
seabios_version='1.16.3-2~bpo12+1'
qemu_suite=bookworm-backports
qemu_packages=(qemu-system-x86 qemu-system-data qemu-system-common qemu-system-gui
    qemu-system-modules-opengl qemu-system-modules-spice qemu-block-extra)
qemu_dir=images/qemu
qemu_root=$qemu_dir/root
qemu_stamp=$qemu_root/.modvisor-packages

# What the tree must hold, one `package=version` a line: the stamp's text.
qemu_wanted() {
    local p
    for p in "${qemu_packages[@]}"; do echo "$p=$qemu_version"; done
    echo "seabios=$seabios_version"
}

# The fast path: the stamp names exactly the wanted packages and the
# binary runs (so its libraries resolve).
qemu_present() {
    [ -f "$qemu_stamp" ] && [ "$(cat "$qemu_stamp")" = "$(qemu_wanted)" ] &&
        "$qemu_root/usr/bin/qemu-system-x86_64" --version >/dev/null 2>&1
}

# The binary's runtime libraries: the Depends of the two packages that
# carry it and its common code, less QEMU's own packages and the firmware
# (those are in the tree). They are all bookworm packages and none is a
# QEMU, so they are installed the ordinary way.
qemu_libraries() {
    local deb
    for deb in "$qemu_dir"/debs/qemu-system-x86_*.deb "$qemu_dir"/debs/qemu-system-common_*.deb; do
        dpkg-deb -f "$deb" Depends
    done | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' |
        grep -v -e '^$' -e '^qemu-' -e '^seabios$' -e '^ipxe-qemu$' | sort -u
}

# apt with its own state, cache and sources under $qemu_dir/apt, so the
# system's package lists and sources never change; the system's
# apt.conf.d (a proxy, say) still applies.
qemu_apt_config() {
    local apt=$1 keyring=$2 here
    here=$(pwd)
    mkdir -p "$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$apt/preferences.d"
    : >"$apt/state/status"
    echo "deb [signed-by=$keyring] http://deb.debian.org/debian $qemu_suite main" >"$apt/sources.list"
    {
        echo "Dir::State \"$here/$apt/state\";"
        echo "Dir::State::status \"$here/$apt/state/status\";"
        echo "Dir::Cache \"$here/$apt/cache\";"
        echo "Dir::Etc::SourceList \"$here/$apt/sources.list\";"
        echo "Dir::Etc::SourceParts \"$here/$apt/sources.list.d\";"
        echo "Dir::Etc::Preferences \"$here/$apt/preferences\";"
        echo "Dir::Etc::PreferencesParts \"$here/$apt/preferences.d\";"
        # The download folder belongs to whoever runs setup; apt's own
        # `_apt` user could not write there.
        echo "APT::Sandbox::User \"$(id -un)\";"
    } >"$apt/apt.conf"
    echo "$here/$apt/apt.conf"
}

setup_qemu() {
    if qemu_present; then
        return
    fi
    local tool
    for tool in apt-get apt-cache dpkg-deb dpkg-query ldd; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "setup: QEMU 10 comes from Debian's archive, and $tool is missing: run setup on Debian 12" >&2
            exit 1
        fi
    done
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    if [ ! -f "$keyring" ]; then
        echo "setup: $keyring is missing (package debian-archive-keyring): apt cannot check $qemu_suite" >&2
        exit 1
    fi
    echo "setup: fetching QEMU ${qemu_version#1:} and seabios $seabios_version from Debian $qemu_suite" \
        "into $qemu_dir/ (the system's QEMU stays as it is)"
    local apt=$qemu_dir/apt config
    config=$(qemu_apt_config "$apt" "$keyring")
    if ! APT_CONFIG=$config apt-get -q update >"$apt/update.log" 2>&1 || grep -q '^[WE]:' "$apt/update.log"; then
        cat "$apt/update.log" >&2
        echo "setup: apt-get update of $qemu_suite failed (above; also in $apt/update.log)" >&2
        exit 1
    fi
    local specs=() p
    for p in "${qemu_packages[@]}"; do specs+=("$p=$qemu_version"); done
    specs+=("seabios=$seabios_version")
    rm -rf "$qemu_dir/debs"
    mkdir -p "$qemu_dir/debs"
    if ! (cd "$qemu_dir/debs" && APT_CONFIG=$config apt-get -q download "${specs[@]}") >"$apt/download.log" 2>&1; then
        cat "$apt/download.log" >&2
        echo "setup: $qemu_suite does not have all of ${specs[*]}; it has:" >&2
        APT_CONFIG=$config apt-cache madison "${qemu_packages[0]}" seabios >&2 || true
        echo "setup: set qemu_version / seabios_version in images/setup.sh to versions it has" >&2
        exit 1
    fi
    # Unpacked beside the tree and moved in whole, so a failure never
    # leaves half a tree behind a valid stamp.
    local new=$qemu_root.new deb
    rm -rf "$new"
    mkdir -p "$new"
    for deb in "$qemu_dir"/debs/*.deb; do
        dpkg-deb -x "$deb" "$new"
    done
    local missing_libs=()
    for p in $(qemu_libraries); do
        if [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" != "ii " ]; then
            missing_libs+=("$p")
        fi
    done
    if [ ${#missing_libs[@]} -gt 0 ]; then
        apt_install "libraries QEMU 10 needs" "${missing_libs[@]}"
    fi
    local binary=$new/usr/bin/qemu-system-x86_64 unresolved
    unresolved=$(ldd "$binary" 2>&1 | grep 'not found' || true)
    if [ -n "$unresolved" ]; then
        echo "setup: $binary cannot find these libraries:" >&2
        echo "$unresolved" >&2
        exit 1
    fi
    if ! "$binary" --version >/dev/null 2>&1; then
        "$binary" --version >&2 || true
        echo "setup: the unpacked QEMU does not run (above)" >&2
        exit 1
    fi
    qemu_wanted >"$new/.modvisor-packages"
    rm -rf "$qemu_root"
    mv "$new" "$qemu_root"
    echo "setup: $("$qemu_root/usr/bin/qemu-system-x86_64" --version | head -n 1) in $qemu_root/"
    installed+=("qemu-${qemu_version#1:}")
}
setup_qemu

if [ ${#installed[@]} -eq 0 ]; then
    echo "setup: all tools present"
else
    echo "setup: installed ${installed[*]}"
fi
