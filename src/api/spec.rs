//! What the API's OpenAPI document says beyond what poem-openapi writes: the `X-Schema-Name`
//! header, the seed's trailing slashes, enum fields clients can generate, every error code,
//! standard date formats, and the rules across fields of a request body that OpenAPI can say
//! (`oneOf`, `anyOf`). The edge checks every documented JSON body against this document before
//! a handler sees it (`http::explain`), so what it says is what the server enforces.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::auth;
use crate::error::ErrorCode;

/// The `X-Schema-Name` header is read by the credential check ([`auth::Caller`]), which
/// poem-openapi documents only as security schemes: list it on every authenticated operation.
fn document_schema_header(doc: &mut Value) {
    let parameter = serde_json::json!({
        "name": auth::SCHEMA_HEADER,
        "in": "header",
        "required": false,
        "description": "The school, by schema name. Optional: the credential names it; when \
                        sent it must be the credential's school (403 otherwise, 404 when no \
                        school has that name).",
        "schema": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,62}$"}
    });
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let secured = operation
                .get("security")
                .and_then(|s| s.as_array())
                .is_some_and(|s| !s.is_empty());
            if !secured {
                continue;
            }
            let params = operation
                .as_object_mut()
                .expect("an operation is an object")
                .entry("parameters")
                .or_insert_with(|| serde_json::json!([]));
            if let Some(params) = params.as_array_mut() {
                params.push(parameter.clone());
            }
        }
    }
}

/// poem-openapi writes a described field of an enum type as `allOf: [{$ref: Enum},
/// {description}]`, which client generators refuse ("cannot take allOf a non-object":
/// openapi-python-client drops every schema holding one, and the operations using them). Such a
/// field becomes a plain `$ref` (`anyOf` of it when nullable), keeping its description beside it.
fn plain_enum_refs(doc: &mut Value) {
    let enums = enum_refs(doc);
    each_object(doc, &mut |map| {
        let enum_ref = match map.get("allOf").and_then(Value::as_array) {
            Some(parts) => parts
                .first()
                .and_then(|first| first.get("$ref"))
                .and_then(Value::as_str)
                .filter(|r| enums.contains(*r))
                .filter(|_| parts[1..].iter().all(|p| p.get("$ref").is_none()))
                .map(str::to_string),
            None => None,
        };
        if let Some(reference) = enum_ref {
            let description = map.remove("description");
            let nullable = map.get("nullable") == Some(&Value::Bool(true));
            map.clear();
            if nullable {
                // `nullable` beside a `$ref` means nothing in OpenAPI 3.0.
                map.insert("anyOf".into(), json!([{ "$ref": reference }]));
                map.insert("nullable".into(), true.into());
            } else {
                map.insert("$ref".into(), reference.into());
            }
            if let Some(description) = description {
                map.insert("description".into(), description);
            }
        }
    });
}

/// `$ref`s of the document's enum schemas (`#/components/schemas/Audience`).
fn enum_refs(doc: &Value) -> HashSet<String> {
    doc.pointer("/components/schemas")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, schema)| schema.get("enum").is_some())
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect()
}

/// Call `visit` on every object of the document, each before what it holds.
fn each_object(node: &mut Value, visit: &mut impl FnMut(&mut Map<String, Value>)) {
    match node {
        Value::Object(map) => {
            visit(map);
            map.values_mut().for_each(|v| each_object(v, visit));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| each_object(v, visit)),
        _ => {}
    }
}

/// The `ErrorCode` schema lists every code with what it means (poem-openapi writes an enum's
/// values only).
fn document_error_codes(doc: &mut Value) {
    let Some(schema) = doc
        .pointer_mut("/components/schemas/ErrorCode")
        .and_then(|s| s.as_object_mut())
    else {
        return;
    };
    let list: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|code| format!("- `{}`: {}", code.as_str(), code.meaning()))
        .collect();
    schema.insert(
        "description".into(),
        format!(
            "The stable `error` code of every error response: clients may switch on it. Codes \
             are only ever added.\n\n{}",
            list.join("\n")
        )
        .into(),
    );
}

