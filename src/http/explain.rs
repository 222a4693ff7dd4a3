//! What is wrong with a JSON body the API refused, in words a person understands.
//!
//! poem-openapi refuses a body that does not fit its type with the parser's words and the
//! type's name (`Expected input type "string", found null. (occurred while parsing
//! "WelcomeMessageIn")`), never the field's. The OpenAPI document says what each operation
//! takes, so the edge reads the refused body against it and names the first field at fault:
//! ``the field `body` must be text, but it is null``.

use std::collections::HashMap;

use poem::http::Method;
use serde_json::{Map, Value, json};

/// What is wrong with a body: the message, and the error code the document gives the schema at
/// fault (`x-error-code`; none: `bad_request`).
#[derive(Debug, PartialEq)]
pub struct Problem {
    /// The stable error code, as the document writes it.
    pub code: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

/// Marks a problem's error code while it travels up as text (not a character JSON can carry).
const CODED: &str = "\u{0}";
/// Marks a problem of shape (a missing field, a wrong type, `null`): `bad_request` whatever
/// the field, as poem-openapi answers them, so a field's code is only for its own rules.
const TYPED: &str = "\u{1}";

/// A problem of shape: see [`TYPED`].
fn typed(message: String) -> Option<String> {
    Some(format!("{TYPED}{message}"))
}

/// A documented parameter: its name, its place (`query`, `path`) and its schema.
type Parameter = (String, String, Value);

/// The JSON request bodies the API documents, by method and path template.
#[derive(Default)]
pub struct BodySchemas {
    components: Map<String, Value>,
    /// (path segments, `{...}` matching any one; method; the body's schema).
    operations: Vec<(Vec<String>, Method, Value)>,
    /// (path segments; method; each parameter of the operation).
    parameters: Vec<(Vec<String>, Method, Vec<Parameter>)>,
    regexes: HashMap<String, regex::Regex>,
}

impl BodySchemas {
    /// Read them from the OpenAPI document (`base` is prefixed to its paths).
    pub fn from_spec(spec: &str, base: &str) -> Self {
        let Ok(doc) = serde_json::from_str::<Value>(spec) else {
            return Self::default();
        };
        let components = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut operations = Vec::new();
        let mut parameters = Vec::new();
        let mut regexes = HashMap::new();
        for (path, item) in doc
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                    continue;
                };
                let json = operation
                    .pointer("/requestBody/content")
                    .and_then(Value::as_object)
                    .and_then(|content| {
                        content
                            .iter()
                            .find(|(kind, _)| kind.starts_with("application/json"))
                    })
                    .and_then(|(_, media)| media.get("schema"));
                let params: Vec<Parameter> = operation
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        Some((
                            p.get("name")?.as_str()?.to_string(),
                            p.get("in")?.as_str()?.to_string(),
                            p.get("schema")?.clone(),
                        ))
                    })
                    .collect();
                for (_, _, schema) in &params {
                    collect_patterns(schema, &mut regexes);
                }
                parameters.push((segments(&format!("{base}{path}")), method.clone(), params));
                if let Some(schema) = json {
                    operations.push((segments(&format!("{base}{path}")), method, schema.clone()));
                }
            }
        }
        collect_patterns(&Value::Object(components.clone()), &mut regexes);
        for (_, _, schema) in &operations {
            collect_patterns(schema, &mut regexes);
        }
        Self {
            components,
            operations,
            parameters,
            regexes,
        }
    }

    /// Why `body` does not fit what `method path` takes; `None` when this is not a documented
    /// JSON body or nothing is found wrong with it.
    pub fn explain(&self, method: &Method, path: &str, body: &[u8]) -> Option<Problem> {
        Some(Self::decoded(self.find(method, path, body)?))
    }

    /// Why the parameter `name` of `method path` (with `query`) was refused, in words; `None`
    /// when the operation or the parameter is not documented.
    pub fn explain_parameter(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        name: &str,
    ) -> Option<Problem> {
        let parts = segments(path);
        let (template, _, params) = self
            .parameters
            .iter()
            .find(|(template, m, _)| m == method && matches(template, &parts))?;
        let (_, place, schema) = params.iter().find(|(n, _, _)| n == name)?;
        let raw = match place.as_str() {
            "path" => template
                .iter()
                .position(|t| t.trim_matches(['{', '}']) == name)
                .and_then(|i| parts.get(i))
                .map(|p| percent_decoded(p)),
            _ => query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            }),
        };
        let at = Place::Parameter(format!("{place} parameter `{name}`"));
        let found = match raw {
            None => format!("{} is missing: it is required", at.subject()),
            Some(raw) => {
                let resolved = self.resolve(schema);
                let value = match resolved.get("type").and_then(Value::as_str) {
                    Some("integer") => match raw.trim().parse::<i64>() {
                        Ok(n) => Value::from(n),
                        Err(_) => {
                            return Some(Problem {
                                code: None,
                                message: format!(
                                    "{} must be a whole number, not {}",
                                    at.subject(),
                                    shown(&Value::String(raw))
                                ),
                            });
                        }
                    },
                    Some("boolean") => match raw.as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        _ => {
                            return Some(Problem {
                                code: None,
                                message: format!("{} must be `true` or `false`", at.subject()),
                            });
                        }
                    },
                    _ => Value::String(raw),
                };
                self.check(schema, Some(&value), &at)?
            }
        };
        Some(Self::decoded(found))
    }

    fn decoded(found: String) -> Problem {
        if let Some(message) = found.strip_prefix(TYPED) {
            return Problem {
                code: None,
                message: message.to_string(),
            };
        }
        match found
            .strip_prefix(CODED)
            .and_then(|rest| rest.split_once(CODED))
        {
            Some((code, message)) => Problem {
                code: Some(code.to_string()),
                message: message.to_string(),
            },
            None => Problem {
                code: None,
                message: found,
            },
        }
    }

    fn find(&self, method: &Method, path: &str, body: &[u8]) -> Option<String> {
        let parts = segments(path);
        let (_, _, schema) = self
            .operations
            .iter()
            .find(|(template, m, _)| m == method && matches(template, &parts))?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Some("the request has no body: send a JSON object".to_string());
        }
        let value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(e) => {
                return Some(format!(
                    "the body is not valid JSON (line {}, column {}: {})",
                    e.line(),
                    e.column(),
                    without_position(&e.to_string())
                ));
            }
        };
        self.check(schema, Some(&value), &Place::Body)
    }

    /// Whether a request the edge is about to pass on breaks what its operation documents:
    /// the reason, for a non-empty JSON body of a documented operation.
    pub fn refuse(
        &self,
        method: &Method,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<Problem> {
        let json = content_type.is_some_and(|c| {
            let c = c.trim_start().to_ascii_lowercase();
            c.starts_with("application/json")
        });
        if !json || body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        self.explain(method, path, body)
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut schema = schema;
        for _ in 0..16 {
            match schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .and_then(|name| self.components.get(name))
            {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    /// The first thing wrong with `value` (absent: `None`) against `schema`, at `place`, with
    /// the error code of the innermost schema naming one (`x-error-code`).
    fn check(&self, schema: &Value, value: Option<&Value>, place: &Place) -> Option<String> {
        let problem = self.check_here(schema, value, place)?;
        if problem.starts_with(CODED) || problem.starts_with(TYPED) {
            return Some(problem);
        }
        let code = schema
            .get("x-error-code")
            .or_else(|| self.resolve(schema).get("x-error-code"))
            .and_then(Value::as_str);
        Some(match code {
            Some(code) => format!("{CODED}{code}{CODED}{problem}"),
            None => problem,
        })
    }

    fn check_here(&self, schema: &Value, value: Option<&Value>, place: &Place) -> Option<String> {
        let schema = self.resolve(schema);
        let value = value?;
        if value.is_null() && nullable(schema) {
            return None;
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            for part in parts {
                if let Some(problem) = self.check(part, Some(value), place) {
                    return Some(problem);
                }
            }
        }
        if let Some(problem) = self.check_discriminated(schema, value, place) {
            return problem;
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                if value.is_null() && nullable(schema) {
                    return None;
                }
                match alternatives(key, options, value, place) {
                    Some(Some(problem)) => return Some(problem),
                    Some(None) => continue,
                    None => {}
                }
                let fits: Vec<Option<String>> = options
                    .iter()
                    .map(|option| self.check(option, Some(value), place))
                    .collect();
                let fitting = fits.iter().filter(|p| p.is_none()).count();
                if fitting == 0 {
                    // The option that got furthest is the likeliest meant: its problem is the
                    // deepest one (the longest message names the most).
                    return fits.into_iter().flatten().max_by_key(String::len);
                }
                if key == "oneOf" && fitting > 1 {
                    return Some(format!(
                        "{} fits more than one of the forms it may take: send exactly one of \
                         the alternatives",
                        place.subject()
                    ));
                }
            }
        }
        if value.is_null() {
            if nullable(schema) || schema.get("type").is_none() {
                return None;
            }
            return typed(format!(
                "{} must be {}, but it is null",
                place.subject(),
                kind(schema)
            ));
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                let names: Vec<String> =
                    allowed.iter().map(|v| format!("`{}`", plain(v))).collect();
                return Some(format!(
                    "{} must be one of {}, not {}",
                    place.subject(),
                    names.join(", "),
                    shown(value)
                ));
            }
            return None;
        }
        let Some(kind_name) = schema.get("type").and_then(Value::as_str) else {
            // A schema of constraints only (an alternative of a rule): an object's fields.
            return match value {
                Value::Object(fields)
                    if schema.get("required").is_some() || schema.get("properties").is_some() =>
                {
                    self.check_object(schema, fields, place)
                }
                _ => None,
            };
        };
        let fits = match kind_name {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => true,
        };
        if !fits {
            return typed(format!(
                "{} must be {}, but it is {}",
                place.subject(),
                kind(schema),
                shown(value)
            ));
        }
        match value {
            Value::Object(fields) => self.check_object(schema, fields, place),
            Value::Array(items) => {
                let count = items.len() as u64;
                if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                    && count < min
                {
                    return Some(format!("{} needs at least {min} item(s)", place.subject()));
                }
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && count > max
                {
                    return Some(format!("{} takes at most {max} item(s)", place.subject()));
                }
                let item_schema = schema.get("items")?;
                items
                    .iter()
                    .enumerate()
                    .find_map(|(i, item)| self.check(item_schema, Some(item), &place.item(i)))
            }
            Value::String(text) => self.check_text(schema, text, place),
            Value::Number(number) => check_number(schema, number, place),
            _ => None,
        }
    }

    /// A `oneOf` with a discriminator: the alternative the discriminating field names.
    /// `None` when the schema has none; `Some(None)` when the value fits.
    fn check_discriminated(
        &self,
        schema: &Value,
        value: &Value,
        place: &Place,
    ) -> Option<Option<String>> {
        let discriminator = schema.get("discriminator")?;
        let field = discriminator.get("propertyName").and_then(Value::as_str)?;
        let mapping = discriminator.get("mapping").and_then(Value::as_object)?;
        let Value::Object(fields) = value else {
            return Some(typed(format!(
                "{} must be an object, but it is {}",
                place.subject(),
                shown(value)
            )));
        };
        let names: Vec<String> = mapping.keys().map(|k| format!("`{k}`")).collect();
        let Some(chosen) = fields.get(field) else {
            return Some(typed(format!(
                "{} is missing: it is required (one of {})",
                place.field(field).subject(),
                names.join(", ")
            )));
        };
        let Some(target) = chosen.as_str().and_then(|c| mapping.get(c)) else {
            return Some(typed(format!(
                "{} must be one of {}, not {}",
                place.field(field).subject(),
                names.join(", "),
                shown(chosen)
            )));
        };
        Some(self.check(&json!({ "$ref": target }), Some(value), place))
    }

    fn check_object(
        &self,
        schema: &Value,
        fields: &Map<String, Value>,
        place: &Place,
    ) -> Option<String> {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !fields.contains_key(name) {
                let field = place.field(name);
                let what = properties
                    .and_then(|p| p.get(name))
                    .map(|s| kind(self.resolve(s)))
                    .unwrap_or("a value");
                return typed(format!(
                    "{} is missing: it is required ({what}){}",
                    field.subject(),
                    described(properties.and_then(|p| p.get(name)))
                ));
            }
        }
        for (name, value) in fields {
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => {
                    if let Some(problem) = self.check(field_schema, Some(value), &place.field(name))
                    {
                        return Some(problem);
                    }
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    let known: Vec<String> = properties
                        .map(|p| p.keys().map(|k| format!("`{k}`")).collect())
                        .unwrap_or_default();
                    return typed(format!(
                        "`{name}` is not a field of {} (its fields: {})",
                        place.whose(),
                        known.join(", ")
                    ));
                }
                None => {
                    if let Some(extra) =
                        schema.get("additionalProperties").filter(|s| s.is_object())
                        && let Some(problem) = self.check(extra, Some(value), &place.field(name))
                    {
                        return Some(problem);
                    }
                }
            }
        }
        None
    }

    fn check_text(&self, schema: &Value, text: &str, place: &Place) -> Option<String> {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            return Some(if min == 1 {
                format!("{} must not be empty", place.subject())
            } else {
                format!("{} must be at least {min} characters", place.subject())
            });
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            return Some(format!(
                "{} must be at most {max} characters (it has {length})",
                place.subject()
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && let Some(regex) = self.regexes.get(pattern)
            && !regex.is_match(text)
        {
            return Some(format!(
                "{} is not in the form it must take (the pattern `{pattern}`){}",
                place.subject(),
                described(Some(schema))
            ));
        }
        let format_fits = match schema.get("format").and_then(Value::as_str) {
            Some("naive-date" | "date") => {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
            }
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            _ => true,
        };
        if !format_fits {
            let example = match schema.get("format").and_then(Value::as_str) {
                Some("date-time") => "a date and time such as `2026-09-07T08:00:00Z`",
                _ => "a date such as `2026-09-07`",
            };
            return Some(format!(
                "{} must be {example}, not {}",
                place.subject(),
                shown(&Value::String(text.to_string()))
            ));
        }
        None
    }
}

/// A rule over which fields are sent (alternatives of `required` only): "exactly one of" for
/// `oneOf`, "at least one of" for `anyOf`. `None` when the alternatives are of another kind;
/// `Some(None)` when the value keeps the rule.
fn alternatives(
    key: &str,
    options: &[Value],
    value: &Value,
    place: &Place,
) -> Option<Option<String>> {
    let mut fields = Vec::new();
    for option in options {
        let map = option.as_object()?;
        if map.len() != 1 {
            return None;
        }
        let [field] = map.get("required")?.as_array()?.as_slice() else {
            return None;
        };
        fields.push(field.as_str()?);
    }
    let object = value.as_object()?;
    let sent: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| object.contains_key(*f))
        .collect();
    let names: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
    let whose = match place {
        Place::Body => String::new(),
        Place::Field(path) => format!(" in `{path}`"),
        Place::Parameter(what) => format!(" in the {what}"),
    };
    Some(match (key, sent.len()) {
        (_, 0) if key == "oneOf" => Some(format!(
            "send one of {}{whose}: none was sent",
            names.join(", ")
        )),
        (_, 0) => Some(format!(
            "send at least one of {}{whose}: none was sent",
            names.join(", ")
        )),
        ("oneOf", n) if n > 1 => Some(format!(
            "send only one of {}{whose}: it has {}",
            names.join(", "),
            sent.iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(" and ")
        )),
        _ => None,
    })
}

