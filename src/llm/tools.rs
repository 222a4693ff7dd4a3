//! The tools offered to the model. Each one starts a menu flow of the rules engine, which checks
//! that a child the model names is one this phone may see: the model chooses, the rules act.

use serde_json::{Value, json};

use crate::conversation::Action;

/// (name, description, takes a student) of every tool.
const TOOLS: [(&str, &str, bool); 6] = [
    (
        "show_results",
        "Show a child's released exam results (the school's own figures, per subject).",
        true,
    ),
    (
        "show_attendance",
        "Show a child's attendance for a term.",
        true,
    ),
    (
        "send_report_card",
        "Send a child's report card as a PDF.",
        true,
    ),
    ("show_notices", "Show the school's current notices.", false),
    (
        "add_child",
        "Verify another child for this phone with the child's student ID and PIN.",
        false,
    ),
    ("open_menu", "Show the main menu.", false),
];

/// The tools as OpenAI function tools.
pub fn definitions() -> Vec<Value> {
    TOOLS
        .iter()
        .map(|(name, description, student)| {
            let parameters = if *student {
                json!({
                    "type": "object",
                    "properties": {"student_id": {
                        "type": "string",
                        "description": "The child's student_id from <children>; omit to ask the parent which child."
                    }},
                    "additionalProperties": false
                })
            } else {
                json!({"type": "object", "properties": {}, "additionalProperties": false})
            };
            json!({"type": "function", "function": {
                "name": name, "description": description, "parameters": parameters
            }})
        })
        .collect()
}

/// The action a tool call asks for; `None` for a tool that does not exist.
pub fn action(name: &str, arguments: &Value) -> Option<Action> {
    let student = || {
        arguments
            .get("student_id")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(128).collect::<String>())
    };
    Some(match name {
        "show_results" => Action::Results(student()),
        "show_attendance" => Action::Attendance(student()),
        "send_report_card" => Action::Report(student()),
        "show_notices" => Action::Notices,
        "add_child" => Action::AddChild,
        "open_menu" => Action::Menu,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_offered_maps_to_an_action() {
        for tool in definitions() {
            let name = tool["function"]["name"].as_str().unwrap();
            assert!(action(name, &json!({})).is_some(), "{name}");
        }
        assert_eq!(action("drop_tables", &json!({})), None);
        assert_eq!(
            action("show_results", &json!({"student_id": "DEMO/001"})),
            Some(Action::Results(Some("DEMO/001".into())))
        );
    }
}
