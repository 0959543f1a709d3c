//! Authentication: every user route refuses missing and bad credentials with the same
//! 401 and changes nothing; the routes anyone may call still answer.

use axum::http::{header, Method, StatusCode};
use chatsync::auth::token::mint;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;

mod common;
use common::{eventually, Answer, TestApp};

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// One call with `headers` (and a JSON body, if any): status, WWW-Authenticate, body.
async fn call(
    app: &TestApp,
    method: Method,
    uri: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let answer = request(app, method, uri, headers, body).await;
    let www = answer
        .headers
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    (answer.status, www, answer.body)
}

async fn request(
    app: &TestApp,
    method: Method,
    uri: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> Answer {
    let mut all: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // As the sync module does: every POST says it is JSON, with a body or not.
    if body.is_some() || method == Method::POST {
        all.push(("content-type", "application/json"));
    }
    let body = body.map(|b| b.to_string());
    app.call(method, uri, &all, body.as_deref()).await
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

/// The header `--auth proxy` reads by default, naming `user`.
fn as_user(user: &str) -> Vec<(&'static str, String)> {
    vec![("x-forwarded-user", user.to_owned())]
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

/// One figure of `/metrics` (which carries no user names).
async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app.call(Method::GET, "/metrics", &[], None).await.body;
    let text = text.as_str().expect("text");
    assert!(!text.contains("carol"), "no user names in metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// Every chat of the users these tests sign in as.
const USERS: [&str; 4] = ["alice", "carol", "dave", "mallory"];

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
    let before = app.dump(&USERS).await;

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
    assert_eq!(app.dump(&USERS).await, before, "nothing changed");

    for open in ["/healthz", "/readyz", "/metrics", "/api/openapi.json"] {
        let (status, _, _) = call(&app, Method::GET, open, &[], None).await;
        assert_eq!(status, StatusCode::OK, "{open} needs no token");
    }
    let (status, _, me) = call(&app, Method::GET, "/api/me", &bearer(&good), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me, json!({"user_id": "alice"}));
}

#[tokio::test]
async fn another_users_context_answers_exactly_what_an_unknown_id_answers() {
    let app = TestApp::spawn(&["--auth", "jwt", "--jwt-secret", SECRET]).await;
    let alice = bearer(&mint("alice", SECRET, Duration::from_secs(600)).expect("mint"));
    let mallory = bearer(&mint("mallory", SECRET, Duration::from_secs(600)).expect("mint"));
    let (_, _, created) = call(
        &app,
        Method::POST,
        "/api/contexts",
        &alice,
        Some(json!({"title": "alice's secret plans"})),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let before = app.dump(&USERS).await;
    let unknown = uuid::Uuid::new_v4().to_string();

    // Every route about one context: the answer for alice's id, with the id written as
    // the unknown one, is the answer for the unknown id.
    let theirs = user_routes(&id);
    let nobodys = user_routes(&unknown);
    for ((method, uri, body), (_, unknown_uri, _)) in theirs.into_iter().zip(nobodys).skip(3) {
        let (status, _, mut answer) =
            call(&app, method.clone(), &uri, &mallory, body.clone()).await;
        let (_, _, mut expected) = call(&app, method.clone(), &unknown_uri, &mallory, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {answer}");
        // Each request has its own id; the rest must match.
        answer["error"]["request_id"].take();
        expected["error"]["request_id"].take();
        let answer = answer.to_string().replace(&id, &unknown);
        assert_eq!(answer, expected.to_string(), "{method} {uri}");
    }
    assert_eq!(app.dump(&USERS).await, before, "nothing changed");

    // Lists and searches hold only the caller's chats.
    let (_, _, list) = call(&app, Method::GET, "/api/contexts", &mallory, None).await;
    assert_eq!(
        (list["total"].clone(), list["contexts"].clone()),
        (json!(0), json!([]))
    );
    let (_, _, found) = call(&app, Method::GET, "/api/contexts?q=secret", &mallory, None).await;
    assert_eq!(found["total"], 0, "{found}");
    let (_, _, found) = call(&app, Method::GET, "/api/contexts?q=secret", &alice, None).await;
    assert_eq!(found["contexts"][0]["id"], json!(id), "{found}");
    let (status, _, _) = call(
        &app,
        Method::GET,
        &format!("/api/contexts/{id}"),
        &alice,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the owner still reads it");
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
    let (status, www, _) = call(&app, Method::GET, "/api/contexts", &as_user("carol"), None).await;
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

#[tokio::test]
async fn each_user_has_a_quota_of_chats() {
    let app = TestApp::spawn(&["--auth", "proxy", "--max-contexts-per-user", "2"]).await;
    let carol = as_user("carol");
    let dave = as_user("dave");
    for _ in 0..2 {
        let (status, _, _) =
            call(&app, Method::POST, "/api/contexts", &carol, Some(json!({}))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let before = app.dump(&USERS).await;
    let answer = request(&app, Method::POST, "/api/contexts", &carol, Some(json!({}))).await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["error"]["code"], "quota_exceeded");
    assert!(
        answer.headers.get(header::RETRY_AFTER).is_none(),
        "waiting does not help: a chat must be deleted first"
    );
    assert_eq!(app.dump(&USERS).await, before, "nothing created");
    assert_eq!(
        metric(&app, "chatsync_context_quota_refusals_total").await,
        1
    );
    let (status, _, _) = call(&app, Method::POST, "/api/contexts", &dave, Some(json!({}))).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "another user has a quota of their own"
    );

    // Deleting one makes room again.
    let (_, _, list) = call(&app, Method::GET, "/api/contexts", &carol, None).await;
    let id = list["contexts"][0]["id"].as_str().expect("id").to_owned();
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/contexts/{id}"),
        &carol,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(&app, Method::POST, "/api/contexts", &carol, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn turns_are_rate_limited_per_user_with_retry_after() {
    let app = TestApp::spawn(&["--auth", "proxy", "--turns-per-minute", "2"]).await;
    let send = |user: &'static str, id: String| {
        let app = &app;
        async move {
            request(
                app,
                Method::POST,
                &format!("/api/contexts/{id}/actions/send_message"),
                &as_user(user),
                Some(json!({"content": "hello", "if_busy": "enqueue"})),
            )
            .await
        }
    };
    let chat = |user: &'static str| {
        let app = &app;
        async move {
            let (_, _, created) = call(
                app,
                Method::POST,
                "/api/contexts",
                &as_user(user),
                Some(json!({})),
            )
            .await;
            created["id"].as_str().expect("id").to_owned()
        }
    };
    let carols = chat("carol").await;
    for _ in 0..2 {
        let answer = send("carol", carols.clone()).await;
        assert!(answer.status.is_success(), "{}", answer.body);
    }
    let before = app.dump(&USERS).await;
    let answer = send("carol", carols.clone()).await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["error"]["code"], "rate_limited");
    let retry_after: u64 = answer.headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    // Two a minute: the next turn is at most half a minute away.
    assert!(
        (1..=30).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(
        app.dump(&USERS).await,
        before,
        "the refused send changed nothing"
    );
    assert_eq!(metric(&app, "chatsync_turns_rate_limited_total").await, 1);
    // Other routes that start turns share the budget; reading does not cost.
    let retry = request(
        &app,
        Method::POST,
        &format!("/api/contexts/{carols}/actions/retry"),
        &as_user("carol"),
        None,
    )
    .await;
    assert_eq!(retry.body["error"]["code"], "rate_limited");
    let (status, _, _) = call(
        &app,
        Method::GET,
        &format!("/api/contexts/{carols}/state"),
        &as_user("carol"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Dave's budget is his own; a chat he cannot see costs him nothing.
    let answer = send("dave", carols).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let daves = chat("dave").await;
    for _ in 0..2 {
        let answer = send("dave", daves.clone()).await;
        assert!(answer.status.is_success(), "{}", answer.body);
    }
}

#[tokio::test]
async fn a_chat_may_name_only_an_allowed_model() {
    let app = TestApp::spawn(&["--allowed-models", "gpt-4o-mini, small"]).await;
    for (model, status) in [
        (json!("gpt-4o-mini"), StatusCode::CREATED),
        (json!("small"), StatusCode::CREATED),
        (json!(null), StatusCode::CREATED),
        (json!("gpt-4o"), StatusCode::BAD_REQUEST),
        (json!(""), StatusCode::BAD_REQUEST),
    ] {
        let (got, _, body) = call(
            &app,
            Method::POST,
            "/api/contexts",
            &[],
            Some(json!({ "model_id": model })),
        )
        .await;
        assert_eq!(got, status, "{model}: {body}");
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(body["error"]["code"], "invalid_model_id", "{model}");
        }
    }
    let (_, _, list) = call(&app, Method::GET, "/api/contexts", &[], None).await;
    assert_eq!(list["total"], 3, "refused chats were not created");
}

#[tokio::test]
async fn without_users_there_are_no_quotas_by_default() {
    let app = TestApp::spawn(&[]).await;
    let (_, _, created) = call(&app, Method::POST, "/api/contexts", &[], Some(json!({}))).await;
    let id = created["id"].as_str().expect("id");
    for _ in 0..40 {
        let (status, _, body) = call(
            &app,
            Method::POST,
            &format!("/api/contexts/{id}/actions/send_message?wait=false"),
            &[],
            Some(json!({"content": "again", "if_busy": "enqueue"})),
        )
        .await;
        assert!(
            status.is_success() || body["error"]["code"] == "queue_full",
            "{body}"
        );
    }
}

/// A JWKS endpoint on 127.0.0.1 serving whatever set the test puts in, counting fetches.
struct KeyServer {
    url: String,
    set: std::sync::Arc<std::sync::Mutex<Value>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl KeyServer {
    async fn start(keys: &[&str]) -> Self {
        Self::start_with(keys, None).await
    }

    /// Like `start`, answering with this `Cache-Control` header.
    async fn start_with(keys: &[&str], cache_control: Option<&'static str>) -> Self {
        use axum::routing::get;
        use std::sync::atomic::Ordering;
        let set = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (set.clone(), fetches.clone());
        let routes = axum::Router::new().route(
            "/jwks.json",
            get(move || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut headers = axum::http::HeaderMap::new();
                if let Some(value) = cache_control {
                    headers.insert(header::CACHE_CONTROL, value.parse().expect("header"));
                }
                (headers, axum::Json(served.lock().expect("set").clone()))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, routes).await });
        let server = KeyServer { url, set, fetches };
        server.publish(keys);
        server
    }

    /// Serves the public keys of these fixtures from now on.
    fn publish(&self, names: &[&str]) {
        let keys: Vec<Value> = names.iter().map(|n| fixture_jwk(n)).collect();
        *self.set.lock().expect("set") = json!({ "keys": keys });
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn fixture_jwk(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/{name}.jwk.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
}

/// A token for `sub` signed with the fixture's private key, naming `kid`.
fn signed(name: &str, kid: Option<&str>, sub: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let private = std::fs::read(format!("{dir}/{name}.key.pem")).expect("fixture");
    let (key, alg) = if name == "ec" {
        (EncodingKey::from_ec_pem(&private), Algorithm::ES256)
    } else {
        (EncodingKey::from_rsa_pem(&private), Algorithm::RS256)
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let claims = json!({"sub": sub, "exp": now() + 600});
    encode(&header, &claims, &key.expect("key")).expect("encode")
}

async fn me(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let (status, _, body) = call(app, Method::GET, "/api/me", &bearer(token), None).await;
    (status, body)
}

#[tokio::test]
async fn a_jwks_url_verifies_each_key_by_its_id_and_follows_rotation() {
    let keys = KeyServer::start(&["rsa-a", "ec"]).await;
    let app = TestApp::spawn(&["--auth", "jwt", "--jwks-url", &keys.url]).await;
    for (name, user) in [("rsa-a", "ana"), ("ec", "eve")] {
        let token = signed(name, Some(name), user);
        assert_eq!(
            me(&app, &token).await,
            (StatusCode::OK, json!({"user_id": user})),
            "{name}"
        );
    }
    // Refused: a key the set does not hold, a token naming another key than the one that
    // signed it, no kid, and HS256 "signed" with a published key's text.
    let confused = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-a".into());
        let text = fixture_jwk("rsa-a").to_string();
        let claims = json!({"sub": "mallory", "exp": now() + 600});
        encode(&header, &claims, &EncodingKey::from_secret(text.as_bytes())).expect("encode")
    };
    for (what, token) in [
        ("unknown key", signed("rsa-b", Some("rsa-b"), "bob")),
        ("wrong kid", signed("rsa-b", Some("rsa-a"), "bob")),
        ("no kid", signed("rsa-a", None, "ana")),
        ("HS256 with a public key", confused),
    ] {
        let (status, body) = me(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }

    // The provider rotates: rsa-b in, rsa-a out. A token with the new kid is accepted
    // once the set is fetched again (at most once a second), the retired key no longer.
    keys.publish(&["rsa-b"]);
    let new = signed("rsa-b", Some("rsa-b"), "bob");
    let (app_ref, new_ref) = (&app, &new);
    eventually(
        Duration::from_secs(10),
        "the rotation is seen",
        || async move { (me(app_ref, new_ref).await.0 == StatusCode::OK).then_some(()) },
    )
    .await;
    assert_eq!(me(&app, &new).await.1, json!({"user_id": "bob"}));
    let (status, _) = me(&app, &signed("rsa-a", Some("rsa-a"), "ana")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the retired key");

    // Made-up key ids do not make the server hammer the provider.
    let (before, started) = (keys.fetches(), std::time::Instant::now());
    for i in 0..50 {
        let (status, _) = me(&app, &signed("rsa-b", Some(&format!("made-up-{i}")), "x")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let allowed = 1 + usize::try_from(started.elapsed().as_secs()).expect("small");
    assert!(
        keys.fetches() - before <= allowed,
        "{} fetches",
        keys.fetches() - before
    );
}

#[tokio::test]
async fn a_key_the_provider_withdrew_stops_verifying_once_the_max_age_passed() {
    let keys = KeyServer::start_with(&["rsa-a", "ec"], Some("public, max-age=1")).await;
    let app = TestApp::spawn(&["--auth", "jwt", "--jwks-url", &keys.url]).await;
    let token = signed("rsa-a", Some("rsa-a"), "ana");
    assert_eq!(me(&app, &token).await.0, StatusCode::OK);
    // The provider withdraws rsa-a; no token names an unknown key to prompt a fetch.
    keys.publish(&["ec"]);
    let withdrawn = std::time::Instant::now();
    let deadline = withdrawn + Duration::from_secs(10);
    while me(&app, &token).await.0 == StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "the withdrawn key still verifies"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("withdrawn key refused after {:?}", withdrawn.elapsed());
    let (status, body) = me(&app, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let eve = signed("ec", Some("ec"), "eve");
    assert_eq!(
        me(&app, &eve).await.0,
        StatusCode::OK,
        "the key still published still verifies"
    );
    // The provider withdraws its last key: an empty set is a set too.
    keys.publish(&[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while me(&app, &eve).await.0 == StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "the last key still verifies after the set was emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_jwks_url_that_cannot_be_fetched_stops_the_start() {
    use clap::Parser;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", closed.local_addr().expect("addr"));
    drop(closed);
    let flags = [
        "chatsync",
        "--addr",
        "127.0.0.1:0",
        "--auth",
        "jwt",
        "--jwks-url",
        &url,
    ];
    let config = chatsync::config::Config::try_parse_from(flags).expect("flags");
    let refused = chatsync::Application::build(config)
        .await
        .expect_err("refused");
    assert!(
        refused.to_string().contains("cannot fetch --jwks-url"),
        "{refused}"
    );
}

#[tokio::test]
async fn the_models_route_lists_what_a_chat_may_name() {
    let listed = TestApp::spawn(&["--allowed-models", "gpt-4o-mini, small"]).await;
    let (status, _, body) = call(&listed, Method::GET, "/api/models", &[], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"models": ["gpt-4o-mini", "small"], "default": "scripted"})
    );
    let open = TestApp::spawn(&[]).await;
    let (_, _, body) = call(&open, Method::GET, "/api/models", &[], None).await;
    assert_eq!(body, json!({"models": ["scripted"], "default": "scripted"}));
    let served = TestApp::spawn(&[
        "--model",
        "openai",
        "--openai-model",
        "local-llm",
        "--openai-base-url",
        "http://127.0.0.1:9/v1",
    ])
    .await;
    let (_, _, body) = call(&served, Method::GET, "/api/models", &[], None).await;
    assert_eq!(
        body,
        json!({"models": ["local-llm"], "default": "local-llm"})
    );
    let jwt = TestApp::spawn(&["--auth", "jwt", "--jwt-secret", SECRET]).await;
    let (status, _, _) = call(&jwt, Method::GET, "/api/models", &[], None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the same sign-in as the rest of /api"
    );
}
