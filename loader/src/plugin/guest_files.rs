//! Guest programs uploaded over COM2 (`runner guest-upload`), which VMs
//! load as `uploads/<name>`. They are not signed, unlike plugins: a guest
//! runs inside its VM, confined by EPT to its own memory and by VMX to the
//! exits the hypervisor handles, so it can harm nothing but itself; the
//! signature guards code that runs in the hypervisor.
//!
//! A file is kept for good once uploaded: a VM being loaded from it may
//! hold its bytes, so an upload under the same name shadows the old file
//! rather than freeing it.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use spin::Mutex;

static FILES: Mutex<Vec<(String, &'static [u8])>> = Mutex::new(Vec::new());

/// Adds (or shadows) guest file `name`.
pub fn add(name: &str, bytes: &[u8]) {
    let kept: &'static [u8] = Box::leak(Box::from(bytes));
    let mut files = FILES.lock();
    match files.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = kept,
        None => files.push((name.into(), kept)),
    }
}

/// The latest upload named `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    FILES.lock().iter().find(|(n, _)| n == name).map(|(_, bytes)| *bytes)
}

/// Every name with its size, in upload order.
pub fn list() -> Vec<(String, usize)> {
    FILES.lock().iter().map(|(n, b)| (n.clone(), b.len())).collect()
}
