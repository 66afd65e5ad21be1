//! Parameter templating, in the two styles users bring.
//!
//! **Airflow style** (minijinja): `{{ ds }}`, `{{ ds_nodash }}`, `{{ ts }}`, `{{ logical_date }}`,
//! `{{ run_id }}`, `{{ workflow }}`, `{{ attempt }}`, `{{ params.region }}`,
//! `{{ outputs.extract.rows }}`, `{{ states.extract }}`, and the filters
//! `add_days(n)`, `add_hours(n)`, `add_minutes(n)`, `add_months(n)`, `fmt("%Y%m%d")`:
//! `{{ logical_date | add_days(-1) | fmt("%Y%m%d") }}`. Dates are in the schedule's time zone.
//!
//! **DolphinScheduler style**: `$[yyyyMMdd]`, `$[yyyy-MM-dd-1]` (minus one day), `$[yyyyMMdd+7]`,
//! `$[yyyyMMdd-1*7]` (minus one week), `$[HHmmss-1/24]` (minus one hour), `$[HHmm-5/24/60]`
//! (minus five minutes), and the functions `add_months(fmt,n)`, `this_day(fmt)`,
//! `last_day(fmt)`, `month_begin(fmt,n)`, `month_end(fmt,n)`, `week_begin(fmt,n)`,
//! `week_end(fmt,n)` (weeks start on Monday). Formats use `yyyy MM dd HH mm ss`.
//!
//! `$[...]` is expanded first, then the text is rendered by minijinja. Undefined variables are
//! errors, not empty strings: a typo must not silently run a task with a blank argument.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use minijinja::value::Value as JValue;
use minijinja::{Environment, Error as JError, ErrorKind, UndefinedBehavior};
use serde_json::Value;

/// What a template can refer to.
#[derive(Clone, Debug)]
pub struct Context {
    /// The run's logical time (the schedule tick it stands for).
    pub logical_time: DateTime<Utc>,
    /// The zone dates are shown in.
    pub zone: Tz,
    pub run_id: String,
    pub workflow: String,
    pub attempt: u32,
    pub params: BTreeMap<String, Value>,
    /// Outputs of finished tasks: task id → key → value.
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    /// States of tasks: task id → state name.
    pub states: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Bounded work per render: a template cannot loop forever in the scheduler.
    env.set_fuel(Some(50_000));
    env.add_filter("add_days", |d: String, n: i64| shift(&d, |t| t.checked_add_signed(Duration::days(n))));
    env.add_filter("add_hours", |d: String, n: i64| shift(&d, |t| t.checked_add_signed(Duration::hours(n))));
    env.add_filter("add_minutes", |d: String, n: i64| shift(&d, |t| t.checked_add_signed(Duration::minutes(n))));
    env.add_filter("add_months", |d: String, n: i32| {
        shift(&d, |t| {
            if n >= 0 {
                t.checked_add_months(Months::new(n.unsigned_abs()))
            } else {
                t.checked_sub_months(Months::new(n.unsigned_abs()))
            }
        })
    });
    env.add_filter("fmt", |d: String, f: String| -> Result<String, JError> {
        let t = parse_dt(&d)?;
        let mut out = String::new();
        std::fmt::write(&mut out, format_args!("{}", t.format(&f)))
            .map_err(|_| JError::new(ErrorKind::InvalidOperation, format!("{f:?} is not a valid date format")))?;
        Ok(out)
    });
    env
}

fn parse_dt(s: &str) -> Result<DateTime<chrono::FixedOffset>, JError> {
    DateTime::parse_from_rfc3339(s).map_err(|_| {
        JError::new(ErrorKind::InvalidOperation, format!("{s:?} is not a date (expected logical_date or ts)"))
    })
}

fn shift(
    d: &str,
    f: impl FnOnce(DateTime<chrono::FixedOffset>) -> Option<DateTime<chrono::FixedOffset>>,
) -> Result<String, JError> {
    f(parse_dt(d)?).map(|t| t.to_rfc3339()).ok_or_else(|| JError::new(ErrorKind::InvalidOperation, "date out of range"))
}

/// Is this text a template at all? (Plain strings skip the engine.)
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("$[")
}

