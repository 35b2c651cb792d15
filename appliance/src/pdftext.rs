//! PDF text extraction under limits. PDFs come from customers and suppliers
//! and are parsed by a large third-party parser, so a crafted file (a
//! FlateDecode stream inflating to gigabytes, a loop of objects) must not
//! take the spoke down: in the spoke binary, extraction runs in a child
//! process (the same program, `spoke pdf-text`) that caps its own address
//! space and CPU time before it reads a byte, and the parent kills it at a
//! wall-clock deadline. Nothing of the spoke's state is shared with it, and
//! the API runs it without holding the store.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::Error;

/// Address space a PDF may use while its text is read (the parser and the
/// inflated streams; ordinary reports need a few tens of MiB).
pub const MEMORY_LIMIT: u64 = 768 * 1024 * 1024;
/// CPU seconds a PDF may take.
pub const CPU_LIMIT_SECS: u64 = 20;
/// Wall-clock time a PDF may take (the CPU limit, plus time to start).
pub const WALL_LIMIT: Duration = Duration::from_secs(30);
/// Text read back from the child at most (more is cut, as stored text is).
const MAX_OUTPUT: u64 = 16 * 1024 * 1024;

/// Where PDF text is extracted.
#[derive(Debug, Clone, Default)]
pub enum Extractor {
    /// In this process, without limits (library users and tests).
    #[default]
    InProcess,
    /// In a child process: `program pdf-text` under [`MEMORY_LIMIT`],
    /// [`CPU_LIMIT_SECS`] and [`WALL_LIMIT`] (what the spoke binary uses).
    Child(PathBuf),
}

impl Extractor {
    /// The text of the PDF `bytes` (named `filename` in errors).
    pub fn text(&self, filename: &str, bytes: &[u8]) -> Result<String, Error> {
        match self {
            Extractor::InProcess => in_process(bytes).map_err(|why| unreadable(filename, &why)),
            Extractor::Child(program) => in_child(program, filename, bytes),
        }
    }
}

fn unreadable(filename: &str, why: &str) -> Error {
    Error::Unreadable(format!(
        "{filename:?} has a PDF header but could not be read ({why}); re-export it as PDF and upload again"
    ))
}

/// Runs the parser here; a panic inside it is caught and reported.
fn in_process(bytes: &[u8]) -> Result<String, String> {
    let owned = bytes.to_vec();
    match std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem(&owned)) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the PDF parser gave up".into()),
    }
}

fn in_child(program: &PathBuf, filename: &str, bytes: &[u8]) -> Result<String, Error> {
    let spawn_failed = |e: std::io::Error| {
        Error::DataDir(format!(
            "starting the PDF reader {} pdf-text failed: {e}",
            program.display()
        ))
    };
    let mut child = Command::new(program)
        .arg("pdf-text")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .spawn()
        .map_err(spawn_failed)?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(spawn_failed(std::io::Error::other("no pipes")));
    };
    let input = bytes.to_vec();
    // A child that stops reading (it died) makes this write fail; that is
    // reported through its exit status below.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read = stdout.take(MAX_OUTPUT).read_to_end(&mut out);
        let _ = stderr.take(64 * 1024).read_to_end(&mut err);
        let _ = tx.send((read.map(|_| out), err));
    });
    let outcome = rx.recv_timeout(WALL_LIMIT);
    let timed_out = outcome.is_err();
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait().map_err(spawn_failed)?;
    let _ = writer.join();
    if timed_out {
        return Err(unreadable(
            filename,
            &format!("reading it took longer than {} s", WALL_LIMIT.as_secs()),
        ));
    }
    let Ok((out, err)) = outcome else {
        return Err(unreadable(filename, "the PDF reader stopped"));
    };
    match status.code() {
        Some(0) => {
            let out = out.map_err(|e| unreadable(filename, &format!("reading its text: {e}")))?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Some(CHILD_UNREADABLE) => Err(unreadable(filename, String::from_utf8_lossy(&err).trim())),
        _ => Err(unreadable(
            filename,
            &format!(
                "reading it needed more than {} MiB of memory or {CPU_LIMIT_SECS} s of CPU",
                MEMORY_LIMIT / (1024 * 1024)
            ),
        )),
    }
}

/// The child's exit code for a PDF the parser refused.
const CHILD_UNREADABLE: i32 = 3;

/// The child side (`spoke pdf-text`): limits itself, reads a PDF on
/// standard input, writes its text on standard output; returns the exit code.
pub fn child_main() -> i32 {
    use nix::sys::resource::{setrlimit, Resource};
    let limited = setrlimit(Resource::RLIMIT_AS, MEMORY_LIMIT, MEMORY_LIMIT)
        .and_then(|()| setrlimit(Resource::RLIMIT_CPU, CPU_LIMIT_SECS, CPU_LIMIT_SECS));
    if let Err(e) = limited {
        eprintln!("could not limit the PDF reader: {e}");
        return 1;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().take(MEMORY_LIMIT).read_to_end(&mut bytes) {
        eprintln!("reading the PDF from standard input: {e}");
        return 1;
    }
    match in_process(&bytes) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
        Err(why) => {
            eprint!("{why}");
            CHILD_UNREADABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pdf_is_unreadable_not_a_crash() {
        let e = Extractor::InProcess
            .text("x.pdf", b"%PDF-1.7\n garbage garbage")
            .unwrap_err();
        assert!(matches!(e, Error::Unreadable(_)), "{e}");
        assert!(e.to_string().contains("x.pdf"), "{e}");
    }

    #[test]
    fn a_missing_reader_program_is_a_clear_error() {
        let e = Extractor::Child("/nonexistent/spoke".into())
            .text("x.pdf", b"%PDF-1.7\n")
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/spoke pdf-text"), "{e}");
    }
}
