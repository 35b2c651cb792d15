//! The spoke's OS update policy (seed 000 §7): a channel (`stable`, `canary`
//! or `pinned` to one version) and an optional weekly maintenance window in
//! a time zone. An OS bundle marked `critical` by the hub is applied outside
//! the window; nothing is applied against the channel or the pin.
//! Stored as `os-policy.json` in the data directory.

use crate::Error;
use appliance::DataDir;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which OS releases a spoke takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Releases the hub marked stable.
    #[default]
    Stable,
    /// Stable and canary releases.
    Canary,
    /// Only `pinned_version`.
    Pinned,
}

/// A weekly window: `day` at `start` local time for `hours` hours, in `timezone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// `monday` … `sunday`.
    pub day: String,
    /// `HH:MM`, local time.
    pub start: String,
    /// Length in hours (1–24).
    pub hours: u8,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Policy {
    /// Which releases to take.
    pub channel: Channel,
    /// The one version a pinned spoke takes.
    pub pinned_version: Option<semver::Version>,
    /// When normal updates may be applied (always, when absent).
    pub maintenance_window: Option<Window>,
}

fn path(data: &DataDir) -> PathBuf {
    data.root().join("os-policy.json")
}

fn weekday(day: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday::*;
    Some(match day.to_ascii_lowercase().as_str() {
        "monday" | "mon" => Monday,
        "tuesday" | "tue" => Tuesday,
        "wednesday" | "wed" => Wednesday,
        "thursday" | "thu" => Thursday,
        "friday" | "fri" => Friday,
        "saturday" | "sat" => Saturday,
        "sunday" | "sun" => Sunday,
        _ => return None,
    })
}

impl Window {
    /// Parses "DAY HH:MM HOURS TIMEZONE".
    pub fn parse(s: &str) -> Result<Window, Error> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let [day, start, hours, timezone] = parts.as_slice() else {
            return Err(Error::Usage(format!(
                "window {s:?}: use \"DAY HH:MM HOURS TIMEZONE\", e.g. \"sunday 03:00 2 Europe/Berlin\""
            )));
        };
        let w = Window {
            day: day.to_ascii_lowercase(),
            start: start.to_string(),
            hours: hours
                .parse()
                .map_err(|_| Error::Usage(format!("window length {hours:?}: use 1 to 24 hours")))?,
            timezone: timezone.to_string(),
        };
        w.check()?;
        Ok(w)
    }

    /// Checks every field; the error says which and how to fix it.
    pub fn check(&self) -> Result<(), Error> {
        weekday(&self.day).ok_or_else(|| {
            Error::Usage(format!("window day {:?}: use monday … sunday", self.day))
        })?;
        self.start_time()?;
        if !(1..=24).contains(&self.hours) {
            return Err(Error::Usage(format!(
                "window length {} h: use 1 to 24",
                self.hours
            )));
        }
        jiff::tz::TimeZone::get(&self.timezone).map_err(|e| {
            Error::Usage(format!(
                "time zone {:?}: {e}; use an IANA name like Europe/Berlin",
                self.timezone
            ))
        })?;
        Ok(())
    }

    fn start_time(&self) -> Result<jiff::civil::Time, Error> {
        jiff::civil::Time::strptime("%H:%M", &self.start)
            .map_err(|_| Error::Usage(format!("window start {:?}: use HH:MM", self.start)))
    }

    /// Whether `now` falls inside a window (the one that began this week or last).
    pub fn contains(&self, now: jiff::Timestamp) -> Result<bool, Error> {
        self.check()?;
        let tz = jiff::tz::TimeZone::get(&self.timezone)
            .map_err(|e| Error::Usage(format!("time zone {:?}: {e}", self.timezone)))?;
        let day = weekday(&self.day).ok_or_else(|| Error::Usage("window day".into()))?;
        let local = now.to_zoned(tz.clone());
        let start_time = self.start_time()?;
        // The most recent start at or before now (up to 7 days back).
        for back in 0..8i64 {
            let date = local
                .date()
                .checked_sub(jiff::Span::new().days(back))
                .map_err(|e| Error::Usage(e.to_string()))?;
            if date.weekday() != day {
                continue;
            }
            let start = date
                .to_datetime(start_time)
                .to_zoned(tz.clone())
                .map_err(|e| Error::Usage(e.to_string()))?;
            if start.timestamp() > now {
                continue;
            }
            let end = start.timestamp() + jiff::SignedDuration::from_hours(self.hours as i64);
            return Ok(now < end);
        }
        Ok(false)
    }
}

