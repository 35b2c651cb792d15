//! `hub`: parses arguments and runs the hub library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUB_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = hub::Cli::parse();
    let json = cli.json;
    // A closed pipe (`hub ... | head -1`) ends the process quietly, as for
    // every Unix tool, instead of a panic in `println!`. Servers keep Rust's
    // default (SIGPIPE ignored): a client that disconnects must not kill them.
    if !matches!(cli.command, hub::cli::Command::Serve { .. }) {
        // SAFETY: single-threaded here; restoring a default signal disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match hub::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!(
                    "{}",
                    serde_json::json!({ "error": { "kind": e.kind(), "message": e.to_string() } })
                );
            } else {
                eprintln!("hub: error: {e}");
            }
            std::process::ExitCode::from(1)
        }
    }
}
