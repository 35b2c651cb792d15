//! How the `hub` and `spoke` command lines behave as Unix tools, in one
//! place so both behave alike: a closed pipe ends the program quietly,
//! every error (argument errors included) is one JSON object on standard
//! error under `--json`, and shell completions and man pages come from the
//! same clap definitions as the programs. It knows nothing of what either
//! program does.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub use clap_complete::Shell;

/// Parses the command line. An argument error is printed as
/// `{"error":{"kind":"usage",...}}` when `--json` is among the arguments
/// (clap's own text otherwise), and the program exits with status 2;
/// `--help` and `--version` print as usual.
pub fn parse<P: Parser>() -> P {
    match P::try_parse() {
        Ok(p) => p,
        Err(e) => {
            let wants_json = std::env::args_os().skip(1).any(|a| a == "--json");
            let is_error = !matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if wants_json && is_error {
                let message = e.render().to_string();
                eprintln!("{}", error_json("usage", message.trim()));
                std::process::exit(2);
            }
            e.exit()
        }
    }
}

/// Restores the default SIGPIPE disposition, so `prog … | head -1` ends
/// quietly as every Unix tool does instead of panicking in `println!`.
/// Servers must not call it: a client that disconnects must not kill them.
pub fn quiet_on_closed_pipe() {
    // SAFETY: called at start-up before any thread is spawned; it only
    // restores a default signal disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Reports a failed command on standard error (JSON under `--json`, else
/// `program: error: message`) and gives the exit status 1.
pub fn fail(program: &str, json: bool, kind: &str, message: &str) -> ExitCode {
    if json {
        eprintln!("{}", error_json(kind, message));
    } else {
        eprintln!("{program}: error: {message}");
    }
    ExitCode::from(1)
}

fn error_json(kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "kind": kind, "message": message } })
}

/// The commands both programs have for their own conventions; each
/// program's command enum flattens them in (`#[command(flatten)]`).
#[derive(Debug, clap::Subcommand)]
pub enum Tooling {
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(display_order = 1000)]
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Write the man pages, one per command, into a directory.
    #[command(display_order = 1001)]
    Man {
        /// Directory to write `PROGRAM.1`, `PROGRAM-COMMAND.1`, … into.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Runs a [`Tooling`] command of `P`: completions go to standard output
/// (None), man pages into their directory (the files written).
pub fn run_tooling<P: CommandFactory>(
    tooling: Tooling,
) -> std::io::Result<Option<Vec<std::path::PathBuf>>> {
    match tooling {
        Tooling::Completions { shell } => {
            completions::<P>(shell, &mut std::io::stdout());
            Ok(None)
        }
        Tooling::Man { out } => man_pages::<P>(&out).map(Some),
    }
}

/// Writes the completion script of `P` for `shell` to `out`.
pub fn completions<P: CommandFactory>(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = P::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes one man page per command and subcommand of `P` into `dir`
/// (`hub.1`, `hub-pack-build.1`, …); returns the files written.
pub fn man_pages<P: CommandFactory>(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut stack = vec![(P::command(), String::new())];
    while let Some((cmd, prefix)) = stack.pop() {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            stack.push((sub.clone(), name.clone()));
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .title(name.clone())
            .render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page)?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny program.
    #[derive(Parser)]
    #[command(name = "demo")]
    struct Demo {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        /// Does one thing.
        One {
            /// Where.
            #[arg(long)]
            at: String,
        },
        #[command(hide = true)]
        Internal,
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand_and_completions_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let pages = man_pages::<Demo>(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["demo-one.1", "demo.1"]);
        let one = std::fs::read_to_string(dir.path().join("demo-one.1")).unwrap();
        assert!(
            one.contains("Does one thing") && one.contains("\\-\\-at"),
            "{one}"
        );
        let mut script = Vec::new();
        completions::<Demo>(clap_complete::Shell::Bash, &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(
            script.contains("one") && script.contains("--at"),
            "{script}"
        );
        assert!(script.contains("complete -F _demo"), "{script}");
    }
}
