//! Wall-clock budgets: `--until 06:30` (a deadline at the next such local time) and
//! `--window 22:00-06:30` (trials start only inside it; outside, the daemon pauses between
//! trials). Local time comes from `jiff`'s system time zone: `TZ` when set (a zone name, a
//! TZif path or a POSIX rule), else `/etc/localtime`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A local time of day, minute precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    /// Minutes after local midnight, 0..1440.
    pub minutes: u32,
}

impl FromStr for TimeOfDay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a time of day (HH:MM, 00:00 to 23:59)");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 || s.trim().len() > 5 {
            return Err(bad());
        }
        Ok(TimeOfDay { minutes: h * 60 + m })
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

/// A daily window `start-end`; it may wrap midnight (22:00-06:30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

impl FromStr for Window {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) =
            s.split_once('-').ok_or_else(|| format!("'{s}' is not a window (HH:MM-HH:MM, e.g. 22:00-06:30)"))?;
        let (start, end) = (a.parse()?, b.parse()?);
        if start == end {
            return Err(format!("window '{s}' is empty (start equals end)"));
        }
        Ok(Window { start, end })
    }
}

impl Window {
    /// Whether `t` (minutes after local midnight) lies in the window.
    pub fn contains(&self, t: u32) -> bool {
        let (a, b) = (self.start.minutes, self.end.minutes);
        if a < b { (a..b).contains(&t) } else { t >= a || t < b }
    }

    /// How long from `t` until the window next opens (zero when inside).
    pub fn until_open(&self, t: u32) -> Duration {
        if self.contains(t) {
            return Duration::ZERO;
        }
        let wait = (self.start.minutes + 1440 - t) % 1440;
        Duration::from_secs(u64::from(wait) * 60)
    }
}

/// Local minutes after midnight and seconds into the minute, for `at`.
pub fn local_minutes(at: SystemTime) -> (u32, u32) {
    minutes_in(at, &TimeZone::system())
}

/// Minutes after midnight and seconds into the minute of `at` in `tz`; a time outside jiff's
/// range (years -9999..=9999) reads as the epoch.
fn minutes_in(at: SystemTime, tz: &TimeZone) -> (u32, u32) {
    let t = Timestamp::try_from(at).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned_datetime(tz.clone());
    let (h, m, s) = (u32::from(t.hour().unsigned_abs()), u32::from(t.minute().unsigned_abs()), t.second());
    (h * 60 + m, u32::from(s.unsigned_abs()))
}

/// The next moment (after `now`) the local clock shows `until`.
pub fn next_occurrence(until: TimeOfDay, now: SystemTime) -> SystemTime {
    let (minutes, secs) = local_minutes(now);
    let mut wait_min = (until.minutes + 1440 - minutes) % 1440;
    if wait_min == 0 {
        wait_min = 1440;
    }
    now + Duration::from_secs(u64::from(wait_min) * 60) - Duration::from_secs(u64::from(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_and_rejects_bad_ones() {
        assert_eq!("06:30".parse::<TimeOfDay>().unwrap().minutes, 390);
        assert_eq!("00:00".parse::<TimeOfDay>().unwrap().minutes, 0);
        for bad in ["25:00", "12:60", "7", "ab:cd", "-1:00", "12:001"] {
            let e = bad.parse::<TimeOfDay>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn windows_wrap_midnight() {
        let w: Window = "22:00-06:30".parse().unwrap();
        assert!(w.contains(23 * 60));
        assert!(w.contains(60));
        assert!(!w.contains(12 * 60));
        assert_eq!(w.until_open(21 * 60), Duration::from_secs(3600));
        assert_eq!(w.until_open(23 * 60), Duration::ZERO);
        let day: Window = "09:00-17:00".parse().unwrap();
        assert!(day.contains(9 * 60) && !day.contains(17 * 60));
        assert_eq!(day.until_open(18 * 60), Duration::from_secs(15 * 3600));
        assert!("10:00-10:00".parse::<Window>().is_err());
        assert!("10:00".parse::<Window>().is_err());
    }

    #[test]
    fn next_occurrence_is_within_a_day() {
        let now = SystemTime::now();
        let t = next_occurrence("06:30".parse().unwrap(), now);
        let d = t.duration_since(now).unwrap();
        assert!(d <= Duration::from_secs(86400) && d > Duration::ZERO);
        assert_eq!(local_minutes(t).0, 390);
    }

    #[test]
    fn minutes_follow_the_time_zone() {
        // 2026-01-15 12:34:56 UTC
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_768_480_496);
        assert_eq!(minutes_in(at, &TimeZone::UTC), (12 * 60 + 34, 56));
        // A POSIX TZ rule, as `TZ=IST-5:30` would give: 18:04 in India.
        assert_eq!(minutes_in(at, &TimeZone::posix("IST-5:30").unwrap()), (18 * 60 + 4, 56));
        // A zone name from the system tz database, with summer time (July: UTC-4).
        let july = at + Duration::from_secs(181 * 86400);
        assert_eq!(minutes_in(july, &TimeZone::get("America/New_York").unwrap()).0, 8 * 60 + 34);
    }
}
