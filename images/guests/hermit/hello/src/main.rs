//! Hermit's hello world: shows the arguments as the app receives them
//! (argv[0] is always "bin" under uhyve) and exits with a status of the
//! caller's choosing, `exit=N`, or 3: a status no successful-looking
//! default (0) or crash (1, -1) produces, so a run that reports 3 really
//! reached the end of `main`.

use std::process::ExitCode;

/// The status when no `exit=N` argument says otherwise.
const DEFAULT_STATUS: u8 = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    println!("Hello from a Hermit app!");
    println!("argv ({}): {args:?}", args.len());
    let status = args.iter().find_map(|a| a.strip_prefix("exit=")?.parse().ok()).unwrap_or(DEFAULT_STATUS);
    println!("exiting with status {status}");
    ExitCode::from(status)
}
