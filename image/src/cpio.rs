//! A minimal writer for the `newc` cpio format the kernel unpacks as its
//! initramfs. Entries are written in the order given, with fixed owners and
//! times, so the same entries give the same bytes.

/// One archive member.
pub(crate) enum Entry {
    Dir,
    File {
        data: Vec<u8>,
        exec: bool,
    },
    /// A character device node (major, minor), e.g. /dev/console.
    CharDev(u32, u32),
}

/// Writes `entries` (path without a leading slash → entry) as a newc archive.
pub(crate) fn write(entries: &[(String, Entry)], mtime: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (name, entry)) in entries.iter().enumerate() {
        let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match entry {
            Entry::Dir => (0o040755, &[], (0, 0)),
            Entry::File { data, exec } => (
                if *exec { 0o100755 } else { 0o100644 },
                data.as_slice(),
                (0, 0),
            ),
            Entry::CharDev(major, minor) => (0o020600, &[], (*major, *minor)),
        };
        header(
            &mut out,
            ino as u32 + 1,
            mode,
            mtime,
            data.len(),
            rdev,
            name,
        );
        out.extend_from_slice(data);
        pad(&mut out);
    }
    header(&mut out, 0, 0, 0, 0, (0, 0), "TRAILER!!!");
    out
}

fn header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    mtime: u64,
    size: usize,
    rdev: (u32, u32),
    name: &str,
) {
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        mtime as u32,
        size as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_members_are_aligned_and_terminated() {
        let a = write(
            &[
                ("dev".into(), Entry::Dir),
                (
                    "init".into(),
                    Entry::File {
                        data: b"abc".to_vec(),
                        exec: true,
                    },
                ),
            ],
            7,
        );
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("TRAILER!!!"));
        // mode of the file member: 0o100755 = 0x81ed
        assert!(text.contains("000081ed"));
        assert_eq!(
            a,
            write(
                &[
                    ("dev".into(), Entry::Dir),
                    (
                        "init".into(),
                        Entry::File {
                            data: b"abc".to_vec(),
                            exec: true
                        }
                    ),
                ],
                7,
            )
        );
    }
}
