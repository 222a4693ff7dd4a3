//! A mock of Meta's Graph API for tests and demos: records every message sent to it and can
//! be told to fail. `chatbot mock-whatsapp` runs it for people.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json, Path};
use poem::{EndpointExt, Request, Response, Route, Server, handler, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// One message the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `phone_number_id` in the path.
    pub phone_number_id: String,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// JSON body.
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Statuses to answer with, one per request, before answering normally again.
    failures: Vec<u16>,
}

/// A running mock Graph API.
#[derive(Clone)]
pub struct MockGraph {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

#[handler]
fn messages(
    Path(id): Path<String>,
    req: &Request,
    shared: Data<&Arc<Mutex<Shared>>>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = shared.lock().expect("mock state");
    if !s.failures.is_empty() {
        let status = s.failures.remove(0);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Response::builder()
            .status(code)
            .content_type("application/json")
            .body(json!({"error": {"message": "injected failure", "code": status}}).to_string());
    }
    s.received.push(Received {
        phone_number_id: id,
        authorization: req.header("authorization").map(str::to_string),
        body: body.clone(),
    });
    let n = s.received.len();
    Response::builder().content_type("application/json").body(
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": format!("wamid.mock.{n}")}]
        })
        .to_string(),
    )
}

impl MockGraph {
    /// Start on `addr` (port 0 picks one).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(addr).into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().copied())
            .unwrap_or(addr);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = CancellationToken::new();
        let app = Route::new()
            .at("/:id/messages", post(messages))
            .data(shared.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, token.cancelled_owned(), None)
                .await;
        });
        Ok(Self { addr, shared, stop })
    }

    /// Base URL to configure as `CHATBOT_WHATSAPP_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("mock state").received.clone()
    }

    /// Answer the next requests with these statuses (e.g. 429, 500), then normally.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.shared
            .lock()
            .expect("mock state")
            .failures
            .extend_from_slice(statuses);
    }

    /// Stop serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