fn check_number(schema: &Value, number: &serde_json::Number, place: &Place) -> Option<String> {
    let n = number.as_f64()?;
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(min) = bound("minimum")
        && n < min
    {
        return Some(format!(
            "{} must be at least {}",
            place.subject(),
            trim(min)
        ));
    }
    if let Some(max) = bound("maximum")
        && n > max
    {
        return Some(format!("{} must be at most {}", place.subject(), trim(max)));
    }
    let (low, high) = match schema.get("format").and_then(Value::as_str) {
        Some("int16") => (i16::MIN as f64, i16::MAX as f64),
        Some("int32") => (i32::MIN as f64, i32::MAX as f64),
        Some("uint32") => (0.0, u32::MAX as f64),
        Some("uint64") => (0.0, u64::MAX as f64),
        _ => (f64::MIN, f64::MAX),
    };
    if n < low || n > high {
        return Some(format!(
            "{} must be between {} and {}",
            place.subject(),
            trim(low),
            trim(high)
        ));
    }
    None
}

/// Where in the body a value is.
enum Place {
    Body,
    Field(String),
    /// "query parameter `phone`".
    Parameter(String),
}

impl Place {
    fn field(&self, name: &str) -> Place {
        match self {
            Place::Body => Place::Field(name.to_string()),
            Place::Field(path) => Place::Field(format!("{path}.{name}")),
            Place::Parameter(what) => Place::Parameter(format!("{what}, field `{name}`")),
        }
    }

