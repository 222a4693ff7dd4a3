//! `setup-status/`: the go-live checklist of the caller's school.

use chrono::Utc;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::respond::ApiResult;
use crate::state::AppState;

/// One step of going live.
#[derive(Debug, Object)]
pub struct SetupStepOut {
    /// Stable name: `whatsapp_number`, `current_session`, `current_term`, `classes`,
    /// `subjects`, `students`, `parents_linked`, `marks`, `released_exam_session`,
    /// `welcome_message`, `broadcast_templates`.
    pub step: String,
    /// Whether it is done.
    pub done: bool,
    /// What was found, or what is missing.
    pub detail: String,
    /// The API call that does it.
    pub endpoint: String,
}

/// The school's go-live checklist.
#[derive(Debug, Object)]
pub struct SetupStatusOut {
    /// Every step is done.
    pub ready: bool,
    /// The steps, in the order a school goes through them.
    pub steps: Vec<SetupStepOut>,
}

/// `setup-status/`.
pub struct SetupApi;

#[OpenApi(tag = "ApiTags::School")]
impl SetupApi {
    /// What the school has entered and what it still lacks before parents can use the bot,
    /// each step with the endpoint that does it.
    #[oai(
        path = "/setup-status/",
        method = "get",
        operation_id = "get_setup_status"
    )]
    async fn status(
        &self,
        caller: Caller,
        state: Data<&AppState>,
    ) -> ApiResult<Json<SetupStatusOut>> {
        let ctx = caller.require("staff")?;
        let steps = crate::school::setup::status(&state.db, ctx, Utc::now()).await?;
        Ok(Json(SetupStatusOut {
            ready: steps.iter().all(|s| s.done),
            steps: steps
                .into_iter()
                .map(|s| SetupStepOut {
                    step: s.step.to_string(),
                    done: s.done,
                    detail: s.detail,
                    endpoint: s.endpoint.to_string(),
                })
                .collect(),
        }))
    }
}
