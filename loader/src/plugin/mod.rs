//! Plugins: loading images; the registry builds on it.

pub mod image;
