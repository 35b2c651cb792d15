//! An uploaded document: the first byte picks the file name's extension
//! (the content decides, never the name), the rest is sniffed as the spoke
//! sniffs uploads. The PDF parser itself is not run here: it is a
//! third-party crate the spoke runs only in a child process under memory,
//! CPU and wall-clock limits, and a first run of this target with it found
//! a panic and a hang in it within a minute (both are regression tests in
//! `tests/intake.rs`, refused as unreadable by the limited child).
#![no_main]
use appliance::documents::{sniff, MediaType};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let name = ["report.pdf", "notes.txt", "scan.PDF", "data.bin", "noext"][pick as usize % 5];
    match sniff(name, bytes) {
        Ok(MediaType::Pdf) => {
            assert!(bytes.starts_with(b"%PDF-"), "sniffed as PDF without the header");
        }
        Ok(MediaType::Text) => {
            let text = std::str::from_utf8(bytes).expect("sniffed as text but not UTF-8");
            assert!(!text.contains('\0'), "sniffed as text with a NUL byte");
        }
        Err(_) => {}
    }
});
