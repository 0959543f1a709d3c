//! Authentication: every user route refuses missing and bad credentials with the same
//! 401 and changes nothing; the routes anyone may call still answer.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use chatsync::auth::token::mint;
use http_body_util::BodyExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

mod common;
use common::TestApp;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

async fn call(
    app: &TestApp,
    method: Method,
    uri: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let response = app.router().oneshot(req).await.expect("infallible");
    let status = response.status();
    let www = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, www, body)
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970")
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

fn b64(raw: &str) -> String {
    use base64_like::encode_url;
    encode_url(raw.as_bytes())
}

/// Base64url without padding, enough to forge an unsigned token.
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode_url(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

/// Every route that holds a user's data, with a body where it takes one.
fn user_routes(id: &str) -> Vec<(Method, String, Option<Value>)> {
    let c = format!("/api/contexts/{id}");
    vec![
        (Method::GET, "/api/me".into(), None),
        (Method::GET, "/api/contexts".into(), None),
        (Method::POST, "/api/contexts".into(), Some(json!({}))),
        (Method::GET, c.clone(), None),
        (Method::DELETE, c.clone(), None),
        (Method::GET, format!("{c}/state"), None),
        (
            Method::POST,
            format!("{c}/actions/send_message"),
            Some(json!({"content": "hi"})),
        ),
        (
            Method::POST,
            format!("{c}/actions/approve_tools"),
            Some(json!({"tool_call_ids": []})),
        ),
        (Method::POST, format!("{c}/actions/cancel"), None),
        (Method::POST, format!("{c}/actions/retry"), None),
        (Method::GET, format!("{c}/messages"), None),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(json!({"role": "user", "content": "hi"})),
        ),
        (
            Method::PATCH,
            format!("{c}/messages/00000000-0000-0000-0000-000000000000"),
            Some(json!({"content": "x"})),
        ),
    ]
}

async fn dump(app: &TestApp) -> String {
    let store = app.engine().store();
    format!("{:?}", store.list_contexts(200, None).await.expect("list"))
}

#[tokio::test]
async fn every_user_route_refuses_missing_and_bad_tokens_and_changes_nothing() {
    let app = TestApp::spawn(&["--auth", "jwt", "--jwt-secret", SECRET]).await;
    let good = mint("alice", SECRET, Duration::from_secs(600)).expect("mint");
    let (status, _, created) = call(
        &app,
        Method::POST,
        "/api/contexts",
        &bearer(&good),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().expect("id").to_owned();
    let before = dump(&app).await;

    let t = now();
    let rsa_public = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rsa-a.pub.pem"
    ))
    .expect("fixture");
    let bad: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no token", vec![]),
        (
            "not bearer",
            vec![("authorization", format!("Basic {good}"))],
        ),
        (
            "bad signature",
            bearer(&hs256(
                &json!({"sub": "alice", "exp": t + 600}),
                "another-secret-of-enough-length-xx",
            )),
        ),
        (
            "expired",
            bearer(&hs256(&json!({"sub": "alice", "exp": t - 120}), SECRET)),
        ),
        ("no exp", bearer(&hs256(&json!({"sub": "alice"}), SECRET))),
        (
            "not yet valid",
            bearer(&hs256(
                &json!({"sub": "alice", "exp": t + 600, "nbf": t + 600}),
                SECRET,
            )),
        ),
        (
            "empty sub",
            bearer(&hs256(&json!({"sub": "", "exp": t + 600}), SECRET)),
        ),
        (
            "alg none",
            bearer(&format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&format!(r#"{{"sub":"alice","exp":{}}}"#, t + 600))
            )),
        ),
        (
            "alg confusion",
            bearer(
                &encode(
                    &Header::new(Algorithm::RS256),
                    &json!({"sub": "alice", "exp": t + 600}),
                    &EncodingKey::from_rsa_pem(
                        &std::fs::read(concat!(
                            env!("CARGO_MANIFEST_DIR"),
                            "/tests/fixtures/rsa-a.key.pem"
                        ))
                        .expect("fixture"),
                    )
                    .expect("rsa key"),
                )
                .expect("encode"),
            ),
        ),
        (
            "hs256 keyed with a public key",
            bearer(&hs256(
                &json!({"sub": "alice", "exp": t + 600}),
                &rsa_public,
            )),
        ),
        ("garbage", bearer("not.a.token")),
    ];
    for (method, uri, body) in user_routes(&id) {
        for (what, headers) in &bad {
            let (status, www, answer) =
                call(&app, method.clone(), &uri, headers, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{what}: {method} {uri}: {answer}"
            );
            assert_eq!(www.as_deref(), Some("Bearer"), "{what}: {method} {uri}");
            assert_eq!(
                answer["error"]["code"], "unauthenticated",
                "{what}: {method} {uri}"
            );
        }
    }
    assert_eq!(dump(&app).await, before, "nothing changed");

    for open in ["/healthz", "/readyz", "/metrics", "/api/openapi.json"] {
        let (status, _, _) = call(&app, Method::GET, open, &[], None).await;
        assert_eq!(status, StatusCode::OK, "{open} needs no token");
    }
    let (status, _, me) = call(&app, Method::GET, "/api/me", &bearer(&good), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me, json!({"user_id": "alice"}));
}