/// Checks the syntax only (at apply time, before any run exists).
pub fn check(text: &str) -> Result<(), TemplateError> {
    for expr in dolphin_sections(text)? {
        dolphin_eval(expr, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap().with_timezone(&Tz::UTC))?;
    }
    let env = env();
    env.template_from_str(text).map(|_| ()).map_err(|e| TemplateError(describe(&e)))
}

/// Checks an expression's syntax (a switch case).
pub fn check_expression(expr: &str) -> Result<(), TemplateError> {
    env().compile_expression(expr).map(|_| ()).map_err(|e| TemplateError(describe(&e)))
}

fn describe(e: &JError) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn jinja_context(ctx: &Context) -> JValue {
    let local = ctx.logical_time.with_timezone(&ctx.zone);
    let fixed = local.fixed_offset();
    minijinja::context! {
        logical_date => fixed.to_rfc3339(),
        ts => fixed.to_rfc3339(),
        ts_nodash => local.format("%Y%m%dT%H%M%S").to_string(),
        ds => local.format("%Y-%m-%d").to_string(),
        ds_nodash => local.format("%Y%m%d").to_string(),
        run_id => ctx.run_id.clone(),
        workflow => ctx.workflow.clone(),
        attempt => ctx.attempt,
        params => JValue::from_serialize(&ctx.params),
        outputs => JValue::from_serialize(&ctx.outputs),
        states => JValue::from_serialize(&ctx.states),
    }
}

/// Renders `text`: DolphinScheduler `$[...]` first, then Airflow-style Jinja.
pub fn render(text: &str, ctx: &Context) -> Result<String, TemplateError> {
    if !is_template(text) {
        return Ok(text.to_owned());
    }
    let local = ctx.logical_time.with_timezone(&ctx.zone);
    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("$[") {
        let end = rest[start..].find(']').ok_or_else(|| TemplateError("`$[` is not closed by `]`".into()))? + start;
        expanded.push_str(&rest[..start]);
        expanded.push_str(&dolphin_eval(&rest[start + 2..end], local)?);
        rest = &rest[end + 1..];
    }
    expanded.push_str(rest);
    if !(expanded.contains("{{") || expanded.contains("{%")) {
        return Ok(expanded);
    }
    env().render_str(&expanded, jinja_context(ctx)).map_err(|e| TemplateError(describe(&e)))
}

/// Renders every string inside a JSON value.
pub fn render_value(v: &Value, ctx: &Context) -> Result<Value, TemplateError> {
    Ok(match v {
        Value::String(s) => Value::String(render(s, ctx)?),
        Value::Array(a) => Value::Array(a.iter().map(|x| render_value(x, ctx)).collect::<Result<_, _>>()?),
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, x)| Ok((k.clone(), render_value(x, ctx)?))).collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// Evaluates a switch condition to true or false.
pub fn eval_condition(expr: &str, ctx: &Context) -> Result<bool, TemplateError> {
    let env = env();
    let compiled = env.compile_expression(expr).map_err(|e| TemplateError(describe(&e)))?;
    compiled.eval(jinja_context(ctx)).map(|v| v.is_true()).map_err(|e| TemplateError(describe(&e)))
}

fn dolphin_sections(text: &str) -> Result<Vec<&str>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("$[") {
        let end = rest[start..].find(']').ok_or_else(|| TemplateError("`$[` is not closed by `]`".into()))? + start;
        out.push(&rest[start + 2..end]);
        rest = &rest[end + 1..];
    }
    Ok(out)
}

