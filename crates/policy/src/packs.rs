//! Built-in packs: policy rules shipped in the binary, with typed parameters substituted
//! for `"${name}"` placeholders before the rules are read.

use crate::file::{Rule, Window};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

const PACKS: &[(&str, &str)] = &[
    ("production", include_str!("../packs/production.yaml")),
    ("read-only", include_str!("../packs/read-only.yaml")),
];

/// Names of the built-in packs.
pub fn names() -> impl Iterator<Item = &'static str> {
    PACKS.iter().map(|(n, _)| *n)
}

/// The YAML source of a built-in pack.
pub fn source(name: &str) -> Option<&'static str> {
    PACKS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    params: BTreeMap<String, ParamSpec>,
    rules: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamSpec {
    kind: ParamKind,
    #[serde(default)]
    default: Option<Value>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum ParamKind {
    /// A non-negative integer.
    Integer,
    /// A window name from the including file, or a window definition.
    Window,
}

/// A pack's rules with its parameters applied, plus windows its parameters defined inline.
pub(crate) struct Expanded {
    pub rules: Vec<Rule>,
    pub windows: Vec<(String, Window)>,
}

pub(crate) fn expand(pack: &str, with: &BTreeMap<String, Value>) -> Result<Expanded, String> {
    let text = source(pack).ok_or_else(|| {
        format!(
            "unknown pack `{pack}`; built-in packs: {}",
            names().collect::<Vec<_>>().join(", ")
        )
    })?;
    let file: PackFile =
        serde_norway::from_str(text).map_err(|e| format!("pack `{pack}` is malformed: {e}"))?;
    if let Some(unknown) = with.keys().find(|k| !file.params.contains_key(*k)) {
        let known: Vec<&str> = file.params.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        return Err(format!(
            "pack `{pack}` has no parameter `{unknown}` (it takes: {known})"
        ));
    }
    let mut values: BTreeMap<&str, Value> = BTreeMap::new();
    let mut windows = Vec::new();
    for (name, spec) in &file.params {
        let given = with
            .get(name)
            .filter(|v| !v.is_null())
            .or(spec.default.as_ref());
        let Some(given) = given else { continue };
        let value =
            match spec.kind {
                ParamKind::Integer => match given.as_u64() {
                    Some(_) => given.clone(),
                    None => return Err(format!(
                        "pack `{pack}`: with.{name}: expected a non-negative integer, got {given}"
                    )),
                },
                ParamKind::Window => match given {
                    Value::String(_) => given.clone(),
                    Value::Object(_) => {
                        let w: Window = serde_json::from_value(given.clone())
                            .map_err(|e| format!("pack `{pack}`: with.{name}: {e}"))?;
                        let window_name = format!("{pack}.{name}");
                        windows.push((window_name.clone(), w));
                        Value::String(window_name)
                    }
                    _ => return Err(format!(
                        "pack `{pack}`: with.{name}: expected a window name or a window definition"
                    )),
                },
            };
        values.insert(name.as_str(), value);
    }
    let mut rules = file.rules;
    substitute(&mut rules, &values, &file.params)
        .map_err(|e| format!("pack `{pack}` is malformed: {e}"))?;
    let rules: Vec<Rule> =
        serde_json::from_value(rules).map_err(|e| format!("pack `{pack}`: {e}"))?;
    Ok(Expanded { rules, windows })
}

fn placeholder(v: &Value) -> Option<&str> {
    v.as_str()?.strip_prefix("${")?.strip_suffix('}')
}

/// Replaces placeholders; a field whose parameter has no value is removed.
fn substitute(
    v: &mut Value,
    values: &BTreeMap<&str, Value>,
    params: &BTreeMap<String, ParamSpec>,
) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            let mut absent = Vec::new();
            for (key, item) in map.iter_mut() {
                if let Some(p) = placeholder(item) {
                    if !params.contains_key(p) {
                        return Err(format!("placeholder for undeclared parameter `{p}`"));
                    }
                    match values.get(p) {
                        Some(value) => *item = value.clone(),
                        None => absent.push(key.clone()),
                    }
                } else {
                    substitute(item, values, params)?;
                }
            }
            for key in absent {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                if placeholder(item).is_some() {
                    return Err("placeholders inside lists are not supported".into());
                }
                substitute(item, values, params)?;
            }
        }
        _ => {}
    }
    Ok(())
}
