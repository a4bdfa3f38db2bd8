//! Plugins that must fail in one specific way each, for the runtime's
//! acceptance tests; one feature per plugin:
//!
//! - `missing-import` (`bad-missing-import-plugin`): imports
//!   `mv_does_not_exist`, which the loader does not export: linking fails.
//! - `unmet-requirement` (`bad-unmet-requirement-plugin`): requires
//!   `nonexistent ^1`, which nobody provides: resolution fails.
//! - `duplicate-provider` (`bad-duplicate-provider-plugin`): provides
//!   `counter 1.0.0` while counter-plugin does: refused as a second provider.
//! - `init-fails` (`bad-init-fails-plugin`): `init` returns error 7.
//! - `init-panics` (`bad-init-panics-plugin`): `init` panics.
//!
//! This crate is the one exception to "a plugin's name is its folder
//! name": its Cargo.toml lists the features under
//! `package.metadata.modvisor.variants`, and each variant names itself.
//! Built without a variant feature the crate is empty (a host build).
#![cfg_attr(target_os = "none", no_std)]

#[cfg(feature = "missing-import")]
mod variant {
    extern "C" {
        /// Not in `plugins::LOADER_EXPORTS`: the loader cannot bind it.
        fn mv_does_not_exist() -> i32;
    }

    pub fn init() -> Result<(), i32> {
        // SAFETY: never runs; the loader refuses the plugin at link time.
        match unsafe { mv_does_not_exist() } {
            0 => Ok(()),
            e => Err(e),
        }
    }

    plugins::plugin! {
        name: "bad-missing-import-plugin", version: "1.0.0",
        init: init, fini: || {},
        provides: [], requires: [], state: None,
    }
}

#[cfg(feature = "unmet-requirement")]
mod variant {
    /// The table of an interface nobody provides.
    #[repr(C)]
    pub struct Nonexistent {
        pub nothing: extern "C" fn(),
    }

    // SAFETY: no plugin provides `nonexistent`, so no table is ever read.
    unsafe impl plugins::Interface for Nonexistent {
        const NAME: &'static str = "nonexistent";
        const VERSION: &'static str = "1.0.0";
    }

    pub fn init() -> Result<(), i32> {
        Ok(())
    }

    plugins::plugin! {
        name: "bad-unmet-requirement-plugin", version: "1.0.0",
        init: init, fini: || {},
        provides: [], requires: [(Nonexistent, "^1")], state: None,
    }
}

#[cfg(feature = "duplicate-provider")]
mod variant {
    use counter_api::Counter;

    extern "C" fn next() -> u64 {
        0
    }

    extern "C" fn generation() -> u32 {
        0
    }

    static TABLE: Counter = Counter { next, generation };

    pub fn init() -> Result<(), i32> {
        Ok(())
    }

    plugins::plugin! {
        name: "bad-duplicate-provider-plugin", version: "1.0.0",
        init: init, fini: || {},
        provides: [(Counter, &TABLE)], requires: [], state: None,
    }
}

#[cfg(feature = "init-fails")]
mod variant {
    /// The code the loader must report.
    const INIT_ERROR: i32 = 7;

    pub fn init() -> Result<(), i32> {
        Err(INIT_ERROR)
    }

    plugins::plugin! {
        name: "bad-init-fails-plugin", version: "1.0.0",
        init: init, fini: || {},
        provides: [], requires: [], state: None,
    }
}

#[cfg(feature = "init-panics")]
mod variant {
    pub fn init() -> Result<(), i32> {
        panic!("bad-init-panics-plugin panics in init on purpose")
    }

    plugins::plugin! {
        name: "bad-init-panics-plugin", version: "1.0.0",
        init: init, fini: || {},
        provides: [], requires: [], state: None,
    }
}