/// `yyyyMMdd-1`, `add_months(yyyyMMdd,-1)`, ... at `base`.
fn dolphin_eval(expr: &str, base: DateTime<Tz>) -> Result<String, TemplateError> {
    let expr = expr.trim();
    let bad = |why: &str| TemplateError(format!("`$[{expr}]`: {why}"));
    if let Some(open) = expr.find('(') {
        let name = expr[..open].trim();
        let args = expr[open + 1..].strip_suffix(')').ok_or_else(|| bad("missing `)`"))?;
        let mut parts = args.splitn(2, ',').map(str::trim);
        let fmt = parts.next().filter(|f| !f.is_empty()).ok_or_else(|| bad("missing the date format"))?;
        let n: i64 = match parts.next() {
            Some(s) => s.parse().map_err(|_| bad("the second argument must be an integer"))?,
            None => 0,
        };
        let date = base.date_naive();
        let day = match name {
            "this_day" => date,
            "last_day" => month_end(date, 0).ok_or_else(|| bad("date out of range"))?,
            "add_months" => add_months(date, n).ok_or_else(|| bad("date out of range"))?,
            "month_begin" => add_months(date, n).and_then(|d| d.with_day(1)).ok_or_else(|| bad("date out of range"))?,
            "month_end" => month_end(date, n).ok_or_else(|| bad("date out of range"))?,
            "week_begin" => {
                date - Duration::days(i64::from(date.weekday().num_days_from_monday())) + Duration::weeks(n)
            }
            "week_end" => {
                date + Duration::days(6 - i64::from(date.weekday().num_days_from_monday())) + Duration::weeks(n)
            }
            other => {
                return Err(bad(&format!(
                    "unknown function `{other}`: use add_months, this_day, last_day, month_begin, month_end, week_begin or week_end"
                )));
            }
        };
        let at = base.timezone().from_local_datetime(&day.and_time(base.time())).earliest().unwrap_or(base);
        return Ok(java_format(fmt, at));
    }
    // A format, optionally followed by an offset: +N / -N days, ±N*7 weeks, ±N/24 hours, ±N/24/60
    // minutes. Formats contain '-' themselves (yyyy-MM-dd), so the offset is the last sign that
    // starts a well-formed tail.
    let split = expr.char_indices().rev().find(|&(i, c)| i > 0 && (c == '+' || c == '-') && is_offset(&expr[i..]));
    let (fmt, offset) = match split {
        Some((i, _)) => (&expr[..i], Some(&expr[i..])),
        None => (expr, None),
    };
    let at = match offset {
        None => base,
        Some(off) => {
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let body = &off[1..];
            let delta = if let Some(n) = body.strip_suffix("/24/60") {
                Duration::minutes(parse_n(n, expr)?)
            } else if let Some(n) = body.strip_suffix("/24") {
                Duration::hours(parse_n(n, expr)?)
            } else if let Some((n, m)) = body.split_once('*') {
                Duration::days(parse_n(n, expr)? * parse_n(m, expr)?)
            } else {
                Duration::days(parse_n(body, expr)?)
            };
            base.checked_add_signed(delta * sign).ok_or_else(|| bad("date out of range"))?
        }
    };
    if !fmt.chars().any(|c| "yMdHms".contains(c)) {
        return Err(bad("expected a date format such as yyyyMMdd or yyyy-MM-dd HH:mm:ss"));
    }
    Ok(java_format(fmt, at))
}

/// An offset is the whole tail: `[+-]digits` optionally followed by `*digits`, `/24` or `/24/60`.
fn is_offset(s: &str) -> bool {
    let body = &s[1..];
    let core = body.strip_suffix("/24/60").or_else(|| body.strip_suffix("/24")).unwrap_or(body);
    let core = core
        .split_once('*')
        .map_or(core, |(a, b)| if b.chars().all(|c| c.is_ascii_digit()) && !b.is_empty() { a } else { "x" });
    !core.is_empty() && core.chars().all(|c| c.is_ascii_digit())
}

fn parse_n(s: &str, expr: &str) -> Result<i64, TemplateError> {
    s.trim().parse().map_err(|_| TemplateError(format!("`$[{expr}]`: {s:?} is not a number")))
}

fn add_months(d: NaiveDate, n: i64) -> Option<NaiveDate> {
    let m = Months::new(u32::try_from(n.unsigned_abs()).ok()?);
    if n >= 0 { d.checked_add_months(m) } else { d.checked_sub_months(m) }
}

fn month_end(d: NaiveDate, n: i64) -> Option<NaiveDate> {
    let first = add_months(d.with_day(1)?, n + 1)?;
    first.pred_opt()
}

