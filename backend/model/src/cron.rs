//! Cron expressions in the two dialects people bring, evaluated in an IANA time zone.
//!
//! - **Unix**: 5 fields (`min hour dom mon dow`, dow 0–7 with 0 and 7 = Sunday), or 6 with a
//!   leading seconds field; `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly` aliases; `L`, `W`
//!   and `#` extensions. Day-of-month and day-of-week are OR-ed when both are restricted (Vixie).
//! - **Quartz** (DolphinScheduler, XXL-JOB): 6 or 7 fields (`sec min hour dom mon dow [year]`),
//!   dow 1–7 with 1 = Sunday, exactly one of dom/dow is `?`, `0/15` steps.
//!
//! Daylight saving time, for a schedule in a zone that has it, as Debian's cron does it:
//! - a schedule is *fixed-time* when neither its minute nor its hour field starts with `*` (nor,
//!   with seconds, its seconds field), in the Quartz dialect and with seconds also when none of
//!   them steps (`/`): `30 2 * * *`, `30 2,14 * * *`, `0,30 2 * * *`, `0 1-3 * * *`, `@daily`;
//! - a fixed local time that does not exist (the spring-forward gap) fires once, at the gap's
//!   end (the first whole minute after it), on the same day (two such times in one gap fire once);
//! - a fixed local time that happens twice (fall back) fires once, at its first occurrence;
//! - other schedules (`*/5 * * * *`, `0 * * * *`, `0 */3 * * *`) keep firing in real time: no
//!   fires inside a gap, and every matching wall-clock time of a repeated hour fires.
//!
//! Parsing and evaluation are done by the `croner` crate; this module chooses its settings per
//! dialect, enforces the dialect's own rules, and words the errors. A fixed-time schedule's local
//! times are found by croner on the wall clock, and placed in the zone here: croner's own rule
//! takes a schedule as fixed only when each of those fields has one value, so `30 2,14 * * *`
//! would skip its gap and fire twice in a repeated hour.

/// The phrases a cron description is made of, for [`CronExpr::describe_in`].
pub use croner::describe::Language as CronWords;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

/// Which cron language an expression is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// `min hour dom mon dow`, optionally with leading seconds.
    #[default]
    Unix,
    /// `sec min hour dom mon dow [year]`, as in Quartz, DolphinScheduler and XXL-JOB.
    Quartz,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Unix => "unix",
            Dialect::Quartz => "quartz",
        })
    }
}

/// Why an expression or a zone was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CronError {
    #[error("cron expression {expr:?} has {found} fields; the {dialect} dialect takes {expected}")]
    FieldCount { expr: String, dialect: Dialect, found: usize, expected: &'static str },
    #[error("cron expression {expr:?} is not valid: {reason}")]
    Invalid { expr: String, reason: String },
    #[error(
        "Quartz expression {expr:?} must have `?` in exactly one of day-of-month and day-of-week (for example `0 0 2 ? * MON` or `0 0 2 1 * ?`)"
    )]
    QuartzQuestionMark { expr: String },
    #[error("unknown time zone {0:?}: use an IANA name such as \"UTC\", \"Europe/Berlin\" or \"Asia/Shanghai\"")]
    UnknownZone(String),
    #[error("cron expression {expr:?} never fires after {after}")]
    NeverFires { expr: String, after: String },
}

/// A parsed, valid cron expression of a known dialect.
#[derive(Clone, Debug)]
pub struct CronExpr {
    source: String,
    dialect: Dialect,
    cron: croner::Cron,
    /// Fixed-time (see the module's DST rules): evaluated on the wall clock, then placed.
    fixed: bool,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.dialect == other.dialect
    }
}

