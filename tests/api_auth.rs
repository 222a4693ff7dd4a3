//! REST API credentials and tenant context: API keys and JWTs (one pinned algorithm; `exp`,
//! `iss`, `aud` checked; `alg: none` and algorithm confusion refused), the `X-Schema-Name`
//! header and the domain agreeing with the credential, and per-credential rate limits.

mod common;

use common::{TestApp, TestEnv, Variant};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

variants!(
    hmac_tokens_are_checked_claim_by_claim,
    rsa_tokens_refuse_algorithm_confusion,
    tenant_context_must_agree_with_the_credential,
    each_credential_is_rate_limited,
);

const SECRET: &str = "jwt-test-secret-0123456789abcdef-0123456789";
const ISSUER: &str = "https://auth.school.test";
const PATH: &str = "/api/v1/chatbot/academic-sessions/";
const RSA_PRIVATE: &str = include_str!("fixtures/jwt/rsa-private.pem");
const RSA_PUBLIC_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/rsa-public.pem"
);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid staff token for `tenant`.
fn claims(tenant: &str) -> Value {
    json!({
        "sub": "teacher-1",
        "tenant": tenant,
        "role": "staff",
        "iss": ISSUER,
        "aud": "chatbot",
        "exp": now() + 600,
    })
}

fn hs(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn call(app: &TestApp, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = app.http.get(app.url(PATH));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn bearer(app: &TestApp, token: &str) -> (StatusCode, Value) {
    call(app, &[("Authorization", &format!("Bearer {token}"))]).await
}

/// A refusal: the status, the shared error shape, and a message mentioning `why`.
#[track_caller]
fn refused(got: (StatusCode, Value), status: StatusCode, why: &str) {
    let (s, body) = got;
    assert_eq!(s, status, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "`{message}` should mention `{why}`");
}

async fn hmac_tokens_are_checked_claim_by_claim(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    env.settings.auth.jwt_secret = Some(SECRET.to_string().into());
    env.settings.auth.jwt_issuer = Some(ISSUER.into());
    let app = env.start().await;
    let (a, _b) = app.two_schools().await;
    let good = claims("alpha");

    let (status, body) = bearer(&app, &hs(Algorithm::HS256, &good, SECRET.as_bytes())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body["results"].as_array().unwrap().is_empty());
    // The token's school is the only one it reads: alpha's session ids.
    let alpha_ids = ids(&call(&app, &[("X-API-KEY", &a.api_key)]).await.1);
    assert_eq!(ids(&body), alpha_ids);

    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        hs(Algorithm::HS256, &c, SECRET.as_bytes())
    };
    let unauthorized = StatusCode::UNAUTHORIZED;
    refused(
        bearer(&app, &with(json!({"exp": now() - 120}))).await,
        unauthorized,
        "expired",
    );
    refused(
        bearer(&app, &with(json!({"exp": null}))).await,
        unauthorized,
        "required claim",
    );
    refused(
        bearer(&app, &with(json!({"iss": "https://evil.test"}))).await,
        unauthorized,
        "issuer",
    );
    refused(
        bearer(&app, &with(json!({"iss": null}))).await,
        unauthorized,
        "required claim",
    );
    refused(
        bearer(&app, &with(json!({"aud": "another-api"}))).await,
        unauthorized,
        "audience",
    );
    refused(
        bearer(&app, &with(json!({"nbf": now() + 3600}))).await,
        unauthorized,
        "not valid yet",
    );
    refused(
        bearer(&app, &with(json!({"role": "superuser"}))).await,
        unauthorized,
        "role",
    );
    refused(
        bearer(&app, &with(json!({"tenant": "gamma"}))).await,
        unauthorized,
        "unknown tenant",
    );
    refused(
        bearer(&app, &with(json!({"tenant": null}))).await,
        unauthorized,
        "malformed",
    );
    // A role without the scope: authenticated, not allowed.
    refused(
        bearer(&app, &with(json!({"role": "messages"}))).await,
        StatusCode::FORBIDDEN,
        "scope",
    );

    // Signed with another secret, or another HMAC algorithm than the pinned HS256.
    refused(
        bearer(
            &app,
            &hs(
                Algorithm::HS256,
                &good,
                b"another-secret-0123456789abcdef-xyz",
            ),
        )
        .await,
        unauthorized,
        "signature",
    );
    refused(
        bearer(&app, &hs(Algorithm::HS512, &good, SECRET.as_bytes())).await,
        unauthorized,
        "algorithm",
    );
    // `alg: none`, with and without a signature part; a tampered payload.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    refused(bearer(&app, &none).await, unauthorized, "none");
    refused(
        bearer(&app, none.trim_end_matches('.')).await,
        unauthorized,
        "none",
    );
    let signed = hs(Algorithm::HS256, &good, SECRET.as_bytes());
    let parts: Vec<&str> = signed.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(&claims("beta")), parts[2]);
    refused(bearer(&app, &forged).await, unauthorized, "signature");
    // Not a token at all, the wrong scheme, nothing.
    refused(bearer(&app, "not-a-jwt").await, unauthorized, "malformed");
    refused(
        call(&app, &[("Authorization", "Basic YTpi")]).await,
        unauthorized,
        "Bearer",
    );
    refused(call(&app, &[]).await, unauthorized, "X-API-KEY");
    // Both kinds at once is ambiguous.
    refused(
        call(
            &app,
            &[
                ("X-API-KEY", &a.api_key),
                ("Authorization", &format!("Bearer {signed}")),
            ],
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "not both",
    );
    app.stop().await.unwrap();
}

/// The ids of a page of academic sessions.
fn ids(body: &Value) -> Vec<i64> {
    body["results"]
        .as_array()
        .map(|a| a.iter().map(|x| x["id"].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

async fn rsa_tokens_refuse_algorithm_confusion(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    env.settings.auth.jwt_algorithm = "RS256".into();
    env.settings.auth.jwt_public_key_file = Some(RSA_PUBLIC_FILE.into());
    env.settings.auth.jwt_issuer = Some(ISSUER.into());
    let app = env.start().await;
    let _ = app.two_schools().await;
    let good = claims("alpha");
    let private = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();

    let rs256 = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &good, &private).unwrap();
    let (status, body) = bearer(&app, &rs256).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The classic confusion: HS256 "signed" with the server's public key as the secret.
    let public_pem = std::fs::read(RSA_PUBLIC_FILE).unwrap();
    refused(
        bearer(&app, &hs(Algorithm::HS256, &good, &public_pem)).await,
        StatusCode::UNAUTHORIZED,
        "algorithm",
    );
    // The same key with another RSA algorithm than the pinned one.
    let ps256 = jsonwebtoken::encode(&Header::new(Algorithm::PS256), &good, &private).unwrap();
    refused(
        bearer(&app, &ps256).await,
        StatusCode::UNAUTHORIZED,
        "algorithm",
    );
    app.stop().await.unwrap();
}

async fn tenant_context_must_agree_with_the_credential(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    env.settings.auth.jwt_secret = Some(SECRET.to_string().into());
    env.settings.auth.jwt_issuer = Some(ISSUER.into());
    let app = env.start().await;
    let (a, b) = app.two_schools().await;
    let token = format!(
        "Bearer {}",
        hs(Algorithm::HS256, &claims("alpha"), SECRET.as_bytes())
    );
    for credential in [
        ("X-API-KEY", a.api_key.as_str()),
        ("Authorization", token.as_str()),
    ] {
        // The credential's own school, by header (any case) or domain: allowed.
        let (status, body) = call(&app, &[credential, ("X-Schema-Name", "Alpha")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = call(&app, &[credential, ("Host", &a.domain)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Another school: 403, by header or by domain; an unknown one: 404.
        refused(
            call(&app, &[credential, ("X-Schema-Name", "beta")]).await,
            StatusCode::FORBIDDEN,
            "another school",
        );
        refused(
            call(&app, &[credential, ("Host", &format!("{}:8080", b.domain))]).await,
            StatusCode::FORBIDDEN,
            "another school",
        );
        refused(
            call(&app, &[credential, ("X-Schema-Name", "gamma")]).await,
            StatusCode::NOT_FOUND,
            "unknown tenant",
        );
        refused(
            call(&app, &[credential, ("X-Schema-Name", "../beta")]).await,
            StatusCode::NOT_FOUND,
            "unknown tenant",
        );
    }
    // The header alone proves nothing.
    refused(
        call(&app, &[("X-Schema-Name", "alpha")]).await,
        StatusCode::UNAUTHORIZED,
        "authentication required",
    );
    // A revoked or invented key.
    refused(
        call(&app, &[("X-API-KEY", "cbk_not_a_real_key")]).await,
        StatusCode::UNAUTHORIZED,
        "invalid API key",
    );
    app.stop().await.unwrap();
}

async fn each_credential_is_rate_limited(v: Variant) {
    let Some(mut env) = TestEnv::new(v).await else {
        return;
    };
    // One request a minute after a burst of three: the fourth is refused for about a minute.
    env.settings.auth.api_rate_per_minute = 1;
    env.settings.auth.api_rate_burst = 3;
    let app = env.start().await;
    let (a, b) = app.two_schools().await;
    for _ in 0..3 {
        let (status, body) = call(&app, &[("X-API-KEY", &a.api_key)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let r = app
        .http
        .get(app.url(PATH))
        .header("X-API-KEY", &a.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    // Another school's key has its own allowance.
    let (status, body) = call(&app, &[("X-API-KEY", &b.api_key)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await.unwrap();
}