#[tokio::test]
async fn a_pem_public_key_verifies_its_own_algorithm_only() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    for (name, alg) in [("rsa-a", Algorithm::RS256), ("ec", Algorithm::ES256)] {
        let public = format!("{dir}/{name}.pub.pem");
        let app = TestApp::spawn(&["--auth", "jwt", "--jwt-public-key", &public]).await;
        let private = std::fs::read(format!("{dir}/{name}.key.pem")).expect("fixture");
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
            _ => EncodingKey::from_ec_pem(&private),
        }
        .expect("key");
        let claims = json!({"sub": "bob", "exp": now() + 600});
        let token = encode(&Header::new(alg), &claims, &key).expect("encode");
        let (status, _, me) = call(&app, Method::GET, "/api/me", &bearer(&token), None).await;
        assert_eq!(
            (status, me),
            (StatusCode::OK, json!({"user_id": "bob"})),
            "{name}"
        );
        let pem = std::fs::read_to_string(&public).expect("fixture");
        let confused = hs256(&claims, &pem);
        let (status, _, _) = call(&app, Method::GET, "/api/me", &bearer(&confused), None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name}: HS256 with the public key"
        );
    }
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = TestApp::spawn(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        SECRET,
        "--jwt-issuer",
        "https://id.example",
        "--jwt-audience",
        "chatsync",
    ])
    .await;
    let t = now() + 600;
    for (claims, ok) in [
        (
            json!({"sub": "a", "exp": t, "iss": "https://id.example", "aud": "chatsync"}),
            true,
        ),
        (
            json!({"sub": "a", "exp": t, "iss": "https://evil.example", "aud": "chatsync"}),
            false,
        ),
        (
            json!({"sub": "a", "exp": t, "iss": "https://id.example", "aud": "other"}),
            false,
        ),
        (json!({"sub": "a", "exp": t}), false),
    ] {
        let (status, _, _) = call(
            &app,
            Method::GET,
            "/api/me",
            &bearer(&hs256(&claims, SECRET)),
            None,
        )
        .await;
        assert_eq!(status == StatusCode::OK, ok, "{claims}");
    }
}

#[tokio::test]
async fn proxy_mode_takes_the_user_from_the_header() {
    let app = TestApp::spawn(&["--auth", "proxy", "--auth-header", "X-Auth-User"]).await;
    let (status, _, me) = call(
        &app,
        Method::GET,
        "/api/me",
        &[("x-auth-user", "carol".into())],
        None,
    )
    .await;
    assert_eq!((status, me), (StatusCode::OK, json!({"user_id": "carol"})));
    let (status, www, _) = call(
        &app,
        Method::GET,
        "/api/contexts",
        &[("x-forwarded-user", "carol".into())],
        None,
    )
    .await;
    assert_eq!(
        (status, www.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("Bearer"))
    );
}

#[tokio::test]
async fn without_auth_everyone_is_local() {
    let app = TestApp::spawn(&[]).await;
    let (status, _, me) = call(&app, Method::GET, "/api/me", &[], None).await;
    assert_eq!((status, me), (StatusCode::OK, json!({"user_id": "local"})));
}

#[tokio::test]
async fn anonymous_mode_refuses_a_public_address_unless_allowed() {
    use clap::Parser;
    let config = chatsync::config::Config::try_parse_from(["chatsync", "--addr", "0.0.0.0:0"])
        .expect("flags");
    let refused = chatsync::Application::build(config)
        .await
        .expect_err("refused");
    assert!(
        refused.to_string().contains("--allow-anonymous-remote"),
        "{refused}"
    );
    let app = TestApp::spawn(&["--addr", "0.0.0.0:0", "--allow-anonymous-remote"]).await;
    let (status, _, _) = call(&app, Method::GET, "/api/me", &[], None).await;
    assert_eq!(status, StatusCode::OK);
}
