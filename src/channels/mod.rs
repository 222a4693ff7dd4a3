//! Messaging channels: WhatsApp through Meta's Cloud API (webhook in, Graph API out).

pub mod graph;
pub mod mock_graph;
pub mod whatsapp_cloud;
