//! What an IN or OUT does: the VM's handler for the port, the test-guest
//! ABI's built-in ports, or the VM's policy for ports nobody handles.
//! Pure, tested on the host; `guest/io.rs` carries it out.

/// Who owns a port (`H`: another plugin's handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<H> {
    /// The test-guest ABI's console: OUT bytes make lines.
    Console,
    /// The test-guest ABI's exit port: a 4-byte OUT ends the VM.
    Exit,
    Handler(H),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<H> {
    Console(u8),
    Exit(u32),
    /// Call the handler (for an IN, it gives the value).
    Call(H),
    /// An IN nobody handles under the ignore policy: all ones.
    ReadOnes,
    /// An OUT nobody handles under the ignore policy.
    Drop,
    /// The VM stops with a report.
    Stop(&'static str),
}

/// The action for an access of `size` bytes (`write`: OUT of `value`) to
/// a port owned by `owner`; `ignore`: the VM's policy for unowned ports.
pub fn decide<H: Copy>(owner: Option<Owner<H>>, ignore: bool, write: bool, size: u8, value: u32) -> Action<H> {
    match (owner, write) {
        (None, false) if ignore => Action::ReadOnes,
        (None, true) if ignore => Action::Drop,
        (None, _) => Action::Stop("no handler for it (port policy: stop)"),
        (Some(Owner::Console), true) => Action::Console(value as u8),
        (Some(Owner::Exit), true) if size == 4 => Action::Exit(value),
        (Some(Owner::Console | Owner::Exit), _) => {
            Action::Stop("the test-guest ABI's port takes only OUT (4 bytes for exit)")
        }
        (Some(Owner::Handler(h)), _) => Action::Call(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_policies_and_the_test_abi() {
        let d = |owner, ignore, write, size, value| decide::<char>(owner, ignore, write, size, value);
        assert_eq!(d(Some(Owner::Handler('h')), false, false, 1, 0), Action::Call('h'));
        assert_eq!(d(Some(Owner::Handler('h')), true, true, 4, 7), Action::Call('h'));
        assert_eq!(d(None, true, false, 2, 0), Action::ReadOnes);
        assert_eq!(d(None, true, true, 2, 5), Action::Drop);
        assert_eq!(d(None, false, true, 1, 5), Action::Stop("no handler for it (port policy: stop)"));
        assert_eq!(d(None, false, false, 1, 0), Action::Stop("no handler for it (port policy: stop)"));
        assert_eq!(d(Some(Owner::Console), false, true, 1, 0x141), Action::Console(0x41));
        assert_eq!(d(Some(Owner::Exit), false, true, 4, 3), Action::Exit(3));
        // The ABI's ports are not the policy's: misuse stops the VM even
        // under ignore.
        assert!(matches!(d(Some(Owner::Exit), true, true, 1, 3), Action::Stop(_)));
        assert!(matches!(d(Some(Owner::Console), true, false, 1, 0), Action::Stop(_)));
    }
}
