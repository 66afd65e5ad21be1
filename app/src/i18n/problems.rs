//! Problems of a workflow document (the model's `Problem`) in the reader's language. The match
//! is exhaustive, so a new kind of problem does not build until it has its Chinese text. A
//! `detail` from deeper down (the YAML parser, a kind's settings, the cron or template parser)
//! stays in English.

use model::workflow::Problem;

use super::Lang;

pub fn problem(lang: Lang, p: &Problem) -> String {
    match lang {
        Lang::En => p.to_string(),
        Lang::Zh => zh(p),
    }
}

fn zh(p: &Problem) -> String {
    let mean = |s: &Option<String>| s.as_ref().map(|k| format!("（是否想写 `{k}`？）")).unwrap_or_default();
    match p {
        Problem::Syntax { detail } => format!("文档无法读取：{detail}"),
        Problem::WorkflowName { name } => {
            format!("工作流名称 {name:?} 无效：只能使用小写字母、数字、“-”和“_”，并以字母开头")
        }
        Problem::NoTasks => "工作流至少需要一个任务".into(),
        Problem::TooManyTasks { count, max } => {
            format!("{count} 个任务超过了单个工作流的上限 {max}：请拆分为子工作流")
        }
        Problem::MaxActiveRunsZero => "max_active_runs 至少为 1".into(),
        Problem::ParamName { name } => format!("参数名 {name:?} 只能使用字母、数字、“-”和“_”"),
        Problem::ParamTemplate { name, detail } => format!("参数 `{name}`：{detail}"),
        Problem::TaskId => "任务 ID 只能使用字母、数字、“-”和“_”（最多 100 个字符）".into(),
        Problem::DuplicateId { first, second } => {
            format!("这个 ID 用了两次（第 {first} 和第 {second} 个任务）：ID 必须唯一")
        }
        Problem::DependsTwice { dep } => format!("重复依赖 `{dep}`"),
        Problem::UnknownDependency { dep, suggestion } => {
            format!("依赖的 `{dep}` 不是本工作流的任务{}", mean(suggestion))
        }
        Problem::Cycle { path } => format!("任务之间形成了环：{}；请删除其中一个依赖", path.join(" → ")),
        Problem::KindConfig { kind, detail } => format!("{kind} 的配置：{detail}"),
        Problem::Template { text, detail } => format!("模板 {text:?}：{detail}"),
        Problem::Condition { when, detail } => format!("条件 {when:?}：{detail}"),
        Problem::UnknownBranch { target, suggestion } => {
            format!("分支 `{target}` 不是依赖这个 switch 的任务{}", mean(suggestion))
        }
        Problem::RetryDelay { what, detail } => format!("retries.{what}：{detail}"),
        Problem::TooManyRetries => "最多重试 100 次".into(),
        Problem::Timeout { detail } => format!("超时：{detail}"),
        Problem::ZeroTimeout => "超时时间必须大于零".into(),
        Problem::Cpu { cpu } => format!("cpu {cpu} 必须在 0 到 1024 核之间"),
        Problem::Memory { detail } => format!("内存：{detail}"),
        Problem::ReservedPool { pool } => format!("以 `orrery-` 开头的资源池名称由系统保留，不能使用 {pool:?}"),
        Problem::PoolName { pool } => format!("资源池名称 {pool:?} 只能使用字母、数字、“-”和“_”"),
        Problem::Schedule { detail } => format!("调度：{detail}"),
        Problem::ScheduleStart { detail } => format!("调度开始时间：{detail}"),
        Problem::ScheduleEnd { detail } => format!("调度结束时间：{detail}"),
        Problem::EndBeforeStart => "调度的结束时间必须晚于开始时间".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<Problem> {
        let spec = crate::graph::from_yaml(yaml).unwrap();
        model::workflow::validate(spec).unwrap_err().0.into_iter().map(|e| e.problem).collect()
    }

    #[test]
    fn a_problem_reads_in_chinese_with_its_names_kept() {
        let ps = problems(
            "name: w\ntasks:\n  - {id: a, kind: noop, depends_on: [c]}\n  - {id: b, kind: noop, depends_on: [a]}\n  - {id: c, kind: noop, depends_on: [b]}\n  - {id: d, kind: noop, depends_on: [bb]}\n",
        );
        let zh: Vec<String> = ps.iter().map(|p| problem(Lang::Zh, p)).collect();
        assert!(zh.iter().any(|m| m.starts_with("任务之间形成了环：") && m.contains(" → ")), "{zh:?}");
        assert!(zh.contains(&"依赖的 `bb` 不是本工作流的任务（是否想写 `b`？）".to_owned()), "{zh:?}");
        let en: Vec<String> = ps.iter().map(|p| problem(Lang::En, p)).collect();
        assert!(en.iter().any(|m| m.starts_with("the tasks form a cycle: ")), "{en:?}");
        assert!(en.contains(&"depends on `bb`, which is not a task of this workflow (did you mean `b`?)".to_owned()));
    }
}
