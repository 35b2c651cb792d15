//! The spoke's own TLS certificate: self-signed, generated at `spoke init`
//! (or at the first `spoke serve`), for the names the appliance answers to.
//! The key is written 0600 and never leaves the data directory.

use crate::Error;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Certificate and key paths in `dir`, creating them if absent.
pub fn ensure(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), Error> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Tls(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| fail(&dir.display().to_string(), &e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(&dir.display().to_string(), &e))?;
    let mut all = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    all.extend(names.iter().cloned());
    let generated =
        rcgen::generate_simple_self_signed(all).map_err(|e| fail("generate certificate", &e))?;
    write(&key, generated.key_pair.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| fail(&key.display().to_string(), &e))?;
    write(&cert, generated.cert.pem().as_bytes(), 0o644)
        .map_err(|e| fail(&cert.display().to_string(), &e))?;
    Ok((cert, key))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
