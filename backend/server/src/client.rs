//! Client verbs for workflows and runs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use api_types::{Applied, ApplyWorkflow, CreateProject, Page, Project, RunDetail, TriggerRun, Triggered, Workflow};
use model::state::RunState;

use crate::cli::{Client, RunCommand, WorkflowCommand, print};

fn read_document(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `key=value`; the value is JSON when it parses as JSON, a string otherwise.
fn parse_params(raw: &[String]) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    raw.iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').with_context(|| format!("--param {kv:?} must look like key=value"))?;
            let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
            Ok((k.trim().to_owned(), value))
        })
        .collect()
}

pub async fn workflow(cmd: &WorkflowCommand) -> anyhow::Result<()> {
    match cmd {
        WorkflowCommand::Apply { file, project, message, tenant, client } => {
            let document = read_document(file)?;
            let c = Client::new(client)?;
            ensure_project(&c, tenant, project).await?;
            let req = ApplyWorkflow { project: project.clone(), document, message: message.clone(), layout: None };
            let a: Applied = c.post(&format!("/api/v1/tenants/{tenant}/workflows"), &req).await?;
            for w in &a.warnings {
                eprintln!("warning: {w}");
            }
            print(client.output, &a, |a| {
                let what = if a.changed { "applied" } else { "unchanged" };
                println!("{what}: workflow {} ({}) version {}", a.workflow.name, a.workflow.id, a.workflow.version);
            })
        }
        WorkflowCommand::List { tenant, client } => {
            let page: Page<Workflow> = Client::new(client)?.get(&format!("/api/v1/tenants/{tenant}/workflows")).await?;
            print(client.output, &page, |p| {
                println!("{:<28} {:<16} {:>7} {:<20} NEXT FIRE", "NAME", "PROJECT", "VERSION", "SCHEDULE");
                for w in &p.items {
                    let (sched, next) = match &w.schedule {
                        Some(s) => (
                            if s.paused { format!("{} (paused)", s.cron) } else { s.cron.clone() },
                            s.next_fire_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        ),
                        None => (String::new(), String::new()),
                    };
                    println!("{:<28} {:<16} {:>7} {:<20} {next}", w.name, w.project, w.version, sched);
                }
            })
        }
    }
}

/// The CLI's `--project` default is created on first use, so `apply -f` works on a new tenant.
async fn ensure_project(c: &Client, tenant: &str, project: &str) -> anyhow::Result<()> {
    let page: Page<Project> = c.get(&format!("/api/v1/tenants/{tenant}/projects")).await?;
    if page.items.iter().any(|p| p.slug == project) {
        return Ok(());
    }
    let req = CreateProject {
        slug: model::Slug::parse_named(project, "project key")?,
        name: model::DisplayName::parse_named(project, "project name")?,
        description: String::new(),
    };
    let _: Project = c.post(&format!("/api/v1/tenants/{tenant}/projects"), &req).await?;
    Ok(())
}

pub async fn run(cmd: &RunCommand) -> anyhow::Result<()> {
    match cmd {
        RunCommand::Trigger { workflow, params, idempotency_key, wait, tenant, client } => {
            let c = Client::new(client)?;
            let req = TriggerRun {
                params: parse_params(params)?,
                idempotency_key: idempotency_key.clone(),
                logical_time: None,
            };
            let t: Triggered = c.post(&format!("/api/v1/tenants/{tenant}/workflows/{workflow}/runs"), &req).await?;
            if !*wait {
                return print(client.output, &t, |t| {
                    println!("run {} {} ({})", t.run.id, t.run.state, if t.created { "new" } else { "existing" })
                });
            }
            let path = format!("/api/v1/tenants/{tenant}/runs/{}", t.run.id);
            let mut last = None;
            let detail: RunDetail = loop {
                let d: RunDetail = c.get(&path).await?;
                if client.output == crate::cli::Output::Table && last != Some(d.run.state) {
                    eprintln!("run {} {}", d.run.id, d.run.state);
                    last = Some(d.run.state);
                }
                if d.run.state.is_terminal() {
                    break d;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            };
            print(client.output, &detail, print_detail)?;
            anyhow::ensure!(
                detail.run.state == RunState::Succeeded,
                "run {} ended {}",
                detail.run.id,
                detail.run.state
            );
            Ok(())
        }
        RunCommand::Get { run, tenant, client } => {
            let d: RunDetail = Client::new(client)?.get(&format!("/api/v1/tenants/{tenant}/runs/{run}")).await?;
            print(client.output, &d, print_detail)
        }
        RunCommand::Logs { run, task, attempt, follow, tenant, client } => {
            let c = Client::new(client)?;
            let mut after = -1i64;
            loop {
                let mut path = format!("/api/v1/tenants/{tenant}/runs/{run}/tasks/{task}/logs?after={after}&limit=200");
                if let Some(a) = attempt {
                    path.push_str(&format!("&attempt={a}"));
                }
                let page: api_types::LogPage = c.get(&path).await?;
                if client.output == crate::cli::Output::Json {
                    println!("{}", serde_json::to_string(&page)?);
                } else {
                    print!("{}", page.text);
                }
                after = page.last_seq;
                if page.complete || (!*follow && page.text.is_empty()) {
                    return Ok(());
                }
                if page.text.is_empty() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        RunCommand::Cancel { run, tenant, client } => {
            let d: RunDetail = Client::new(client)?
                .post(&format!("/api/v1/tenants/{tenant}/runs/{run}/cancel"), &serde_json::json!({}))
                .await?;
            print(client.output, &d, print_detail)
        }
    }
}

fn print_detail(d: &RunDetail) {
    println!(
        "run {}  {}  workflow {} v{}  {} at {}",
        d.run.id,
        d.run.state,
        d.run.workflow,
        d.run.version,
        d.run.trigger,
        d.run.logical_time.to_rfc3339()
    );
    println!("{:<24} {:<16} {:>8}  REASON", "TASK", "STATE", "ATTEMPTS");
    for t in &d.tasks {
        println!(
            "{:<24} {:<16} {:>8}  {}",
            t.id,
            t.state.as_str(),
            t.attempts.len(),
            t.reason
                .clone()
                .or_else(|| t.attempts.last()?.unschedulable.as_ref().map(|w| format!("waiting: {w}")))
                .unwrap_or_default()
        );
    }
}
