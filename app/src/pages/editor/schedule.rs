//! The schedule editor: expression, dialect, time zone, start and end, catch-up and overlap; the
//! next ten fires in the schedule's zone, computed in the browser by the scheduler's own cron
//! code; and pause / resume of the saved schedule.

use leptos::prelude::*;
use model::cron::{CronExpr, Dialect, parse_zone};
use model::workflow::spec::ScheduleSpec;
use model::workflow::{Catchup, Overlap};
use model::{Action, Object};

use super::Saved;
use super::state::Editor;
use crate::api::set_paused;
use crate::components::{ErrorNotice, use_tenant};
use crate::i18n::{Lang, describe_cron, k, t, tr, use_prefs};

/// The next `n` fires of a schedule after `after`, written in its zone — or why there are none.
pub fn next_fires(
    s: &ScheduleSpec,
    after: chrono::DateTime<chrono::Utc>,
    n: usize,
    lang: Lang,
) -> Result<(String, Vec<String>), String> {
    let cron = CronExpr::parse(&s.cron, s.dialect).map_err(|e| e.to_string())?;
    let zone = parse_zone(&s.timezone).map_err(|e| e.to_string())?;
    let fires = cron
        .next_fires(zone, after, n)
        .into_iter()
        .map(|f| f.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z (%a)").to_string())
        .collect();
    Ok((describe_cron(lang, &cron), fires))
}

fn blank() -> ScheduleSpec {
    ScheduleSpec {
        cron: "0 2 * * *".into(),
        dialect: Dialect::Unix,
        timezone: "UTC".into(),
        start: None,
        end: None,
        catchup: Catchup::Latest,
        max_catchup: None,
        overlap: Overlap::Allow,
        paused: false,
    }
}

#[component]
pub fn ScheduleEditor(ed: Editor, saved: RwSignal<Option<Saved>>) -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let readonly = move || !ed.editable.get();
    let schedule = Memo::new(move |_| ed.spec.with(|s| s.schedule.clone()));
    // The form is built once per schedule (not per keystroke: focus stays in the field).
    let has = Memo::new(move |_| schedule.with(Option::is_some));
    let set = move |f: Box<dyn FnOnce(&mut ScheduleSpec)>| {
        ed.edit(move |g| {
            let s = g.spec.schedule.get_or_insert_with(blank);
            f(s);
        });
    };
    let text = move |f: fn(&ScheduleSpec) -> String| schedule.with(|s| s.as_ref().map(f).unwrap_or_default());
    // The preview is the browser's: it appears once the page runs there.
    let mounted = RwSignal::new(false);
    Effect::new(move |_| mounted.set(true));
    let preview = move || {
        let s = schedule.get()?;
        mounted.get().then(|| next_fires(&s, crate::time::now(), 10, lang()))
    };
    let toggle_error = RwSignal::new(None);
    let toggle = move |paused: bool| {
        let Some(id) = saved.with_untracked(|s| s.as_ref().map(|s| s.id.clone())) else { return };
        let slug = tenant.slug.get_untracked();
        leptos::task::spawn_local(async move {
            match set_paused(slug, id, paused).await {
                Ok(s) => {
                    toggle_error.set(None);
                    saved.update(|v| {
                        if let Some(v) = v {
                            v.paused = Some(s.paused);
                        }
                    });
                }
                Err(e) => toggle_error.set(Some(e)),
            }
        });
    };
    let may_pause = move || tenant.may(Object::Schedule, Action::Execute);

    view! {
        <section class="card" data-test="schedule-editor">
            {move || match has.get() {
                false => view! {
                    <p class="muted">{t("This workflow runs only when triggered.")}</p>
                    <button class="button" data-test="add-schedule" disabled=readonly on:click=move |_| set(Box::new(|_| {}))>{t("Add a schedule")}</button>
                }.into_any(),
                true => view! {
                    <div class="form-grid">
                        <div class="field wide">
                            <label for="cron">{t("Cron expression")}</label>
                            <input id="cron" class="code" data-test="cron" readonly=readonly prop:value=move || text(|s| s.cron.clone())
                                on:input=move |e| { let v = event_target_value(&e); set(Box::new(move |s| s.cron = v)) }/>
                        </div>
                        <div class="field">
                            <label for="dialect">{t("Dialect")}</label>
                            <select id="dialect" data-test="dialect" disabled=readonly on:change=move |e| {
                                let d = if event_target_value(&e) == "quartz" { Dialect::Quartz } else { Dialect::Unix };
                                set(Box::new(move |s| s.dialect = d))
                            }>
                                <option value="unix" selected=move || schedule.with(|s| s.as_ref().is_some_and(|s| s.dialect == Dialect::Unix))>{t("Unix (min hour day month weekday)")}</option>
                                <option value="quartz" selected=move || schedule.with(|s| s.as_ref().is_some_and(|s| s.dialect == Dialect::Quartz))>{t("Quartz (sec min hour day month weekday [year])")}</option>
                            </select>
                        </div>
                        <div class="field">
                            <label for="tz">{t("Time zone")}</label>
                            <input id="tz" data-test="timezone" readonly=readonly list="zones" prop:value=move || text(|s| s.timezone.clone())
                                on:change=move |e| { let v = event_target_value(&e).trim().to_owned(); set(Box::new(move |s| s.timezone = v)) }/>
                            <datalist id="zones">
                                {["UTC", "Asia/Shanghai", "Asia/Tokyo", "Asia/Singapore", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles"]
                                    .into_iter().map(|z| view! { <option value=z></option> }).collect_view()}
                            </datalist>
                        </div>
                        <div class="field">
                            <label for="start">{t("Not before")}</label>
                            <input id="start" readonly=readonly placeholder="2026-01-01" prop:value=move || text(|s| s.start.clone().unwrap_or_default())
                                on:change=move |e| { let v = event_target_value(&e).trim().to_owned(); set(Box::new(move |s| s.start = (!v.is_empty()).then_some(v))) }/>
                        </div>
                        <div class="field">
                            <label for="end">{t("Not after")}</label>
                            <input id="end" readonly=readonly placeholder="2027-01-01" prop:value=move || text(|s| s.end.clone().unwrap_or_default())
                                on:change=move |e| { let v = event_target_value(&e).trim().to_owned(); set(Box::new(move |s| s.end = (!v.is_empty()).then_some(v))) }/>
                        </div>
                        <div class="field">
                            <label for="catchup">{t("After downtime")}</label>
                            <select id="catchup" disabled=readonly on:change=move |e| {
                                let c = match event_target_value(&e).as_str() { "skip" => Catchup::Skip, "all" => Catchup::All, _ => Catchup::Latest };
                                set(Box::new(move |s| s.catchup = c))
                            }>
                                {[(Catchup::Skip, "skip", k("skip missed fires")), (Catchup::Latest, "latest", k("run the latest missed fire")), (Catchup::All, "all", k("run every missed fire"))]
                                    .into_iter().map(|(c, v, label)| view! {
                                        <option value=v selected=move || schedule.with(|s| s.as_ref().is_some_and(|s| s.catchup == c))>{move || tr(lang(), label)}</option>
                                    }).collect_view()}
                            </select>
                        </div>
                        <div class="field">
                            <label for="overlap">{t("While the last run is active")}</label>
                            <select id="overlap" disabled=readonly on:change=move |e| {
                                let o = match event_target_value(&e).as_str() { "skip" => Overlap::Skip, "queue" => Overlap::Queue, "cancel_previous" => Overlap::CancelPrevious, _ => Overlap::Allow };
                                set(Box::new(move |s| s.overlap = o))
                            }>
                                {[(Overlap::Allow, "allow", k("start alongside")), (Overlap::Skip, "skip", k("skip this fire")), (Overlap::Queue, "queue", k("queue it")), (Overlap::CancelPrevious, "cancel_previous", k("cancel the active run"))]
                                    .into_iter().map(|(o, v, label)| view! {
                                        <option value=v selected=move || schedule.with(|s| s.as_ref().is_some_and(|s| s.overlap == o))>{move || tr(lang(), label)}</option>
                                    }).collect_view()}
                            </select>
                        </div>
                    </div>
                    <h3>{t("Next fires")}</h3>
                    {move || match preview() {
                        None => view! { <p class="muted small">{t("Computing…")}</p> }.into_any(),
                        Some(Err(e)) => view! { <p class="field-error" role="alert" data-test="cron-error">{e}</p> }.into_any(),
                        Some(Ok((description, fires))) => view! {
                            <p class="muted">{description}</p>
                            <ol class="fires" data-test="next-fires">{fires.into_iter().map(|f| view! { <li><code>{f}</code></li> }).collect_view()}</ol>
                        }.into_any(),
                    }}
                    <div class="row">
                        <button class="button subtle danger" disabled=readonly on:click=move |_| { ed.edit(|g| g.spec.schedule = None); }>{t("Remove the schedule")}</button>
                        {move || saved.get().and_then(|s| s.paused).map(|paused| view! {
                            <span class="spacer"></span>
                            <span class="badge" data-test="schedule-state">{move || tr(lang(), if paused { k("paused") } else { k("active") })}</span>
                            <Show when=may_pause>
                                <button class="button" data-test="toggle-pause" on:click=move |_| toggle(!paused)>
                                    {move || if paused { t("Resume")() } else { t("Pause")() }}
                                </button>
                            </Show>
                        })}
                    </div>
                    {move || toggle_error.get().map(|e| view! { <ErrorNotice error=e/> })}
                }.into_any(),
            }}
        </section>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_preview_is_in_the_schedules_zone() {
        let mut s = blank();
        s.timezone = "Asia/Shanghai".into();
        let after = chrono::Utc.with_ymd_and_hms(2026, 4, 30, 12, 0, 0).unwrap();
        let (_, fires) = next_fires(&s, after, 3, Lang::En).unwrap();
        assert_eq!(fires[0], "2026-05-01 02:00:00 CST (Fri)");
        assert_eq!(fires.len(), 3);
        s.cron = "61 * * * *".into();
        assert!(next_fires(&s, after, 3, Lang::En).is_err());
    }
}
