//! `spoke`: parses arguments and runs the spoke library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // On the appliance image the kernel starts this binary as /init.
    if std::process::id() == 1 {
        spoke::boot::pid1();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPOKE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = spoke::Cli::parse();
    let json = cli.json;
    // A closed pipe (`spoke ... | head -1`) ends the process quietly, as for
    // every Unix tool, instead of a panic in `println!`. Servers keep Rust's
    // default (SIGPIPE ignored): a client that disconnects must not kill them.
    if !matches!(cli.command, spoke::cli::Command::Serve { .. }) {
        // SAFETY: single-threaded here; restoring a default signal disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match spoke::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!(
                    "{}",
                    serde_json::json!({ "error": { "kind": e.kind(), "message": e.to_string() } })
                );
            } else {
                eprintln!("spoke: error: {e}");
            }
            std::process::ExitCode::from(1)
        }
    }
}