/// poem-openapi writes chrono's `NaiveDate` as `format: naive-date`, which no client or
/// validator knows; it is JSON Schema's `date` (`2026-09-07`), which is what the server reads.
fn standard_formats(doc: &mut Value) {
    each_object(doc, &mut |map| {
        if map.get("format").and_then(Value::as_str) == Some("naive-date") {
            map.insert("format".into(), "date".into());
        }
    });
}

/// The bounds of Rust's integer types, which poem-openapi names only as a `format` (`uint32`)
/// that JSON Schema validators do not know: a `u32` cannot be negative.
fn integer_bounds(doc: &mut Value) {
    each_object(doc, &mut |map| {
        let bounds: Option<(i64, Option<u64>)> = match map.get("format").and_then(Value::as_str) {
            Some("int16") => Some((i16::MIN.into(), Some(i16::MAX as u64))),
            Some("int32") => Some((i32::MIN.into(), Some(i32::MAX as u64))),
            Some("uint16") => Some((0, Some(u16::MAX.into()))),
            Some("uint32") => Some((0, Some(u32::MAX.into()))),
            Some("uint64") => Some((0, None)),
            _ => None,
        };
        if let Some((low, high)) = bounds
            && map.get("type").and_then(Value::as_str) == Some("integer")
        {
            map.entry("minimum").or_insert(low.into());
            if let Some(high) = high {
                map.entry("maximum").or_insert(high.into());
            }
        }
    });
}

/// "Exactly one of" and "at least one of" rules of request bodies, which poem-openapi's types
/// cannot say: (schema, keyword, the fields of each alternative). Their fields are not nullable:
/// a client sends the one it means.
const RULES: &[(&str, &str, &[&str])] = &[
    ("GenerateReportsIn", "oneOf", &["class_id", "student_id"]),
    ("BatchReportsIn", "oneOf", &["class_id", "form"]),
    (
        "DeleteReportsIn",
        "oneOf",
        &["ids", "class_id", "older_than_days"],
    ),
    ("ChatbotResultsRequest", "oneOf", &["pin", "phone"]),
    (
        "WhatsAppNumberSecretsIn",
        "anyOf",
        &[
            "access_token",
            "app_secret",
            "verify_token",
            "account_sid",
            "auth_token",
            "broadcast_template",
        ],
    ),
];

fn cross_field_rules(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (name, keyword, fields) in RULES {
        let Some(schema) = schemas.get_mut(*name).and_then(Value::as_object_mut) else {
            continue;
        };
        let alternatives: Vec<Value> = fields.iter().map(|f| json!({ "required": [f] })).collect();
        schema.insert((*keyword).into(), Value::Array(alternatives));
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for field in *fields {
                if let Some(property) = properties.get_mut(*field).and_then(Value::as_object_mut) {
                    property.remove("nullable");
                }
            }
        }
        let rule = match *keyword {
            "oneOf" => "Send exactly one of",
            _ => "Send at least one of",
        };
        let names: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
        let description = schema
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_end()
            .to_string();
        schema.insert(
            "description".into(),
            format!("{description}\n\n{rule} {}.", names.join(", ")).into(),
        );
    }
}

