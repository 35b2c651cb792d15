//! `spoke`: parses arguments and runs the spoke library.

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
    let cli: spoke::Cli = cli_conventions::parse();
    let json = cli.json;
    if !matches!(cli.command, spoke::cli::Command::Serve { .. }) {
        cli_conventions::quiet_on_closed_pipe();
    }
    match spoke::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => cli_conventions::fail("spoke", json, e.kind(), &e.to_string()),
    }
}
