//! Power: how a run ends (exit statuses and their marker line).

pub mod exit;
