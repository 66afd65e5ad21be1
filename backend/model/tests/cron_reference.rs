//! Differential tests of the cron dialects against independent implementations: Quartz's own
//! `CronExpression` (Java) for the Quartz dialect, and `cronsim` (Python, which follows Debian's
//! cron) for the Unix dialect, across time zones with and without daylight saving time.
//!
//! Both references are installed by `make setup` and run by `make test` (`make
//! test-cron-reference`); the test is ignored by a plain `cargo test` because it needs them.
//!
//! The Unix dialect's DST rules are Debian cron's (a fixed time in the spring-forward gap fires at
//! the gap's end, one in the repeated hour fires once; interval jobs follow the wall clock), so it
//! is compared with cronsim on every fire, transitions included. Quartz has a rule of its own for
//! the gap (it shifts the fire by the gap's length: 02:30 becomes 03:30, where Orrery fires at
//! 03:00), so fires within two hours of a transition are left out of the Quartz comparison;
//! `model::cron`'s own tests pin Orrery's behaviour there, instant by instant. (croniter, the
//! other widely used Python implementation, was tried first and found wrong after transitions:
//! its first fire after a change of offset, even weeks later, comes an hour early or late.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use model::cron::{CronExpr, Dialect, parse_zone};

const ZONES: [&str; 6] =
    ["UTC", "America/New_York", "Europe/Berlin", "Asia/Shanghai", "Australia/Sydney", "Asia/Kolkata"];
const STARTS: [&str; 4] =
    ["2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-09-20T00:00:00Z", "2027-03-20T00:00:00Z"];
const COUNT: usize = 120;

const UNIX: [&str; 17] = [
    "*/5 * * * *",
    "30 2,14 * * *",
    "0,30 2 * * *",
    "0 1-3 * * *",
    "0 2 * * *",
    "30 2 * * *",
    "0 */3 * * 1-5",
    "15,45 8-18 * * *",
    "0 0 1 * *",
    "0 0 * * 0",
    "0 12 1,15 * mon",
    "5 4 * * sun",
    "0 0 1 1 *",
    "*/15 9-17 * * mon-fri",
    "0 0 L * *",
    "0 9 * * 5#3",
    "@daily",
];

const QUARTZ: [&str; 12] = [
    "0 0 12 * * ?",
    "0 15 10 ? * MON-FRI",
    "0 0/5 14 * * ?",
    "0 15 10 L * ?",
    "0 15 10 ? * 6L",
    "0 15 10 ? * 6#3",
    "0 0 12 1/5 * ?",
    "0 11 11 11 11 ?",
    "0 0 12 15W * ?",
    "30 0/30 9-17 ? * 2-6",
    "0 30 2 * * ?",
    "0 0 0 ? * 1 2026-2027",
];

/// The DST transitions of `zone` between `from` and `to`.
fn transitions(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = from;
    let mut offset = zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    while t < to {
        t += Duration::minutes(30);
        let o = zone.offset_from_utc_datetime(&t.naive_utc()).fix();
        if o != offset {
            out.push(t);
            offset = o;
        }
    }
    out
}

struct Reference {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Reference {
    fn start(mut cmd: Command) -> Reference {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| {
                panic!("cannot start the reference implementation {cmd:?}: {e}; run `make setup` first")
            });
        let out = BufReader::new(child.stdout.take().unwrap());
        Reference { child, out }
    }

    fn next(
        &mut self,
        expr: &str,
        zone: &str,
        after: DateTime<Utc>,
        count: usize,
    ) -> Result<Vec<DateTime<Utc>>, String> {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{expr}\t{zone}\t{}\t{count}", after.timestamp_millis()).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let line = line.trim();
        if let Some(e) = line.strip_prefix("ERROR") {
            return Err(e.trim().to_owned());
        }
        Ok(line
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|ms| Utc.timestamp_millis_opt(ms.parse().unwrap()).unwrap())
            .collect())
    }
}

/// `dst_window_minutes`: fires this close to a DST transition are not compared (0: compare all).
fn compare(reference: &mut Reference, dialect: Dialect, exprs: &[&str], dst_window_minutes: i64) {
    let mut compared = 0;
    let mut excluded = 0;
    for expr in exprs {
        let ours = CronExpr::parse(expr, dialect).unwrap_or_else(|e| panic!("{e}"));
        for zone_name in ZONES {
            let zone = parse_zone(zone_name).unwrap();
            for start in STARTS {
                let after: DateTime<Utc> = start.parse().unwrap();
                let mine = ours.next_fires(zone, after, COUNT);
                // cronsim has no @aliases: give it what the alias stands for.
                let spelled = match *expr {
                    "@daily" => "0 0 * * *",
                    other => other,
                };
                let theirs = reference
                    .next(spelled, zone_name, after, COUNT)
                    .unwrap_or_else(|e| panic!("reference refused {expr:?}: {e}"));
                let horizon = (*mine.last().unwrap()).min(*theirs.last().unwrap());
                let dst = transitions(zone, after - Duration::days(2), horizon + Duration::days(2));
                let near_dst = |t: &DateTime<Utc>| {
                    dst_window_minutes > 0 && dst.iter().any(|x| (*t - *x).num_minutes().abs() <= dst_window_minutes)
                };
                let keep = |v: &[DateTime<Utc>]| -> Vec<DateTime<Utc>> {
                    v.iter().filter(|t| **t <= horizon && !near_dst(t)).copied().collect()
                };
                let (a, b) = (keep(&mine), keep(&theirs));
                excluded += mine.iter().filter(|t| **t <= horizon && near_dst(t)).count();
                assert_eq!(
                    a, b,
                    "{dialect} {expr:?} in {zone_name} after {start}: ours (left) vs the reference (right)"
                );
                compared += a.len();
            }
        }
    }
    assert!(compared > 10_000, "compared {compared} fires");
    eprintln!("{dialect}: {compared} fires identical; {excluded} near DST transitions not compared");
}

#[test]
#[ignore = "needs the reference implementations (Java Quartz, Python cronsim): run `make test-cron-reference`"]
fn quartz_dialect_matches_quartz() {
    let classpath = std::env::var("ORRERY_QUARTZ_CLASSPATH").unwrap_or_else(|_| "/usr/share/java/quartz2.jar".into());
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/dev/cron-reference/QuartzRef.java");
    let mut cmd = Command::new("java");
    cmd.args(["-cp", &classpath, source]);
    compare(&mut Reference::start(cmd), Dialect::Quartz, &QUARTZ, 120);
}

#[test]
#[ignore = "needs the reference implementations (Java Quartz, Python cronsim): run `make test-cron-reference`"]
fn unix_dialect_matches_cronsim() {
    let python = std::env::var("ORRERY_CRON_REFERENCE_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/venv/bin/python").into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/dev/cron-reference/unix_ref.py");
    let mut cmd = Command::new(python);
    cmd.arg(script);
    compare(&mut Reference::start(cmd), Dialect::Unix, &UNIX, 0);
}
