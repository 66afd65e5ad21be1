//! A cron expression described in Chinese: the phrases croner's describer puts together (its
//! English order, with Chinese joints), then Chinese punctuation.

use model::cron::{CronExpr, CronWords};

use super::Lang;

/// What `cron` does, in `lang`.
pub fn describe_cron(lang: Lang, cron: &CronExpr) -> String {
    match lang {
        Lang::En => cron.describe(),
        Lang::Zh => {
            let text = cron.describe_in(Chinese);
            let text = text.strip_suffix('.').unwrap_or(&text).replace(", ", "，");
            // croner joins list items with spaces ("周四，和 周五", "1 或 周一").
            let text = text.replace("，和 ", "和").replace(" 和 ", "和").replace(" 或 ", "或");
            format!("{text}。")
        }
    }
}

#[derive(Clone, Copy)]
struct Chinese;

impl CronWords for Chinese {
    fn every_minute(&self) -> &'static str {
        "每分钟"
    }
    fn every_second_phrase(&self) -> &'static str {
        "每秒"
    }
    fn every_x_minutes(&self, step: u16) -> String {
        format!("每 {step} 分钟")
    }
    fn every_x_seconds(&self, step: u16) -> String {
        format!("每 {step} 秒")
    }
    fn every_x_hours(&self, step: u16) -> String {
        format!("每 {step} 小时")
    }
    fn every_minute_of_every_x_hours(&self, step: u16) -> String {
        format!("每 {step} 小时内的每分钟")
    }
    fn at_time(&self, time: &str) -> String {
        format!("在 {time}")
    }
    fn at_time_and_every_x_seconds(&self, time: &str, step: u16) -> String {
        format!("在 {time}，每 {step} 秒")
    }
    fn at_time_at_second(&self, time: &str, second: &str) -> String {
        format!("在 {time} 的第 {second} 秒")
    }
    fn at_phrase(&self, phrase: &str) -> String {
        phrase.to_owned()
    }
    fn on_phrase(&self, phrase: &str) -> String {
        phrase.to_owned()
    }
    fn in_phrase(&self, phrase: &str) -> String {
        phrase.to_owned()
    }
    fn second_phrase(&self, s: &str) -> String {
        format!("第 {s} 秒")
    }
    fn minute_phrase(&self, s: &str) -> String {
        format!("第 {s} 分钟")
    }
    fn minute_past_every_hour_phrase(&self, s: &str) -> String {
        format!("每小时的{s}")
    }
    fn hour_phrase(&self, s: &str) -> String {
        format!("{s} 点")
    }
    fn year_phrase(&self, s: &str) -> String {
        format!("{s} 年")
    }
    fn day_phrase(&self, s: &str) -> String {
        format!("每月 {s} 日")
    }
    fn the_last_day_of_the_month(&self) -> &'static str {
        "每月最后一天"
    }
    fn the_weekday_nearest_day(&self, day: &str) -> String {
        format!("离每月 {day} 日最近的工作日")
    }
    fn the_last_weekday_of_the_month(&self, day: &str) -> String {
        format!("每月最后一个{day}")
    }
    fn the_nth_weekday_of_the_month(&self, n: u8, day: &str) -> String {
        format!("每月第 {n} 个{day}")
    }
    fn dom_and_dow_if_also(&self, dow: &str) -> String {
        format!("（且为{dow}）")
    }
    fn dom_and_dow_if_also_one_of(&self, dow: &str) -> String {
        format!("（且为以下之一：{dow}）")
    }
    fn list_conjunction_and(&self) -> &'static str {
        "和"
    }
    fn list_conjunction_or(&self) -> &'static str {
        "或"
    }
    fn list_conjunction_and_comma(&self) -> &'static str {
        "和"
    }
    fn day_of_week_names(&self) -> [&'static str; 7] {
        ["周日", "周一", "周二", "周三", "周四", "周五", "周六"]
    }
    fn month_names(&self) -> [&'static str; 12] {
        ["一月", "二月", "三月", "四月", "五月", "六月", "七月", "八月", "九月", "十月", "十一月", "十二月"]
    }
    fn every_past_phrase(&self, every: &str, hours: &str) -> String {
        format!("{hours}的{every}")
    }
    fn past_hour_phrase(&self, s: &str) -> String {
        format!("{s} 点")
    }
    fn every_x_months(&self, step: u16) -> String {
        format!("每 {step} 个月")
    }
    fn every_x_years(&self, step: u16) -> String {
        format!("每 {step} 年")
    }
}

#[cfg(test)]
mod tests {
    use model::cron::Dialect;

    use super::*;

    fn zh(expr: &str) -> String {
        describe_cron(Lang::Zh, &CronExpr::parse(expr, Dialect::Unix).unwrap())
    }

    #[test]
    fn schedules_read_in_chinese() {
        assert_eq!(zh("30 9 * * *"), "在 09:30。");
        assert_eq!(zh("*/15 * * * *"), "每 15 分钟。");
        let weekdays = zh("30 9 * * 1-5");
        assert!(
            weekdays.starts_with("在 09:30，") && weekdays.contains("周一") && weekdays.contains("周五"),
            "{weekdays}"
        );
        assert_eq!(zh("0 0 1 1,7 *"), "在 00:00，每月 1 日，一月和七月。");
        assert_eq!(describe_cron(Lang::En, &CronExpr::parse("30 9 * * *", Dialect::Unix).unwrap()), "At 09:30.");
    }
}