/// poem-openapi reads `null` as "absent" for every optional field of a request body; the
/// document says so (`nullable`), except for the fields of the rules above.
fn nullable_optionals(doc: &mut Value) {
    let enums = enum_refs(doc);
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    else {
        return;
    };
    // Schemas a request body reaches.
    let mut reached: Vec<String> = Vec::new();
    let mut queue: Vec<&Value> = doc
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .filter_map(|op| op.pointer("/requestBody/content"))
        .filter_map(Value::as_object)
        .flat_map(|content| content.values())
        .collect();
    while let Some(node) = queue.pop() {
        match node {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    && !reached.iter().any(|n| n == name)
                    && let Some(target) = schemas.get(name)
                {
                    reached.push(name.to_string());
                    queue.push(target);
                }
                queue.extend(map.values());
            }
            Value::Array(items) => queue.extend(items),
            _ => {}
        }
    }

    let ruled = |schema: &str, field: &str| {
        RULES
            .iter()
            .any(|(name, _, fields)| *name == schema && fields.contains(&field))
    };
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for name in reached {
        let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) else {
            continue;
        };
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (field, property) in properties.iter_mut() {
            if required.contains(field) || ruled(&name, field) {
                continue;
            }
            let Some(map) = property.as_object_mut() else {
                continue;
            };
            if let Some(reference) = map.remove("$ref") {
                // `nullable` beside a `$ref` means nothing in OpenAPI 3.0.
                let wrapper = if reference.as_str().is_some_and(|r| enums.contains(r)) {
                    "anyOf"
                } else {
                    "allOf"
                };
                map.insert(wrapper.into(), json!([{ "$ref": reference }]));
            }
            map.insert("nullable".into(), true.into());
        }
    }
}

/// The languages a school's replies may be written in are those the bot has texts for.
fn reply_languages(doc: &mut Value) {
    let languages = crate::conversation::texts().languages();
    if let Some(field) =
        doc.pointer_mut("/components/schemas/SchoolPatch/properties/default_language")
        && let Some(map) = field.as_object_mut()
    {
        map.insert("enum".into(), json!(languages));
    }
}

/// poem-openapi writes an event stream as an array of its events; what a client reads is one
/// event at a time, `event` naming it and `data` holding the event as JSON (as OpenAPI 3.2
/// and schemathesis describe Server-Sent Events).
fn event_streams(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for response in responses.values_mut() {
            let Some(schema) = response.pointer_mut("/content/text~1event-stream/schema") else {
                continue;
            };
            if schema.get("format").and_then(Value::as_str) != Some("event-stream") {
                continue;
            }
            let Some(event) = schema.get("items").cloned() else {
                continue;
            };
            *schema = json!({
                "type": "object",
                "description": "One event: `event` is its name, `data` the event as JSON.",
                "required": ["data"],
                "properties": {
                    "event": {"type": "string"},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": event,
                    },
                    "id": {"type": "string"},
                    "retry": {"type": "integer"},
                },
            });
        }
    }
}

/// The error code a refused field gets (`x-error-code`, read by the edge's check of request
/// bodies), so that a phone the document refuses is `invalid_phone` as it was when only the
/// handler checked it: (schema, field, code); an empty field is the schema's own rules.
const FIELD_CODES: &[(&str, &str, ErrorCode)] = &[
    ("InboundMessage", "phone", ErrorCode::InvalidPhone),
    ("InboundMessage", "channel", ErrorCode::InvalidChannel),
    ("InboundMessage", "text", ErrorCode::TextTooLong),
    ("ChatbotResultsRequest", "", ErrorCode::InvalidProof),
    ("ChatbotResultsRequest", "phone", ErrorCode::InvalidPhone),
    ("ChatbotResultsRequest", "pin", ErrorCode::InvalidPin),
    (
        "ChatbotResultsRequest",
        "student_id",
        ErrorCode::InvalidStudentId,
    ),
    ("WelcomeMessageIn", "body", ErrorCode::InvalidBody),
    ("NoticeIn", "title", ErrorCode::InvalidNotice),
    ("NoticeIn", "body", ErrorCode::InvalidNotice),
    ("EngagementReportIn", "slug", ErrorCode::InvalidSlug),
    ("AcademicSessionIn", "name", ErrorCode::InvalidName),
    ("TermIn", "name", ErrorCode::InvalidName),
    ("ClassIn", "name", ErrorCode::InvalidName),
    ("ClassIn", "form", ErrorCode::InvalidName),
    ("SubjectIn", "name", ErrorCode::InvalidName),
    ("SubjectIn", "code", ErrorCode::InvalidCode),
    ("ExamSessionIn", "name", ErrorCode::InvalidName),
    ("SchoolPatch", "name", ErrorCode::InvalidName),
    ("SchoolPatch", "time_zone", ErrorCode::InvalidTimeZone),
    (
        "SchoolPatch",
        "default_language",
        ErrorCode::InvalidLanguage,
    ),
    ("SchoolPatch", "contact_phone", ErrorCode::InvalidPhone),
    ("SchoolPatch", "contact_email", ErrorCode::InvalidEmail),
    ("ReplyIn", "text", ErrorCode::EmptyReply),
    ("DocumentIn", "url", ErrorCode::InvalidUrl),
    ("GenerateReportsIn", "", ErrorCode::InvalidFilter),
    ("BatchReportsIn", "", ErrorCode::InvalidFilter),
    ("BatchReportsIn", "form", ErrorCode::InvalidFilter),
    (
        "GenerateReportsIn",
        "student_id",
        ErrorCode::InvalidStudentId,
    ),
    ("DeleteReportsIn", "", ErrorCode::InvalidFilter),
    ("DeleteReportsIn", "ids", ErrorCode::InvalidFilter),
    ("WhatsAppNumberSecretsIn", "", ErrorCode::NothingToChange),
];

