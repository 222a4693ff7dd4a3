//! Outbound messages, rich where the channel allows (WhatsApp buttons and lists, documents) and
//! degraded to numbered text where it does not (Twilio, the terminal).

use serde::{Deserialize, Serialize};

/// WhatsApp shows at most 3 reply buttons.
pub const MAX_BUTTONS: usize = 3;
/// WhatsApp lists hold at most 10 rows.
pub const MAX_LIST_ROWS: usize = 10;

/// One choice offered to the user; `id` comes back when it is tapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// Stable id, e.g. `menu:results`, `child:42`.
    pub id: String,
    /// What the user sees.
    pub label: String,
}

/// A message the bot sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Plain text.
    Text {
        /// Body.
        text: String,
    },
    /// Text with choices: buttons (up to 3) or a list (up to 10) on WhatsApp.
    Choices {
        /// Body.
        text: String,
        /// Label of the button that opens a list.
        button: String,
        /// The choices, at most [`MAX_LIST_ROWS`].
        choices: Vec<Choice>,
    },
    /// A document to download (report cards).
    Document {
        /// Signed link.
        url: String,
        /// File name shown.
        filename: String,
        /// Caption.
        caption: String,
    },
}

/// How a WhatsApp channel shows a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Plain text.
    Text,
    /// Reply buttons.
    Buttons,
    /// A list message.
    List,
    /// A document message.
    Document,
}

impl Reply {
    /// Plain text reply.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    /// Its kind in the message log: `text`, `choices` or `document`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Choices { .. } => "choices",
            Self::Document { .. } => "document",
        }
    }

    /// The WhatsApp shape this reply takes.
    pub fn shape(&self) -> Shape {
        match self {
            Self::Text { .. } => Shape::Text,
            Self::Choices { choices, .. } if choices.len() <= MAX_BUTTONS => Shape::Buttons,
            Self::Choices { .. } => Shape::List,
            Self::Document { .. } => Shape::Document,
        }
    }

    /// The reply as text for channels without buttons: choices become a numbered list.
    pub fn to_plain(&self) -> String {
        match self {
            Self::Text { text } => text.clone(),
            Self::Choices { text, choices, .. } => {
                let mut out = text.trim_end().to_string();
                out.push('\n');
                for (i, c) in choices.iter().enumerate() {
                    out.push_str(&format!("\n{}. {}", i + 1, c.label));
                }
                out
            }
            Self::Document { url, caption, .. } => format!("{caption}\n{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(n: usize) -> Reply {
        Reply::Choices {
            text: "Pick one".into(),
            button: "Options".into(),
            choices: (1..=n)
                .map(|i| Choice {
                    id: format!("c:{i}"),
                    label: format!("Option {i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn shapes_follow_whatsapp_limits() {
        assert_eq!(Reply::text("hi").shape(), Shape::Text);
        assert_eq!(choices(3).shape(), Shape::Buttons);
        assert_eq!(choices(4).shape(), Shape::List);
    }

    #[test]
    fn plain_text_numbers_the_choices() {
        assert_eq!(
            choices(2).to_plain(),
            "Pick one\n\n1. Option 1\n2. Option 2"
        );
    }
}
