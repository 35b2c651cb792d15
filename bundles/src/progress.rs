//! Progress of long operations: the [`Progress`] trait the library reports to,
//! and a terminal bar for the binaries (drawn only when stderr is a TTY).

/// Receives progress of long operations.
pub trait Progress: Sync {
    /// Sets the total amount of work.
    fn set_len(&self, len: u64);
    /// Records `n` more units done.
    fn inc(&self, n: u64);
}

/// No progress reporting.
impl Progress for () {
    fn set_len(&self, _: u64) {}
    fn inc(&self, _: u64) {}
}

/// A progress bar on stderr when it is a terminal, nothing otherwise.
pub struct TtyBar(Option<indicatif::ProgressBar>);

impl TtyBar {
    /// A bar labelled `what`, counting bytes or items.
    pub fn new(what: &'static str, bytes: bool) -> Self {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return TtyBar(None);
        }
        let style = if bytes {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {known_eta}"
        } else {
            "{msg} [{bar:30}] {pos}/{len}"
        };
        let bar = indicatif::ProgressBar::new(0).with_message(what);
        if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
            bar.set_style(s.progress_chars("=> ").with_key("known_eta", known_eta));
        }
        TtyBar(Some(bar))
    }
}

/// How long a bar runs before its rate, and so its ETA, means anything.
const RATE_KNOWN_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

/// The ETA once the rate is known (a few seconds of work done), `…` before:
/// the first chunks (reading metadata, small files) say nothing of the rest.
fn known_eta(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = if state.pos() == 0 || state.elapsed() < RATE_KNOWN_AFTER {
        w.write_str("…")
    } else {
        write!(w, "{:#}", indicatif::HumanDuration(state.eta()))
    };
}

impl Progress for TtyBar {
    /// Starts a new stretch of work of `len` units (the position restarts at 0).
    fn set_len(&self, len: u64) {
        if let Some(b) = &self.0 {
            b.set_length(len);
            b.set_position(0);
        }
    }
    fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n)
        }
    }
}

impl Drop for TtyBar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear()
        }
    }
}
