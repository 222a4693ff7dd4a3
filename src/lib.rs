//! chatbot: a rules-first, multi-tenant WhatsApp and WebSocket chatbot for schools.

pub mod admin;
pub mod api;
pub mod app;
pub mod channels;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod domain;
pub mod entities;
pub mod error;
pub mod eval;
pub mod http;
pub mod llm;
pub mod metrics;
pub mod pipeline;
pub mod reports;
pub mod school;
pub mod state;
pub mod telemetry;
pub mod tenancy;
