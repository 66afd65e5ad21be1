//! Time for the console: "now" that works in the browser too (the wasm target has no system
//! clock), and the few ways times and durations are written on its pages.

use chrono::{DateTime, Utc};

/// The current time (the browser's clock in the browser).
pub fn now() -> DateTime<Utc> {
    #[cfg(feature = "hydrate")]
    {
        DateTime::from_timestamp_millis(js_sys::Date::now() as i64).unwrap_or_default()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        Utc::now()
    }
}

/// A moment as pages show it: `2026-05-01 10:00:05` (UTC, which the page says once).
pub fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A short moment for tables: the time alone when it is today, else the date too.
pub fn short(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t.date_naive() == now.date_naive() {
        t.format("%H:%M:%S").to_string()
    } else {
        t.format("%m-%d %H:%M").to_string()
    }
}

/// A duration as people read it: `850 ms`, `4.2 s`, `3 m 20 s`, `2 h 5 m`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "—".into();
    }
    if secs < 1.0 {
        return format!("{:.0} ms", secs * 1e3);
    }
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let s = secs.round() as u64;
    if s < 3600 {
        return format!("{} m {} s", s / 60, s % 60);
    }
    format!("{} h {} m", s / 3600, (s % 3600) / 60)
}

/// Seconds from `a` to `b`.
pub fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.85), "850 ms");
        assert_eq!(duration(4.24), "4.2 s");
        assert_eq!(duration(200.0), "3 m 20 s");
        assert_eq!(duration(7500.0), "2 h 5 m");
        assert_eq!(duration(-1.0), "—");
    }
}