    fn item(&self, index: usize) -> Place {
        match self {
            Place::Body => Place::Field(format!("[{index}]")),
            Place::Field(path) => Place::Field(format!("{path}[{index}]")),
            Place::Parameter(what) => Place::Parameter(format!("{what}, item {index}")),
        }
    }

    fn subject(&self) -> String {
        match self {
            Place::Body => "the body".to_string(),
            Place::Field(path) => format!("the field `{path}`"),
            Place::Parameter(what) => format!("the {what}"),
        }
    }

    fn whose(&self) -> String {
        match self {
            Place::Body => "this request".to_string(),
            Place::Field(path) => format!("`{path}`"),
            Place::Parameter(what) => format!("the {what}"),
        }
    }
}

/// Whether a path's segments fit a template's (`{...}` fits any one segment).
pub(super) fn matches(template: &[String], parts: &[String]) -> bool {
    template.len() == parts.len()
        && template
            .iter()
            .zip(parts)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

/// A path segment as the handler reads it (`%2B` is `+`).
fn percent_decoded(segment: &str) -> String {
    let query = format!("x={}", segment.replace('+', "%2B"));
    form_urlencoded::parse(query.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A path's non-empty segments (`/a/{id}/` and `/a/7` alike).
pub(super) fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn collect_patterns(node: &Value, into: &mut HashMap<String, regex::Regex>) {
    match node {
        Value::Object(map) => {
            if let Some(pattern) = map.get("pattern").and_then(Value::as_str)
                && !into.contains_key(pattern)
                && let Ok(regex) = regex::Regex::new(pattern)
            {
                into.insert(pattern.to_string(), regex);
            }
            map.values().for_each(|v| collect_patterns(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_patterns(v, into)),
        _ => {}
    }
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable") == Some(&Value::Bool(true))
}

/// What a schema takes, in words.
fn kind(schema: &Value) -> &'static str {
    if schema.get("enum").is_some() {
        return "one of its listed values";
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => match schema.get("format").and_then(Value::as_str) {
            Some("naive-date" | "date") => "a date (`YYYY-MM-DD`)",
            Some("date-time") => "a date and time (RFC 3339)",
            _ => "text",
        },
        Some("integer") => "a whole number",
        Some("number") => "a number",
        Some("boolean") => "true or false",
        Some("array") => "a list",
        Some("object") => "an object",
        _ => "a value",
    }
}

/// A value as the message shows it: its kind, and short values themselves.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the text {:?}", s),
        Value::String(_) => "a text".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// ": <the field's description>" when the document has one.
fn described(schema: Option<&Value>) -> String {
    schema
        .and_then(|s| s.get("description"))
        .and_then(Value::as_str)
        .map(|d| format!(": {}", d.trim_end_matches('.')))
        .unwrap_or_default()
}

fn trim(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// serde_json's message without its " at line L column C" tail (said separately).
fn without_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> BodySchemas {
        let spec = serde_json::json!({
            "paths": {
                "/welcome/": {"post": {"requestBody": {"content": {"application/json; charset=utf-8": {
                    "schema": {"$ref": "#/components/schemas/In"}}}}}},
                "/items/{id}/": {"put": {"requestBody": {"content": {"application/json": {
                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/In"}}}}}}}
            },
            "components": {"schemas": {
                "Kind": {"type": "string", "enum": ["a", "b"]},
                "In": {"type": "object", "additionalProperties": false, "required": ["body"], "properties": {
                    "body": {"type": "string", "minLength": 1, "maxLength": 5, "description": "What it says."},
                    "phone": {"type": "string", "pattern": "^\\+[1-9][0-9]{7,14}$", "x-error-code": "invalid_phone"},
                    "count": {"type": "integer", "format": "int16", "minimum": 1.0},
                    "kind": {"$ref": "#/components/schemas/Kind"},
                    "on": {"type": "string", "format": "naive-date", "nullable": true}
                }}
            }}
        });
        BodySchemas::from_spec(&spec.to_string(), "/api")
    }

    fn explain(path: &str, body: &str) -> Option<String> {
        let method = if path.starts_with("/api/items") {
            Method::PUT
        } else {
            Method::POST
        };
        schemas()
            .explain(&method, path, body.as_bytes())
            .map(|p| p.message)
    }

    #[test]
    fn names_the_field_at_fault_in_words() {
        let cases = [
            (
                r#"{"body": null}"#,
                "the field `body` must be text, but it is null",
            ),
            (
                "{}",
                "the field `body` is missing: it is required (text): What it says",
            ),
            (r#"{"body": ""}"#, "the field `body` must not be empty"),
            (
                r#"{"body": "too long"}"#,
                "the field `body` must be at most 5 characters (it has 8)",
            ),
            (
                r#"{"body": 7}"#,
                "the field `body` must be text, but it is the number 7",
            ),
            (
                r#"{"body": "hi", "phone": "0803"}"#,
                "the field `phone` is not in the form it must take",
            ),
            (
                r#"{"body": "hi", "count": "3"}"#,
                "the field `count` must be a whole number, but it is the text \"3\"",
            ),
            (
                r#"{"body": "hi", "count": 0}"#,
                "the field `count` must be at least 1",
            ),
            (
                r#"{"body": "hi", "count": 70000}"#,
                "the field `count` must be between -32768 and 32767",
            ),
            (
                r#"{"body": "hi", "kind": "c"}"#,
                "the field `kind` must be one of `a`, `b`, not the text \"c\"",
            ),
            (
                r#"{"body": "hi", "on": "7 May"}"#,
                "the field `on` must be a date such as `2026-09-07`",
            ),
            (
                r#"{"body": "hi", "colour": 1}"#,
                "`colour` is not a field of this request (its fields: `body`, `phone`",
            ),
            (
                r#"{"body": "hi""#,
                "the body is not valid JSON (line 1, column 13: EOF while parsing an object)",
            ),
            ("", "the request has no body: send a JSON object"),
            ("[1]", "the body must be an object, but it is a list"),
        ];
        for (body, expected) in cases {
            let got = explain("/api/welcome", body).unwrap_or_default();
            assert!(got.starts_with(expected), "{body}: {got}");
        }
        assert_eq!(
            explain("/api/welcome", r#"{"body": "hi", "on": null}"#),
            None
        );
        assert_eq!(
            explain("/api/items/3/", r#"[{"body": "ok"}, {"body": 1}]"#).as_deref(),
            Some("the field `[1].body` must be text, but it is the number 1")
        );
        assert_eq!(explain("/api/unknown", "{}"), None, "not a documented body");
        let code = |body: &str| {
            schemas()
                .explain(&Method::POST, "/api/welcome", body.as_bytes())
                .and_then(|p| p.code)
        };
        assert_eq!(
            code(r#"{"body": "hi", "phone": "0803"}"#).as_deref(),
            Some("invalid_phone"),
            "a field's own rule carries its code"
        );
        assert_eq!(
            code(r#"{"body": "hi", "phone": null}"#),
            None,
            "a problem of shape is bad_request"
        );
    }
}
