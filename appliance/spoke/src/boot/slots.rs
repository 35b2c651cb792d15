//! The two OS slots on the ESP and systemd-boot's boot counting. Slot X is
//! `EFI/Linux/eurocomply-x.efi`, optionally with a counter:
//! `eurocomply-x+LEFT[-DONE].efi`. systemd-boot lowers LEFT on each boot of an
//! unblessed entry and, when it reaches 0, sorts the entry last, so the other
//! slot boots; dropping the counter from the name blesses the entry.

use std::path::{Path, PathBuf};

/// The directory on the ESP that holds the slots.
pub const SLOT_DIR: &str = "EFI/Linux";
const PREFIX: &str = "eurocomply-";
/// systemd-boot's vendor GUID for its EFI variables.
const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// One slot's file and boot counter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Slot {
    /// `a` or `b`.
    pub slot: char,
    /// The file name on the ESP.
    pub file: String,
    /// Tries left before systemd-boot gives up on it (`None`: blessed).
    pub tries_left: Option<u32>,
    /// Tries already used.
    pub tries_done: Option<u32>,
}

impl Slot {
    /// The blessed name (no counter).
    pub fn blessed_name(&self) -> String {
        format!("{PREFIX}{}.efi", self.slot)
    }
}

/// Parses a slot file name; `None` for anything else.
pub fn parse_name(file: &str) -> Option<Slot> {
    let stem = file.strip_prefix(PREFIX)?.strip_suffix(".efi")?;
    let mut chars = stem.chars();
    let slot = chars.next().filter(|c| *c == 'a' || *c == 'b')?;
    let rest = chars.as_str();
    let (left, done) = if rest.is_empty() {
        (None, None)
    } else {
        let counter = rest.strip_prefix('+')?;
        let (l, d) = match counter.split_once('-') {
            Some((l, d)) => (l, Some(d.parse().ok()?)),
            None => (counter, None),
        };
        (Some(l.parse().ok()?), d)
    };
    Some(Slot {
        slot,
        file: file.to_string(),
        tries_left: left,
        tries_done: done,
    })
}

/// The slots present in `esp`'s slot directory, by slot letter.
pub fn list(esp: &Path) -> Result<Vec<Slot>, String> {
    let dir = esp.join(SLOT_DIR);
    let mut out: Vec<Slot> = std::fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| parse_name(&e.file_name().to_string_lossy()))
        .collect();
    out.sort_by_key(|s| s.slot);
    Ok(out)
}

/// The entry systemd-boot says it booted (`LoaderEntrySelected`), if known.
pub fn booted_entry() -> Option<String> {
    let path = format!("/sys/firmware/efi/efivars/LoaderEntrySelected-{LOADER_GUID}");
    let raw = std::fs::read(path).ok()?;
    // 4 bytes of attributes, then UTF-16LE ending in NUL.
    let units: Vec<u16> = raw
        .get(4..)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

/// The slot letter of an entry id such as `eurocomply-b+2-1.efi` or `eurocomply-b.efi`.
pub fn slot_of_entry(entry: &str) -> Option<char> {
    entry
        .strip_prefix(PREFIX)?
        .chars()
        .next()
        .filter(|c| *c == 'a' || *c == 'b')
}

/// Renames the slot's file to its blessed name (fsyncing the directory);
/// returns the new name, or `None` when it was already blessed.
pub fn bless(esp: &Path, slot: char) -> Result<Option<String>, String> {
    let s = list(esp)?
        .into_iter()
        .find(|s| s.slot == slot)
        .ok_or_else(|| format!("slot {slot} has no image on the ESP"))?;
    if s.tries_left.is_none() {
        return Ok(None);
    }
    let dir = esp.join(SLOT_DIR);
    let to = s.blessed_name();
    std::fs::rename(dir.join(&s.file), dir.join(&to))
        .map_err(|e| format!("rename {} to {to}: {e}", s.file))?;
    sync_dir(&dir)?;
    Ok(Some(to))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("sync {}: {e}", dir.display()))
}

/// On the appliance: mounts the ESP at `at` (it stays mounted for OS
/// updates) and blesses the slot systemd-boot booted.
pub(crate) fn bless_booted(at: &Path) -> Result<Option<String>, String> {
    let entry = booted_entry()
        .ok_or("systemd-boot did not report the booted entry (LoaderEntrySelected)")?;
    let slot =
        slot_of_entry(&entry).ok_or_else(|| format!("booted entry {entry:?} is not an OS slot"))?;
    super::disks::mount_esp(at)?;
    bless(at, slot)
}

/// The path of a slot's blessed file (for writing a new image next to it).
pub fn slot_path(esp: &Path, slot: char) -> PathBuf {
    esp.join(SLOT_DIR).join(format!("{PREFIX}{slot}.efi"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_counters() {
        assert_eq!(parse_name("eurocomply-a.efi").unwrap().tries_left, None);
        let b = parse_name("eurocomply-b+2-1.efi").unwrap();
        assert_eq!(
            (b.slot, b.tries_left, b.tries_done),
            ('b', Some(2), Some(1))
        );
        assert_eq!(
            parse_name("eurocomply-b+3.efi").unwrap().tries_left,
            Some(3)
        );
        assert!(parse_name("eurocomply-c.efi").is_none());
        assert!(parse_name("eurocomply-a+x.efi").is_none());
        assert_eq!(slot_of_entry("eurocomply-b+2-1.efi"), Some('b'));
    }

    #[test]
    fn blessing_drops_the_counter() {
        let esp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(esp.path().join(SLOT_DIR)).unwrap();
        std::fs::write(esp.path().join(SLOT_DIR).join("eurocomply-a.efi"), b"a").unwrap();
        std::fs::write(esp.path().join(SLOT_DIR).join("eurocomply-b+1-2.efi"), b"b").unwrap();
        assert_eq!(
            bless(esp.path(), 'b').unwrap().as_deref(),
            Some("eurocomply-b.efi")
        );
        assert_eq!(bless(esp.path(), 'a').unwrap(), None);
        let names: Vec<String> = list(esp.path())
            .unwrap()
            .into_iter()
            .map(|s| s.file)
            .collect();
        assert_eq!(names, ["eurocomply-a.efi", "eurocomply-b.efi"]);
    }
}
