//! `hub`: parses arguments and runs the hub library.

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUB_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli: hub::Cli = cli_conventions::parse();
    let json = cli.json;
    if !matches!(cli.command, hub::cli::Command::Serve { .. }) {
        cli_conventions::quiet_on_closed_pipe();
    }
    match hub::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => cli_conventions::fail("hub", json, e.kind(), &e.to_string()),
    }
}
