//! Scripted shell sessions: `runner test` boots an image with COM1 on a
//! unix socket, waits for the prompt, types each step and checks what the
//! shell answered. A step may instead push a plugin file over COM2 (a
//! second socket) with `runner swap`'s client and check the loader's reply
//! there. The scenarios are data (`data`, `upload`) and the checks are pure
//! functions over the transcript and the replies (`checks`); `drive` is the
//! thin process plumbing, over the expect engine of `link::console`.
//!
//! A step is sent only after the previous one was answered, and a typed
//! step's reply is everything from its first typed byte to the
//! `prompts`-th prompt that starts a line after it.

pub mod checks;
pub mod data;
pub mod drive;
pub mod upload;
