//! A plugin image in memory: a signed plugin file verified, validated,
//! copied into frames of its own, relocated and protected W^X. The
//! decisions (signature, ELF rules, layout, relocation, protections) are
//! `loader_core::plugin::elf`'s; this module owns the frames and the page rights.
//!
//! `protect()` flushes only this CPU's TLB; after changing an image's
//! rights the other CPUs are told to flush theirs (`smp::shootdown`).

#[cfg(feature = "ktest")]
mod ktests;

use crate::memory::{self, Protection};
use alloc::vec::Vec;
use loader_core::memory::frames::PAGE_SIZE;
#[cfg(feature = "ktest")]
use loader_core::plugin::elf;
use loader_core::plugin::elf::{Error, OwnedMetadata, Plan, Region};

/// A loaded plugin image. Dropping it makes its pages read-write again
/// and frees its frames.
pub struct Image {
    base: u64,
    size: u64,
    metadata: OwnedMetadata,
    /// Inside the image; checked by `Plan::check_descriptor`.
    descriptor: *const plugins::Descriptor,
    regions: Vec<Region>,
    /// Some page may no longer be read-write (set before the first
    /// `protect`, so a failure halfway is undone too).
    protected: bool,
}

// SAFETY: an `Image` owns its frames exclusively, and the descriptor it
// points at is immutable data (`plugins::Descriptor` is `Sync`).
unsafe impl Send for Image {}
// SAFETY: as above; `&Image` only reads.
unsafe impl Sync for Image {}

/// Loads the signed plugin `file` (which may be freed afterwards);
/// `resolve` gives the address of each `mv_*` import.
#[cfg(feature = "ktest")]
pub fn load(file: &[u8], resolve: impl Fn(&str) -> Option<u64>) -> Result<Image, Error> {
    load_elf(elf::verify(file, &elf::SIGNING_KEY)?, resolve)
}

/// Loads a plugin's ELF bytes whose signature or manifest hash the store
/// has checked (`store::open`).
pub fn load_elf(body: &[u8], resolve: impl Fn(&str) -> Option<u64>) -> Result<Image, Error> {
    let plan = Plan::parse(body)?;
    let base = memory::alloc_frames(plan.size / PAGE_SIZE, 1)
        .map_err(|error| Error::OutOfMemory { bytes: plan.size, error })?;
    // From here on `image` owns the frames, so every error path frees them.
    let mut image = Image {
        base,
        size: plan.size,
        metadata: OwnedMetadata::from(&plan.metadata),
        descriptor: (base + plan.descriptor) as *const plugins::Descriptor,
        regions: plan.regions(),
        protected: false,
    };
    // SAFETY: the frames were just allocated, so nothing else refers to
    // them, and fresh frames are identity-mapped read-write.
    let bytes = unsafe { frames_mut(base, plan.size) };
    plan.lay_out(bytes);
    plan.relocate(bytes, base, resolve)?;
    plan.check_descriptor(bytes)?;
    image.protected = true;
    for r in &image.regions {
        memory::protect(base + r.offset, r.len, r.protection).map_err(|error| Error::Protect {
            offset: r.offset,
            len: r.len,
            error,
        })?;
    }
    shootdown(&image.metadata.name);
    log::info!(
        "plugin {} {} loaded at {base:#x} ({} KiB)",
        image.metadata.name,
        image.metadata.version,
        image.size / 1024
    );
    Ok(image)
}

/// `[base, base + len)` as bytes.
///
/// # Safety
/// The range must be memory the caller owns, mapped read-write, with no
/// other live reference to it while the slice lives.
unsafe fn frames_mut<'a>(base: u64, len: u64) -> &'a mut [u8] {
    // SAFETY: forwarded from the caller.
    unsafe { core::slice::from_raw_parts_mut(base as *mut u8, len as usize) }
}

impl Image {
    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn metadata(&self) -> &OwnedMetadata {
        &self.metadata
    }

    /// The plugin's descriptor, valid while the image is loaded.
    pub fn descriptor(&self) -> &plugins::Descriptor {
        // SAFETY: `load` checked that a whole, 8-byte aligned descriptor
        // lies inside the image, with the magic, ABI and non-null entry
        // points; the image memory lives and stays readable as long as
        // `self`, and nothing writes the descriptor.
        unsafe { &*self.descriptor }
    }

    /// The image's pages and their protections (offsets from [`Image::base`]).
    #[cfg(feature = "ktest")]
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
}

/// Other CPUs drop stale rights for the image's pages.
fn shootdown(name: &str) {
    if let Err(e) = crate::smp::shootdown() {
        log::error!("plugin {name}: other CPUs did not flush their TLBs: {e}");
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if self.protected {
            if let Err(e) = memory::protect(self.base, self.size, Protection::ReadWrite) {
                // A frame of unknown rights must not go back to the
                // allocator: its next owner could fault writing to it.
                log::error!("plugin {}: cannot make its image writable again, leaking it: {e}", self.metadata.name);
                return;
            }
            shootdown(&self.metadata.name);
        }
        let frames = self.size / PAGE_SIZE;
        if let Err(e) = memory::free_frames(self.base, frames) {
            log::error!("plugin {}: freeing its {frames} frames at {:#x}: {e}", self.metadata.name, self.base);
        }
        log::debug!("plugin {} {} unloaded", self.metadata.name, self.metadata.version);
    }
}
