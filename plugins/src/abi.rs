//! The machinery behind the one declaration of the plugin ABI in
//! [`crate::ffi`]: the macros that turn it into Rust items, and the ABI
//! fingerprint derived from it.
//!
//! Every item of the ABI (a `#[repr(C)]` type, a function pointer type, a
//! loader export) gets an [`Item`]: its name and a hash of what it is (a
//! type's size, alignment and fields with their offsets and types; a
//! function's signature as written). [`crate::ABI_FINGERPRINT`] hashes all
//! of them. A plugin's metadata note carries the fingerprint and the item
//! list, so that the loader can refuse a plugin built against another ABI
//! and say which items differ ([`differences`]).

/// One item of the ABI as the fingerprint sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    /// `type CpuInfo`, `fn type CommandFn` or `export mv_log`.
    pub name: &'static str,
    /// What the item is: see [`type_item`] and [`text_item`].
    pub hash: u32,
}

/// One field of a `#[repr(C)]` type, for [`type_item`].
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    /// The field's type as written.
    pub ty: &'static str,
}

/// FNV-1a (64 bits): const-evaluable and plenty to tell two versions of a
/// declaration apart. It guards against mistakes, not attackers: the
/// signature on the file does that.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    const fn byte(self, b: u8) -> Fnv {
        Fnv((self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3))
    }

    /// Source text without its whitespace, so that the compiler's spacing
    /// of `stringify!` does not matter; a NUL ends it, so that `("ab",
    /// "c")` and `("a", "bc")` differ.
    const fn text(mut self, s: &str) -> Fnv {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_whitespace() {
                self = self.byte(b[i]);
            }
            i += 1;
        }
        self.byte(0)
    }

    const fn word(mut self, v: u64) -> Fnv {
        let b = v.to_le_bytes();
        let mut i = 0;
        while i < b.len() {
            self = self.byte(b[i]);
            i += 1;
        }
        self
    }

    const fn fold(self) -> u32 {
        (self.0 ^ (self.0 >> 32)) as u32
    }
}

/// The item of a `#[repr(C)]` type `name` ("type CpuInfo"): what a
/// plugin and the loader must agree on to share it.
pub const fn type_item(name: &'static str, size: usize, align: usize, fields: &[Field]) -> Item {
    let mut h = Fnv::new().text(name).word(size as u64).word(align as u64);
    let mut i = 0;
    while i < fields.len() {
        h = h.text(fields[i].name).word(fields[i].offset as u64).text(fields[i].ty);
        i += 1;
    }
    Item { name, hash: h.fold() }
}

/// The item of a function pointer type or an export: its declaration.
pub const fn text_item(name: &'static str, declaration: &str) -> Item {
    Item { name, hash: Fnv::new().text(name).text(declaration).fold() }
}

/// How an item is known in a metadata note: a hash of its name.
pub const fn name_hash(name: &str) -> u32 {
    Fnv::new().text(name).fold()
}

/// The fingerprint of an item list: equal lists, equal fingerprints.
pub const fn fingerprint(items: &[Item]) -> u64 {
    let mut h = Fnv::new();
    let mut i = 0;
    while i < items.len() {
        h = h.word(name_hash(items[i].name) as u64).word(items[i].hash as u64);
        i += 1;
    }
    h.0
}

/// `parts` one after the other, as one array of `N` items.
pub const fn concat<const N: usize>(parts: &[&[Item]]) -> [Item; N] {
    let mut out = [Item { name: "", hash: 0 }; N];
    let (mut n, mut p) = (0, 0);
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[n] = parts[p][i];
            n += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(n == N, "concat: N must be the total length of the parts");
    out
}

/// One way a plugin's ABI items differ from the loader's ([`differences`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Difference {
    /// Both have the item, built from different declarations.
    Differs(&'static str),
    /// The loader's item is not among the plugin's (added since the
    /// plugin was built).
    Missing(&'static str),
    /// The plugin has an item the loader does not know (removed or
    /// renamed since): only its name's hash is known.
    Unknown(u32),
}

impl core::fmt::Display for Difference {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Difference::Differs(name) => write!(f, "{name} differs"),
            Difference::Missing(name) => write!(f, "{name} is new"),
            Difference::Unknown(hash) => write!(f, "an item the loader does not have (name hash {hash:08x})"),
        }
    }
}

