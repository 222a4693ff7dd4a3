//! The LLM side of the bot. So far: a mock OpenAI-compatible server for tests and evals
//! ([`mock`]); the client, prompts and output checks come with the rest of the LLM issue.

pub mod mock;
