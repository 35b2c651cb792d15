//! Where the boot inputs come from: Debian's generic kernel with its modules,
//! systemd's UKI stub and systemd-boot. `ci/fetch-image-inputs.sh` fills a
//! cache directory with stable names; each path can also be given on its own.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The default cache directory (relative to the working directory).
pub const DEFAULT_CACHE: &str = ".cache/image-inputs";

/// The files an image is made from, besides the init program and the seed.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// The kernel's module tree (`lib/modules/VERSION`, with `modules.dep`).
    pub modules: PathBuf,
    /// systemd's `linuxx64.efi.stub`.
    pub stub: PathBuf,
    /// `systemd-bootx64.efi`.
    pub systemd_boot: PathBuf,
}

impl Inputs {
    /// The names `ci/fetch-image-inputs.sh` gives them inside `cache`.
    pub fn in_cache(cache: &Path) -> Inputs {
        Inputs {
            kernel: cache.join("vmlinuz"),
            modules: cache.join("modules"),
            stub: cache.join("linuxx64.efi.stub"),
            systemd_boot: cache.join("systemd-bootx64.efi"),
        }
    }

    /// Checks that every input exists, naming the first that does not.
    pub fn check(&self) -> Result<()> {
        for (what, path) in [
            ("kernel", &self.kernel),
            (
                "kernel modules (modules.dep)",
                &self.modules.join("modules.dep"),
            ),
            ("UKI stub", &self.stub),
            ("systemd-boot", &self.systemd_boot),
        ] {
            if !path.exists() {
                return Err(Error::MissingInput {
                    what,
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }

    /// The kernel release, the name of the module directory (e.g. `6.1.0-57-amd64`).
    pub fn kernel_release(&self) -> Result<String> {
        let real = std::fs::canonicalize(&self.modules)
            .map_err(Error::io("resolve module directory", &self.modules))?;
        real.file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::invalid(
                    self.modules.display().to_string(),
                    "the module directory must be named after the kernel release",
                )
            })
    }
}