/// What differs between `ours` and a plugin's items (`theirs`: name hash,
/// item hash, as the metadata note lists them): our items in our order,
/// then theirs that we do not know.
pub fn differences<I>(ours: &'static [Item], theirs: I) -> impl Iterator<Item = Difference>
where
    I: Iterator<Item = (u32, u32)> + Clone,
{
    let mine = theirs.clone();
    let changed = ours.iter().filter_map(move |item| {
        let name = name_hash(item.name);
        match mine.clone().find(|(n, _)| *n == name) {
            Some((_, hash)) if hash == item.hash => None,
            Some(_) => Some(Difference::Differs(item.name)),
            None => Some(Difference::Missing(item.name)),
        }
    });
    let unknown = theirs
        .filter(move |(n, _)| !ours.iter().any(|item| name_hash(item.name) == *n))
        .map(|(n, _)| Difference::Unknown(n));
    changed.chain(unknown)
}

/// Declares `#[repr(C)]` types that cross the plugin boundary (each gets
/// `#[repr(C)]` added) and the const `$items`: their [`Item`]s. A generic
/// type is measured with `()` for its parameter, which must not change
/// its layout (it is behind a pointer).
macro_rules! boundary_types {
    (
        const $items:ident;
        $(
            $(#[$attr:meta])*
            pub struct $name:ident $(<$g:ident: 'static>)? {
                $( $(#[$fattr:meta])* pub $field:ident: $fty:ty, )*
            }
        )*
    ) => {
        $(
            $(#[$attr])*
            #[repr(C)]
            pub struct $name $(<$g: 'static>)? {
                $( $(#[$fattr])* pub $field: $fty, )*
            }
        )*

        const $items: &[$crate::abi::Item] = &[$({
            $(type $g = ();)?
            type Measured = $name $(<$g>)?;
            $crate::abi::type_item(
                concat!("type ", stringify!($name)),
                core::mem::size_of::<Measured>(),
                core::mem::align_of::<Measured>(),
                &[$($crate::abi::Field {
                    name: stringify!($field),
                    offset: core::mem::offset_of!(Measured, $field),
                    ty: stringify!($fty),
                }),*],
            )
        }),*];
    };
}
pub(crate) use boundary_types;

/// Declares function pointer types that cross the boundary and the const
/// `$items`: their [`Item`]s.
macro_rules! fn_types {
    (const $items:ident; $( $(#[$attr:meta])* pub type $name:ident = $ty:ty; )*) => {
        $( $(#[$attr])* pub type $name = $ty; )*

        const $items: &[$crate::abi::Item] =
            &[$($crate::abi::text_item(concat!("fn type ", stringify!($name)), stringify!($ty))),*];
    };
}
pub(crate) use fn_types;

/// Declares the functions the loader exports to plugins, once, and
/// generates from that:
/// - the `extern "C"` block plugins call them through;
/// - `Exports`, a struct with one typed function pointer per export: the
///   loader fills a `static` of it with its implementations, so the
///   compiler checks each against its declaration here, and the ELF
///   linker looks import names up in it (`Exports::address`);
/// - [`crate::LOADER_EXPORTS`], the names;
/// - the const `$items`: the exports' [`Item`]s.
macro_rules! exports {
    (
        const $items:ident;
        $(
            $(#[$attr:meta])*
            pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;
        )*
    ) => {
        extern "C" {
            $( $(#[$attr])* pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }

        /// The loader's implementation of every export, as one value the
        /// compiler checks against the declarations (safe functions
        /// coerce to the `unsafe` pointers).
        pub struct Exports {
            $( pub $name: unsafe extern "C" fn($($ty),*) $(-> $ret)?, )*
        }

        impl Exports {
            /// The address of export `name`, for the ELF linker.
            pub fn address(&self, name: &str) -> Option<u64> {
                match name {
                    $( stringify!($name) => Some(self.$name as usize as u64), )*
                    _ => None,
                }
            }
        }

        /// Names of every function the loader exports to plugins; plugins
        /// may import nothing else.
        pub const LOADER_EXPORTS: &[&str] = &[$(stringify!($name)),*];

        const $items: &[$crate::abi::Item] = &[$(
            $crate::abi::text_item(
                concat!("export ", stringify!($name)),
                stringify!(fn $name($($arg: $ty),*) $(-> $ret)?),
            )
        ),*];
    };
}
pub(crate) use exports;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuInfo, ITEMS};
    use std::string::ToString;
    use std::vec::Vec;

    fn item(name: &str) -> Item {
        *ITEMS.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no item {name}"))
    }

    /// The items as a note lists them.
    fn listed(items: &[Item]) -> Vec<(u32, u32)> {
        items.iter().map(|i| (name_hash(i.name), i.hash)).collect()
    }

    #[test]
    fn every_item_is_there_once_with_a_name() {
        for kind in ["type ", "fn type ", "export "] {
            assert!(ITEMS.iter().any(|i| i.name.starts_with(kind)), "no {kind}items");
        }
        for name in ["type Descriptor", "type Slice", "type CpuInfo", "fn type CommandFn", "export mv_cpu_info"] {
            item(name);
        }
        assert_eq!(ITEMS.iter().filter(|i| i.name.starts_with("export ")).count(), crate::LOADER_EXPORTS.len());
        let mut names: Vec<u32> = ITEMS.iter().map(|i| name_hash(i.name)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ITEMS.len(), "two item names hash alike");
        assert_eq!(crate::ABI_FINGERPRINT, fingerprint(&ITEMS));
    }

    #[test]
    fn a_type_item_is_its_layout() {
        // What the macro made of `CpuInfo`, by hand: the hash covers the
        // layout, not the declaration's spacing.
        let fields = |ty| {
            [
                Field { name: "apic_id", offset: 0, ty },
                Field { name: "class", offset: 4, ty: "u32" },
                Field { name: "online", offset: 8, ty: "u32" },
            ]
        };
        assert_eq!(type_item("type CpuInfo", 12, 4, &fields("u32")), item("type CpuInfo"));
        assert_eq!(type_item("type CpuInfo", 12, 4, &fields(" u32 ")), item("type CpuInfo"));
        // Each part of the layout counts.
        assert_ne!(type_item("type CpuInfo", 12, 4, &fields("i32")), item("type CpuInfo"));
        assert_ne!(type_item("type CpuInfo", 16, 4, &fields("u32")), item("type CpuInfo"));
        assert_ne!(type_item("type CpuInfo", 12, 8, &fields("u32")), item("type CpuInfo"));
        let mut moved = fields("u32");
        moved[2].offset = 12;
        assert_ne!(type_item("type CpuInfo", 12, 4, &moved), item("type CpuInfo"));
        assert_eq!(core::mem::size_of::<CpuInfo>(), 12);
    }

    #[test]
    fn an_export_item_is_its_signature() {
        let now = "fn mv_cpu_info(cpu: u32, info: *mut CpuInfo) -> i32";
        assert_eq!(text_item("export mv_cpu_info", now), item("export mv_cpu_info"));
        let tight = "fn mv_cpu_info(cpu:u32,info:*mut CpuInfo)->i32";
        assert_eq!(text_item("export mv_cpu_info", tight), item("export mv_cpu_info"));
        let wider = "fn mv_cpu_info(cpu: u64, info: *mut CpuInfo) -> i32";
        assert_ne!(text_item("export mv_cpu_info", wider), item("export mv_cpu_info"));
    }

    #[test]
    fn differences_name_the_items_built_from_other_declarations() {
        // A plugin built before `CpuInfo` got `online` and before
        // `mv_cpu_info` took a u32, with an export since removed, and
        // without `mv_boot_cpu_limit`.
        let old_info = type_item(
            "type CpuInfo",
            8,
            4,
            &[Field { name: "apic_id", offset: 0, ty: "u32" }, Field { name: "class", offset: 4, ty: "u32" }],
        );
        let old_export = text_item("export mv_cpu_info", "fn mv_cpu_info(cpu: u64, info: *mut CpuInfo) -> i32");
        let gone = text_item("export mv_gone", "fn mv_gone()");
        let before: Vec<Item> = ITEMS
            .iter()
            .filter(|i| i.name != "export mv_boot_cpu_limit")
            .map(|i| match i.name {
                "type CpuInfo" => old_info,
                "export mv_cpu_info" => old_export,
                _ => *i,
            })
            .chain([gone])
            .collect();
        assert_ne!(fingerprint(&before), crate::ABI_FINGERPRINT);
        let found: Vec<Difference> = differences(&ITEMS, listed(&before).into_iter()).collect();
        assert_eq!(
            found,
            [
                Difference::Differs("type CpuInfo"),
                Difference::Differs("export mv_cpu_info"),
                Difference::Missing("export mv_boot_cpu_limit"),
                Difference::Unknown(name_hash("export mv_gone")),
            ]
        );
        assert_eq!(found[0].to_string(), "type CpuInfo differs");
        assert_eq!(differences(&ITEMS, listed(&ITEMS).into_iter()).count(), 0);
    }

    #[test]
    fn concat_keeps_the_order() {
        let (a, b) = (text_item("a", "1"), text_item("b", "2"));
        assert_eq!(concat::<3>(&[&[a], &[], &[b, a]]), [a, b, a]);
    }
}
