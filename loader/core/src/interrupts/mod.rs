//! Interrupts and exceptions: the plugins' exception tables.

pub mod extable;
