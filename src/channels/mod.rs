//! Messaging channels: WhatsApp through Meta's Cloud API (webhook in, Graph API out) and
//! through Twilio (webhook in, Messages API out).

pub mod graph;
pub mod mock_graph;
pub mod twilio;
pub mod whatsapp_cloud;
