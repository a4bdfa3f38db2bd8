//! Boot: the kernel command line.

pub mod cmdline;
