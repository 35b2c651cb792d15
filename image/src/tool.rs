//! Running the external tools the builder relies on, with clear errors.

use crate::{Error, Result};
use std::process::Command;

/// Runs `cmd`, returning its standard output; a non-zero exit is an error
/// naming the tool, its status and its standard error.
pub(crate) fn run(mut cmd: Command) -> Result<Vec<u8>> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: tool.clone(),
        detail: format!("cannot start it: {e}"),
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// A command with the environment that makes the file-system tools
/// reproducible: fixed clocks for mtools (`SOURCE_DATE_EPOCH`) and e2fsprogs
/// (`E2FSPROGS_FAKE_TIME`), and the C locale.
pub(crate) fn reproducible(program: &str, epoch: u64) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .env("LC_ALL", "C")
        .env("TZ", "UTC");
    cmd
}