/// Java's `yyyy MM dd HH mm ss` (the DolphinScheduler format letters) with chrono.
fn java_format(fmt: &str, at: DateTime<Tz>) -> String {
    let strf = fmt
        .replace("yyyy", "%Y")
        .replace("MM", "%m")
        .replace("dd", "%d")
        .replace("HH", "%H")
        .replace("mm", "%M")
        .replace("ss", "%S");
    at.format(&strf).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            // 2026-03-01 00:30 UTC = 2026-03-01 08:30 in Shanghai
            logical_time: Utc.with_ymd_and_hms(2026, 3, 1, 0, 30, 0).unwrap(),
            zone: "Asia/Shanghai".parse().unwrap(),
            run_id: "r1".into(),
            workflow: "daily".into(),
            attempt: 1,
            params: BTreeMap::from([("region".to_owned(), Value::String("eu".into()))]),
            outputs: BTreeMap::from([("extract".to_owned(), BTreeMap::from([("rows".to_owned(), "42".to_owned())]))]),
            states: BTreeMap::from([("extract".to_owned(), "succeeded".to_owned())]),
        }
    }

    #[test]
    fn airflow_macros_and_filters() {
        let c = ctx();
        assert_eq!(render("{{ ds }} {{ ds_nodash }}", &c).unwrap(), "2026-03-01 20260301");
        assert_eq!(render("{{ logical_date | add_days(-1) | fmt(\"%Y%m%d\") }}", &c).unwrap(), "20260228");
        assert_eq!(render("{{ logical_date | add_months(-1) | fmt(\"%Y-%m\") }}", &c).unwrap(), "2026-02");
        assert_eq!(render("{{ logical_date | add_hours(16) | fmt(\"%d %H\") }}", &c).unwrap(), "02 00");
        assert_eq!(render("{{ params.region }}-{{ outputs.extract.rows }}", &c).unwrap(), "eu-42");
        assert_eq!(render("plain text", &c).unwrap(), "plain text");
    }

    #[test]
    fn dolphinscheduler_macros() {
        let c = ctx();
        assert_eq!(render("$[yyyyMMdd]", &c).unwrap(), "20260301");
        assert_eq!(render("$[yyyy-MM-dd-1]", &c).unwrap(), "2026-02-28");
        assert_eq!(render("$[yyyyMMdd+7]", &c).unwrap(), "20260308");
        assert_eq!(render("$[yyyyMMdd-1*7]", &c).unwrap(), "20260222");
        assert_eq!(render("$[HHmmss-1/24]", &c).unwrap(), "073000");
        assert_eq!(render("$[HHmm-5/24/60]", &c).unwrap(), "0825");
        assert_eq!(render("$[add_months(yyyyMMdd,-1)]", &c).unwrap(), "20260201");
        assert_eq!(render("$[last_day(yyyy-MM-dd)]", &c).unwrap(), "2026-03-31");
        assert_eq!(render("$[month_begin(yyyyMMdd,-1)]", &c).unwrap(), "20260201");
        assert_eq!(render("$[month_end(yyyyMMdd,-1)]", &c).unwrap(), "20260228");
        // 2026-03-01 is a Sunday: its week began on Monday the 23rd of February.
        assert_eq!(render("$[week_begin(yyyyMMdd,0)]", &c).unwrap(), "20260223");
        assert_eq!(render("$[week_end(yyyyMMdd,0)]", &c).unwrap(), "20260301");
        assert_eq!(render("dt=$[yyyyMMdd-1] region={{ params.region }}", &c).unwrap(), "dt=20260228 region=eu");
    }

    #[test]
    fn mistakes_are_errors_that_say_what() {
        let c = ctx();
        let e = render("{{ params.regoin }}", &c).unwrap_err().to_string();
        assert!(e.contains("undefined"), "{e}");
        assert!(check("{{ ds ").is_err());
        assert!(render("$[nonsense(yyyy)]", &c).unwrap_err().to_string().contains("unknown function"));
        assert!(render("$[yyyyMMdd", &c).unwrap_err().to_string().contains("not closed"));
        assert!(check_expression("outputs.extract.rows | int > ").is_err());
    }

    #[test]
    fn conditions_read_outputs_and_states() {
        let c = ctx();
        assert!(eval_condition("outputs.extract.rows | int > 10", &c).unwrap());
        assert!(!eval_condition("states.extract == 'failed'", &c).unwrap());
        assert!(eval_condition("params.region in ['eu', 'us']", &c).unwrap());
    }

    #[test]
    fn json_values_are_rendered_deeply() {
        let v = serde_json::json!({ "a": ["{{ ds }}", 1], "b": { "c": "$[yyyyMMdd]" } });
        let r = render_value(&v, &ctx()).unwrap();
        assert_eq!(r, serde_json::json!({ "a": ["2026-03-01", 1], "b": { "c": "20260301" } }));
    }
}