/// The same for parameters: (path, parameter, code) on every operation of the path; `page`
/// and `page_size` everywhere.
const PARAMETER_CODES: &[(&str, &str, ErrorCode)] = &[
    ("/students/", "phone", ErrorCode::InvalidPhone),
    ("/contacts/", "phone", ErrorCode::InvalidPhone),
    ("/conversations/", "phone", ErrorCode::InvalidPhone),
    ("/contacts/{id}/", "id", ErrorCode::InvalidPhone),
    ("/contacts/{id}/export/", "id", ErrorCode::InvalidPhone),
    ("/conversations/", "student_id", ErrorCode::InvalidStudentId),
    ("/results/", "student_id", ErrorCode::InvalidStudentId),
];

fn error_codes_of_fields(doc: &mut Value) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            for parameter in item
                .as_object_mut()
                .into_iter()
                .flat_map(|ops| ops.values_mut())
                .filter_map(|op| op.get_mut("parameters"))
                .filter_map(Value::as_array_mut)
                .flatten()
            {
                let name = parameter
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let code = match name {
                    "page" => Some(ErrorCode::InvalidPage),
                    "page_size" => Some(ErrorCode::InvalidPageSize),
                    _ => PARAMETER_CODES
                        .iter()
                        .find(|(p, n, _)| {
                            p.trim_end_matches('/') == path.trim_end_matches('/') && *n == name
                        })
                        .map(|(_, _, code)| *code),
                };
                if let Some(code) = code
                    && let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut)
                {
                    schema.insert("x-error-code".into(), code.as_str().into());
                }
            }
        }
    }
    for (schema, field, code) in FIELD_CODES {
        let pointer = if field.is_empty() {
            format!("/components/schemas/{schema}")
        } else {
            format!("/components/schemas/{schema}/properties/{field}")
        };
        if let Some(map) = doc.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            map.insert("x-error-code".into(), code.as_str().into());
        }
    }
}

/// The document as served and committed: poem-openapi's, with the passes above.
pub(super) fn finish(spec: &str) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(spec).expect("poem-openapi produces valid JSON");
    document_schema_header(&mut doc);
    plain_enum_refs(&mut doc);
    document_error_codes(&mut doc);
    standard_formats(&mut doc);
    integer_bounds(&mut doc);
    cross_field_rules(&mut doc);
    nullable_optionals(&mut doc);
    reply_languages(&mut doc);
    event_streams(&mut doc);
    error_codes_of_fields(&mut doc);
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        let renamed: serde_json::Map<String, serde_json::Value> = std::mem::take(paths)
            .into_iter()
            .map(|(path, item)| {
                let path = if path.ends_with('/') {
                    path
                } else {
                    format!("{path}/")
                };
                (path, item)
            })
            .collect();
        *paths = renamed;
    }
    let mut out = serde_json::to_string_pretty(&doc).expect("a JSON value serialises");
    out.push('\n');
    out
}