impl CronExpr {
    pub fn parse(expr: &str, dialect: Dialect) -> Result<CronExpr, CronError> {
        let source = expr.trim().to_owned();
        let invalid = |reason: String| CronError::Invalid { expr: source.clone(), reason };
        let fields: Vec<String> = source.split_whitespace().map(str::to_owned).collect();
        let is_alias = source.starts_with('@');
        let parser = match dialect {
            Dialect::Unix => {
                if !is_alias && !(5..=6).contains(&fields.len()) {
                    return Err(CronError::FieldCount {
                        expr: source.clone(),
                        dialect,
                        found: fields.len(),
                        expected: "5 (min hour dom mon dow) or 6 (sec min hour dom mon dow)",
                    });
                }
                CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build()
            }
            Dialect::Quartz => {
                if is_alias {
                    return Err(invalid("aliases such as @daily belong to the unix dialect".into()));
                }
                if !(6..=7).contains(&fields.len()) {
                    return Err(CronError::FieldCount {
                        expr: source.clone(),
                        dialect,
                        found: fields.len(),
                        expected: "6 (sec min hour dom mon dow) or 7 (with year)",
                    });
                }
                if (fields[3] == "?") == (fields[5] == "?") {
                    return Err(CronError::QuartzQuestionMark { expr: source.clone() });
                }
                CronParser::builder()
                    .seconds(Seconds::Required)
                    .year(Year::Optional)
                    .alternative_weekdays(true)
                    .sloppy_ranges(true)
                    .build()
            }
        };
        let cron = parser.parse(&source).map_err(|e| invalid(describe(&e)))?;
        let fixed = match (dialect, fields.len()) {
            (_, _) if is_alias => {
                !matches!(source.to_ascii_lowercase().as_str(), "@hourly" | "@minutely" | "@secondly")
            }
            (Dialect::Unix, 5) => !fields[0].starts_with('*') && !fields[1].starts_with('*'),
            _ => fields[..3].iter().all(|f| !f.starts_with('*') && !f.contains('/')),
        };
        Ok(CronExpr { source, dialect, cron, fixed })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A human description ("At 02:00 on every day"), in English.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// [`Self::describe`] in another language (the console's Chinese, say).
    pub fn describe_in<L: CronWords>(&self, words: L) -> String {
        self.cron.describe_lang(words)
    }

    /// The first fire strictly after `after`, evaluated in `zone`.
    pub fn next_after(&self, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.fixed {
            return self
                .cron
                .find_next_occurrence(&after.with_timezone(&zone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc));
        }
        // The wall clock's next matching times (croner in UTC has no transitions), each placed in
        // the zone, until one falls after `after`: a time already fired at its first occurrence,
        // or a second time in the same gap, is passed over.
        let mut wall = after.with_timezone(&zone).naive_local();
        loop {
            wall = self.cron.find_next_occurrence(&wall.and_utc(), false).ok()?.naive_utc();
            let at = place(zone, wall)?;
            if at > after {
                return Some(at);
            }
        }
    }

    /// The next `n` fires strictly after `after`.
    pub fn next_fires(&self, zone: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        if !self.fixed {
            return self.cron.iter_after(after.with_timezone(&zone)).take(n).map(|t| t.with_timezone(&Utc)).collect();
        }
        std::iter::successors(self.next_after(zone, after), |t| self.next_after(zone, *t)).take(n).collect()
    }
}

/// The instant of a local wall-clock time in `zone`: its first occurrence when it happens twice,
/// the end of the gap when it does not happen (the first whole minute that exists after it).
fn place(zone: Tz, wall: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    use chrono::{LocalResult, TimeZone as _, Timelike as _};
    let earliest = |t: chrono::NaiveDateTime| match zone.from_local_datetime(&t) {
        LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => None,
    };
    if let Some(at) = earliest(wall) {
        return Some(at);
    }
    // Gaps are whole minutes, and under a day.
    let minute = wall.with_second(0)?.with_nanosecond(0)?;
    (1..=24 * 60).find_map(|m| earliest(minute + chrono::Duration::minutes(m)))
}

fn describe(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    match e {
        E::EmptyPattern => "it is empty".into(),
        E::InvalidPattern(s) | E::IllegalCharacters(s) | E::ComponentError(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses an IANA zone name.
pub fn parse_zone(name: &str) -> Result<Tz, CronError> {
    Tz::from_str(name.trim()).map_err(|_| CronError::UnknownZone(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, d: Dialect, zone: &str, after: &str, n: usize) -> Vec<String> {
        CronExpr::parse(expr, d)
            .unwrap()
            .next_fires(parse_zone(zone).unwrap(), utc(after), n)
            .into_iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn unix_five_and_six_fields_and_aliases() {
        assert_eq!(
            fires("30 2 * * *", Dialect::Unix, "UTC", "2026-01-01T00:00:00Z", 2),
            ["2026-01-01T02:30:00+00:00", "2026-01-02T02:30:00+00:00"]
        );
        assert_eq!(
            fires("15 30 2 * * *", Dialect::Unix, "UTC", "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T02:30:15+00:00"]
        );
        assert_eq!(fires("@hourly", Dialect::Unix, "UTC", "2026-01-01T00:10:00Z", 1), ["2026-01-01T01:00:00+00:00"]);
        // Sunday is 0 and 7.
        assert_eq!(fires("0 0 * * 7", Dialect::Unix, "UTC", "2026-01-01T00:00:00Z", 1), ["2026-01-04T00:00:00+00:00"]);
    }

    #[test]
    fn quartz_weekdays_count_from_sunday_and_need_one_question_mark() {
        // 6 = Friday in Quartz; 2026-01-02 is a Friday.
        assert_eq!(
            fires("0 0 12 ? * 6", Dialect::Quartz, "UTC", "2026-01-01T00:00:00Z", 1),
            ["2026-01-02T12:00:00+00:00"]
        );
        assert_eq!(
            fires("0 0/20 * * * ?", Dialect::Quartz, "UTC", "2026-01-01T00:05:00Z", 2),
            ["2026-01-01T00:20:00+00:00", "2026-01-01T00:40:00+00:00"]
        );
        assert_eq!(
            fires("0 0 0 L * ?", Dialect::Quartz, "UTC", "2026-02-01T00:00:00Z", 1),
            ["2026-02-28T00:00:00+00:00"]
        );
        // The second Monday (2 = Monday in Quartz).
        assert_eq!(
            fires("0 0 9 ? * 2#2", Dialect::Quartz, "UTC", "2026-03-01T00:00:00Z", 1),
            ["2026-03-09T09:00:00+00:00"]
        );
        assert_eq!(
            fires("0 0 0 1 1 ? 2030", Dialect::Quartz, "UTC", "2026-01-01T00:00:00Z", 1),
            ["2030-01-01T00:00:00+00:00"]
        );
        assert!(matches!(CronExpr::parse("0 0 12 * * 6", Dialect::Quartz), Err(CronError::QuartzQuestionMark { .. })));
        assert!(matches!(CronExpr::parse("0 12 * * *", Dialect::Quartz), Err(CronError::FieldCount { found: 5, .. })));
    }

    #[test]
    fn errors_name_the_expression_and_the_rule() {
        let e = CronExpr::parse("0 25 * * *", Dialect::Unix).unwrap_err().to_string();
        assert!(e.contains("0 25 * * *"), "{e}");
        let e = CronExpr::parse("* * *", Dialect::Unix).unwrap_err().to_string();
        assert!(e.contains("3 fields") && e.contains("5 (min hour dom mon dow)"), "{e}");
        let e = parse_zone("Mars/Olympus").unwrap_err().to_string();
        assert!(e.contains("IANA"), "{e}");
    }

    #[test]
    fn a_skipped_local_time_fires_once_after_the_gap() {
        // Europe/Berlin springs forward on 2026-03-29: 02:00 → 03:00 local.
        let got = fires("30 2 * * *", Dialect::Unix, "Europe/Berlin", "2026-03-28T12:00:00Z", 2);
        assert_eq!(
            got,
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"],
            "03:00 CEST is the first valid instant"
        );
    }

    #[test]
    fn an_ambiguous_local_time_fires_once() {
        // Europe/Berlin falls back on 2026-10-25: 03:00 CEST → 02:00 CET, so 02:30 happens twice.
        let got = fires("30 2 * * *", Dialect::Unix, "Europe/Berlin", "2026-10-24T12:00:00Z", 2);
        assert_eq!(got, ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]);
    }

    #[test]
    fn several_fixed_times_keep_the_fixed_time_rules() {
        // Two times in the spring-forward gap fire once, at its end.
        let got = fires("0,30 2 * * *", Dialect::Unix, "Europe/Berlin", "2026-03-28T12:00:00Z", 3);
        assert_eq!(got, ["2026-03-29T01:00:00+00:00", "2026-03-30T00:00:00+00:00", "2026-03-30T00:30:00+00:00"]);
        // A repeated 02:30 fires once, beside a time of the afternoon.
        let got = fires("30 2,14 * * *", Dialect::Unix, "Europe/Berlin", "2026-10-24T12:00:00Z", 3);
        assert_eq!(got, ["2026-10-24T12:30:00+00:00", "2026-10-25T00:30:00+00:00", "2026-10-25T13:30:00+00:00"]);
        // Asked from between the two 02:30s (it fired at the first): the next is the afternoon's.
        let got = fires("30 2,14 * * *", Dialect::Unix, "Europe/Berlin", "2026-10-25T01:00:00Z", 1);
        assert_eq!(got, ["2026-10-25T13:30:00+00:00"]);
        let got = fires("0 0 1-3 * * ?", Dialect::Quartz, "Europe/Berlin", "2026-10-24T22:00:00Z", 3);
        assert_eq!(got, ["2026-10-24T23:00:00+00:00", "2026-10-25T00:00:00+00:00", "2026-10-25T02:00:00+00:00"]);
        // `@hourly`, however written, is an interval: both 02:00s of the repeated hour.
        for hourly in ["@hourly", "@HOURLY"] {
            let got = fires(hourly, Dialect::Unix, "Europe/Berlin", "2026-10-24T23:30:00Z", 3);
            assert_eq!(
                got,
                ["2026-10-25T00:00:00+00:00", "2026-10-25T01:00:00+00:00", "2026-10-25T02:00:00+00:00"],
                "{hourly}"
            );
        }
        // An interval schedule keeps real time: both 02:00s and both 02:30s of the repeated hour.
        let got = fires("*/30 * * * *", Dialect::Unix, "Europe/Berlin", "2026-10-24T23:50:00Z", 4);
        assert_eq!(
            got,
            [
                "2026-10-25T00:00:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T01:30:00+00:00"
            ]
        );
    }

    #[test]
    fn schedules_follow_their_zone() {
        let shanghai = fires("0 8 * * *", Dialect::Unix, "Asia/Shanghai", "2026-06-01T00:00:00Z", 1);
        assert_eq!(shanghai, ["2026-06-02T00:00:00+00:00"]);
        let _ = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0);
    }
}
