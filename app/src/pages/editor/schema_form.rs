//! A form generated from a JSON Schema: each task kind's `config` is edited through the schema the
//! model publishes for it (`kind_schemas`), so a new kind needs no UI code. Strings, numbers,
//! booleans, lists of strings and string maps get their own inputs; anything else is edited as
//! JSON. Each field says what is wrong with it as you type.

use leptos::prelude::*;
use serde_json::{Map, Value};

use crate::i18n::{k, t, tr, use_prefs};

/// How a field is edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Text,
    /// Long text: scripts, queries.
    Code,
    Number,
    Integer,
    Bool,
    /// Comma-separated.
    List,
    /// `key=value`, one per line.
    Map,
    Json,
}

/// One field of an object schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub description: String,
    pub required: bool,
    pub input: Input,
    pub default: Option<Value>,
}

fn types(s: &Value) -> Vec<&str> {
    match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => Vec::new(),
    }
}

fn resolve<'a>(s: &'a Value, root: &'a Value) -> &'a Value {
    match s["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => &root["$defs"][name],
        None => s,
    }
}

/// The fields of an object schema: required ones first, each group by name.
pub fn fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> =
        schema["required"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut out: Vec<Field> = schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, prop)| {
                    let p = resolve(prop, schema);
                    let ty = types(p);
                    let items = resolve(&p["items"], schema);
                    let values = &p["additionalProperties"];
                    let input = match ty.as_slice() {
                        ["string"] if matches!(name.as_str(), "script" | "query" | "when") => Input::Code,
                        ["string"] => Input::Text,
                        ["number"] => Input::Number,
                        ["integer"] => Input::Integer,
                        ["boolean"] => Input::Bool,
                        ["array"] if matches!(types(items).as_slice(), ["string"] | ["integer"]) => Input::List,
                        ["object"] if types(values) == ["string"] => Input::Map,
                        _ => Input::Json,
                    };
                    Field {
                        name: name.clone(),
                        description: p["description"]
                            .as_str()
                            .or(prop["description"].as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        required: required.contains(&name.as_str()),
                        input,
                        default: p.get("default").cloned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| b.required.cmp(&a.required).then(a.name.cmp(&b.name)));
    out
}

/// The text a field shows for a value.
pub fn show(input: Input, v: Option<&Value>) -> String {
    let Some(v) = v.filter(|v| !v.is_null()) else { return String::new() };
    match input {
        Input::Text | Input::Code => v.as_str().map_or_else(|| v.to_string(), str::to_owned),
        Input::Number | Input::Integer | Input::Bool => v.to_string(),
        Input::List => v
            .as_array()
            .map(|a| {
                a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect::<Vec<_>>().join(", ")
            })
            .unwrap_or_default(),
        Input::Map => v
            .as_object()
            .map(|o| {
                o.iter().map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default())).collect::<Vec<_>>().join("\n")
            })
            .unwrap_or_default(),
        Input::Json => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

/// Reads a field's text: `Ok(None)` when empty (the key is left out), or why it is wrong.
pub fn read(input: Input, text: &str, integer_items: bool) -> Result<Option<Value>, &'static str> {
    let trimmed = text.trim();
    if trimmed.is_empty() && input != Input::Code && input != Input::Text {
        return Ok(None);
    }
    Ok(Some(match input {
        Input::Text | Input::Code => {
            if text.is_empty() {
                return Ok(None);
            }
            Value::String(text.to_owned())
        }
        Input::Number => {
            let n: f64 = trimmed.parse().map_err(|_| k("not a number"))?;
            serde_json::Number::from_f64(n).map(Value::Number).ok_or(k("not a number"))?
        }
        Input::Integer => Value::from(trimmed.parse::<i64>().map_err(|_| k("not a whole number"))?),
        Input::Bool => Value::Bool(trimmed == "true"),
        Input::List => Value::Array(
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    if integer_items {
                        s.parse::<i64>().map(Value::from).map_err(|_| k("not a list of whole numbers"))
                    } else {
                        Ok(Value::String(s.to_owned()))
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        Input::Map => {
            let mut m = Map::new();
            for line in trimmed.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let (k, v) = line.split_once('=').ok_or(k("write one key=value a line"))?;
                m.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
            }
            Value::Object(m)
        }
        Input::Json => serde_json::from_str(trimmed).map_err(|_| k("not valid JSON"))?,
    }))
}

/// The form. `value` is the current object; `on_change` gets the new one after each valid edit.
#[component]
pub fn SchemaForm(
    schema: Value,
    #[prop(into)] value: Signal<Value>,
    on_change: Callback<Value>,
    #[prop(optional)] readonly: bool,
) -> impl IntoView {
    let list = fields(&schema);
    if list.is_empty() {
        return view! { <p class="muted small">{t("This kind has no settings.")}</p> }.into_any();
    }
    let lang = move || use_prefs().get().lang;
    list.into_iter()
        .map(|f| {
            let integer_items = types(resolve(&schema["properties"][&f.name]["items"], &schema)) == ["integer"];
            let error = RwSignal::new(None::<&'static str>);
            let name = f.name.clone();
            let key = StoredValue::new(f.name.clone());
            let (input_kind, required) = (f.input, f.required);
            let current = move || show(input_kind, value.with(|v| key.with_value(|k| v.get(k).cloned())).as_ref());
            let commit = move |text: String| match read(input_kind, &text, integer_items) {
                Ok(parsed) => {
                    error.set(None);
                    let mut obj = value.get_untracked().as_object().cloned().unwrap_or_default();
                    let k = key.get_value();
                    match parsed {
                        Some(v) => {
                            obj.insert(k, v);
                        }
                        None => {
                            obj.remove(&k);
                        }
                    }
                    on_change.run(Value::Object(obj));
                }
                Err(e) => error.set(Some(e)),
            };
            let missing = move || required && value.with(|v| key.with_value(|k| v.get(k).is_none_or(|x| x.is_null() || x == "")));
            let placeholder = f.default.as_ref().map(|d| show(f.input, Some(d))).unwrap_or_default();
            let id = format!("cfg-{}", f.name);
            let input = match f.input {
                Input::Bool => view! {
                    <input type="checkbox" id=id.clone() data-field=name.clone() disabled=readonly
                        prop:checked=move || current() == "true"
                        on:change=move |ev| commit(event_target_checked(&ev).to_string())/>
                }
                .into_any(),
                Input::Code | Input::Map | Input::Json => view! {
                    <textarea id=id.clone() data-field=name.clone() class="code" rows="4" spellcheck="false" readonly=readonly
                        placeholder=placeholder prop:value=current on:change=move |ev| commit(event_target_value(&ev))></textarea>
                }
                .into_any(),
                Input::Number | Input::Integer => view! {
                    <input type="text" inputmode="decimal" id=id.clone() data-field=name.clone() readonly=readonly
                        placeholder=placeholder prop:value=current on:change=move |ev| commit(event_target_value(&ev))/>
                }
                .into_any(),
                Input::Text | Input::List => view! {
                    <input type="text" id=id.clone() data-field=name.clone() readonly=readonly
                        placeholder=placeholder prop:value=current on:change=move |ev| commit(event_target_value(&ev))/>
                }
                .into_any(),
            };
            let description = f.description.clone();
            view! {
                <div class="field" class:invalid=move || error.get().is_some() || missing()>
                    <label for=id>{f.name.clone()}{f.required.then_some(" *")}</label>
                    {input}
                    {(!description.is_empty()).then(|| view! { <p class="hint">{description}</p> })}
                    {move || error.get().map(|e| view! { <p class="field-error" role="alert">{tr(lang(), e)}</p> })}
                    {move || (error.get().is_none() && missing()).then(|| view! { <p class="field-error">{t("required")}</p> })}
                </div>
            }
        })
        .collect_view()
        .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(kind: &str) -> Value {
        serde_json::to_value(&model::workflow::kinds::kind_schemas()[kind]).unwrap()
    }

    #[test]
    fn every_kinds_schema_becomes_fields() {
        let shell = fields(&schema("shell"));
        assert_eq!(shell[0].name, "script");
        assert!(shell[0].required);
        assert_eq!(shell[0].input, Input::Code);
        assert_eq!(shell[1].default, Some(Value::from("bash")));
        let http = fields(&schema("http"));
        let input = |n: &str| http.iter().find(|f| f.name == n).map(|f| f.input);
        assert_eq!(input("headers"), Some(Input::Map));
        assert_eq!(input("expect_status"), Some(Input::List));
        assert_eq!(input("body"), Some(Input::Json));
        let sleep = fields(&schema("sleep"));
        assert_eq!(sleep[0].input, Input::Number);
        assert!(fields(&schema("noop")).is_empty());
        // Nested definitions ($ref) are edited as JSON.
        assert_eq!(fields(&schema("switch")).iter().find(|f| f.name == "cases").map(|f| f.input), Some(Input::Json));
    }

    #[test]
    fn text_reads_back_into_values() {
        assert_eq!(read(Input::Number, "2.5", false), Ok(Some(Value::from(2.5))));
        assert_eq!(read(Input::Number, "two", false), Err(k("not a number")));
        assert_eq!(read(Input::List, "200, 201", true), Ok(Some(serde_json::json!([200, 201]))));
        assert_eq!(read(Input::Map, "a=1\nb = x", false), Ok(Some(serde_json::json!({"a": "1", "b": "x"}))));
        assert_eq!(read(Input::Map, "oops", false), Err(k("write one key=value a line")));
        assert_eq!(read(Input::Json, "", false), Ok(None));
        let v = serde_json::json!({"a": "1"});
        assert_eq!(read(Input::Map, &show(Input::Map, Some(&v)), false), Ok(Some(v)));
    }
}