impl Policy {
    /// The stored policy, or the default (stable, no window).
    pub fn load(data: &DataDir) -> Result<Policy, Error> {
        let p = path(data);
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Usage(format!(
                    "{}: {e}; set it again with `spoke os policy`",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
            Err(e) => Err(Error::Usage(format!("read {}: {e}", p.display()))),
        }
    }

    /// Checks and stores the policy (temp file, fsync, rename).
    pub fn save(&self, data: &DataDir) -> Result<(), Error> {
        if self.channel == Channel::Pinned && self.pinned_version.is_none() {
            return Err(Error::Usage("channel pinned needs --pin VERSION".into()));
        }
        if let Some(w) = &self.maintenance_window {
            w.check()?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Usage(e.to_string()))?;
        bundles::fsutil::atomic_write(&path(data), &bytes)?;
        Ok(())
    }

    /// Whether an OS bundle (its version and signed manifest) may be applied at `now`;
    /// `Err` carries the reason it may not.
    pub fn decide(
        &self,
        version: &str,
        manifest: &serde_json::Value,
        now: jiff::Timestamp,
    ) -> Result<Result<(), String>, Error> {
        let channel = manifest["channel"].as_str().unwrap_or("stable");
        match self.channel {
            Channel::Stable if channel != "stable" => {
                return Ok(Err(format!(
                    "{version} is a {channel} release; this spoke takes stable"
                )))
            }
            Channel::Pinned
                if self
                    .pinned_version
                    .as_ref()
                    .map(|v| v.to_string())
                    .as_deref()
                    != Some(version) =>
            {
                return Ok(Err(format!(
                    "this spoke is pinned to {:?}",
                    self.pinned_version.as_ref().map(|v| v.to_string())
                )))
            }
            _ => {}
        }
        let critical = manifest["urgency"].as_str() == Some("critical");
        if let (Some(w), false) = (&self.maintenance_window, critical) {
            if !w.contains(now)? {
                return Ok(Err(format!(
                    "outside the maintenance window ({} {} for {} h, {})",
                    w.day, w.start, w.hours, w.timezone
                )));
            }
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            day: "sunday".into(),
            start: "03:00".into(),
            hours: 2,
            timezone: "Europe/Berlin".into(),
        }
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_window_is_local_time() {
        let w = window();
        // Sunday 2026-11-29 03:30 in Berlin is 02:30 UTC (CET, UTC+1).
        assert!(w.contains(at("2026-11-29T02:30:00Z")).unwrap());
        assert!(!w.contains(at("2026-11-29T01:59:00Z")).unwrap());
        assert!(!w.contains(at("2026-11-29T04:00:00Z")).unwrap());
        // Summer time: 03:30 CEST is 01:30 UTC.
        assert!(w.contains(at("2026-07-05T01:30:00Z")).unwrap());
        assert!(!w.contains(at("2026-11-30T02:30:00Z")).unwrap());
    }

    #[test]
    fn channel_pin_window_and_critical() {
        let stable = serde_json::json!({"channel": "stable", "urgency": "normal"});
        let canary = serde_json::json!({"channel": "canary", "urgency": "normal"});
        let critical = serde_json::json!({"channel": "stable", "urgency": "critical"});
        let outside = at("2026-11-30T12:00:00Z");
        let mut p = Policy::default();
        assert!(p.decide("2.0.0", &stable, outside).unwrap().is_ok());
        assert!(p.decide("2.0.0", &canary, outside).unwrap().is_err());
        p.channel = Channel::Canary;
        assert!(p.decide("2.0.0", &canary, outside).unwrap().is_ok());
        p.channel = Channel::Pinned;
        p.pinned_version = Some("2.0.0".parse().unwrap());
        assert!(p.decide("2.0.0", &stable, outside).unwrap().is_ok());
        assert!(p.decide("2.1.0", &stable, outside).unwrap().is_err());
        p = Policy {
            maintenance_window: Some(window()),
            ..Policy::default()
        };
        assert!(p.decide("2.0.0", &stable, outside).unwrap().is_err());
        assert!(p.decide("2.0.0", &critical, outside).unwrap().is_ok());
        assert!(p
            .decide("2.0.0", &stable, at("2026-11-29T02:30:00Z"))
            .unwrap()
            .is_ok());
    }

    #[test]
    fn bad_windows_are_refused_with_the_fix() {
        let mut w = window();
        w.timezone = "Mars/Olympus".into();
        assert!(w.check().unwrap_err().to_string().contains("IANA"));
        let mut w = window();
        w.day = "someday".into();
        assert!(w.check().unwrap_err().to_string().contains("monday"));
    }
}
