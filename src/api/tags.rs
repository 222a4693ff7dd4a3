//! The operation groups of the API's documentation.

use poem_openapi::Tags;

/// Operation groups in the docs.
#[derive(Tags)]
pub enum ApiTags {
    /// The service itself.
    Service,
    /// Talking to the bot as a parent.
    Conversations,
    /// A school's data: welcome message, students, sessions, notices.
    School,
    /// The website engagement chat's report catalogue.
    Engagement,
    /// Staff answering parents where the bot could not: conversations, transcripts,
    /// taking over, replying, handing back.
    Inbox,
}
