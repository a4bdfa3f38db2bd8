//! A file round trip through std::fs under /root, where Hermit mounts
//! uhyve's file system, so every step is one of uhyve's file hypercalls
//! (open, write, lseek, read, close, unlink): create and write a file,
//! read it back whole, seek into it and read the rest, unlink it and
//! check it is gone. Exit 0 when every step held, 1 at the first that
//! did not (it says which).

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::process::ExitCode;

const PATH: &str = "/root/hermit-files-test.txt";
const TEXT: &[u8] = b"Hermit wrote this through uhyve's file hypercalls.\n";
/// Where the second read starts; any offset inside TEXT would do.
const SEEK_TO: usize = 7;

fn round_trip() -> Result<(), String> {
    let step = |what: &str, e: std::io::Error| format!("{what} {PATH}: {e}");
    File::create(PATH).and_then(|mut f| f.write_all(TEXT)).map_err(|e| step("writing", e))?;
    println!("files: wrote {} bytes to {PATH}", TEXT.len());

    let mut file = File::open(PATH).map_err(|e| step("opening", e))?;
    let mut whole = Vec::new();
    file.read_to_end(&mut whole).map_err(|e| step("reading", e))?;
    if whole != TEXT {
        return Err(format!(
            "read back {:?}, wrote {:?}",
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(TEXT)
        ));
    }
    println!("files: read the {} bytes back", whole.len());

    // Only the bytes read after the seek are checked, not the offset it
    // returns: Hermit 0.11.0's sys_lseek returns 0 on success.
    file.seek(SeekFrom::Start(SEEK_TO as u64)).map_err(|e| step("seeking in", e))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).map_err(|e| step("reading after the seek in", e))?;
    if rest != TEXT[SEEK_TO..] {
        return Err(format!("after seeking to {SEEK_TO} read {:?}", String::from_utf8_lossy(&rest)));
    }
    println!("files: after seeking to {SEEK_TO}, read the remaining {} bytes", rest.len());
    drop(file);

    fs::remove_file(PATH).map_err(|e| step("unlinking", e))?;
    match File::open(PATH) {
        Err(e) if e.kind() == ErrorKind::NotFound => println!("files: unlinked {PATH}; opening it fails as it should"),
        Err(e) => return Err(step("after the unlink, opening failed otherwise than not-found:", e)),
        Ok(_) => return Err(format!("{PATH} still opens after the unlink")),
    }
    Ok(())
}

fn main() -> ExitCode {
    match round_trip() {
        Ok(()) => {
            println!("files: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("files: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
