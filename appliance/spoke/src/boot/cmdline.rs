//! The kernel command line as `key=value` pairs (`spoke.*` keys configure PID 1).

use std::collections::BTreeMap;

/// Parsed `/proc/cmdline`.
pub(crate) struct Cmdline(BTreeMap<String, String>);

impl Cmdline {
    pub(crate) fn read() -> Result<Cmdline, String> {
        let text = std::fs::read_to_string("/proc/cmdline")
            .map_err(|e| format!("read /proc/cmdline: {e}"))?;
        Ok(Cmdline::parse(&text))
    }

    pub(crate) fn parse(text: &str) -> Cmdline {
        Cmdline(
            text.split_whitespace()
                .map(|w| match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (w.to_string(), String::new()),
                })
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_and_flags() {
        let c = super::Cmdline::parse("console=ttyS0 quiet spoke.ip=10.0.2.15/24\n");
        assert_eq!(c.get("spoke.ip"), Some("10.0.2.15/24"));
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.get("spoke.gw"), None);
    }
}
