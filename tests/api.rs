//! The REST API end to end: a real `spoke serve` on loopback, driven over
//! HTTP. Every endpoint in the route table × every role, SUSPENDED and
//! LEGAL_HOLD, bad input, uploads, headers, metrics and rate limiting.

mod common;

use appliance::auth::ROLES;
use appliance::Role;
use common::Env;
use serde_json::{json, Value};

struct Server {
    _child: common::Child,
    url: String,
}

fn serve(env: &Env, data: &str, extra: &[&str]) -> Server {
    let (child, url) = env.spoke_serve(data, extra);
    Server { _child: child, url }
}

struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn kind(&self) -> &str {
        self.body["error"]["kind"].as_str().unwrap_or("")
    }
}

fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Reply {
    let mut req = ureq::request(method, &format!("{}{path}", server.url));
    if let Some(t) = token {
        req = req.set("authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => req.set("content-type", "application/json").send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or_default().to_string();
            (n, v)
        })
        .collect();
    let text = resp.into_string().unwrap_or_default();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

fn get(s: &Server, path: &str, token: &str) -> Reply {
    call(s, "GET", path, Some(token), None)
}

fn send(s: &Server, method: &str, path: &str, token: &str, body: Value) -> Reply {
    call(
        s,
        method,
        path,
        Some(token),
        Some(body.to_string().as_bytes()),
    )
}

const PASSWORD: &str = "a long enough passphrase";

/// A sample spoke with one user per role; returns the data dir.
fn spoke_with_users(env: &Env) -> String {
    let d = env.sample_spoke("spoke");
    env.add_role_users(&d, PASSWORD);
    d
}

fn login(s: &Server, user: &str) -> String {
    let r = call(
        s,
        "POST",
        "/api/v1/session",
        None,
        Some(
            json!({"user": user, "password": PASSWORD})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["secret"].as_str().unwrap().to_string()
}

#[test]
fn every_endpoint_for_every_role_matches_the_route_table() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    let s = serve(&env, &d, &["--rate-limit", "0"]);
    let tokens: Vec<(Role, String)> = ROLES.iter().map(|r| (*r, login(&s, r.as_str()))).collect();
    let audit_before = env.spoke(&["audit", "list", "--data", &d]).ok();
    let mut checked = 0;
    for route in api::routes::ROUTES {
        // Signing out is checked on its own below; it would end the session.
        if route.method == "DELETE" && route.path == "/api/v1/session" {
            continue;
        }
        let path = route
            .path
            .replace("{id}", "no-such-id")
            .replace("{cas}", "7732-18-5");
        let body = matches!(route.method, "POST" | "PUT").then_some(&b"{}"[..]);
        let anonymous = call(&s, route.method, &path, None, body);
        match route.permission {
            None => assert_ne!(anonymous.status, 401, "{} {path} is public", route.method),
            Some(_) => {
                assert_eq!(
                    anonymous.status, 401,
                    "{} {path} without a token",
                    route.method
                );
                assert_eq!(anonymous.kind(), "unauthenticated");
                assert!(
                    anonymous.headers.iter().any(|(n, v)| {
                        n.eq_ignore_ascii_case("www-authenticate") && v.starts_with("Bearer ")
                    }),
                    "{} {path}: a 401 names the Bearer scheme (RFC 6750)",
                    route.method
                );
            }
        }
        for (role, token) in &tokens {
            let r = call(&s, route.method, &path, Some(token), body);
            let allowed = route.permission.is_none_or(|p| role.allows(p));
            if allowed {
                assert!(
                    r.status != 401 && r.status != 403,
                    "{} {path} as {role:?}: {} {:?}",
                    route.method,
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(
                    r.status, 403,
                    "{} {path} as {role:?}: {:?}",
                    route.method, r.body
                );
                assert_eq!(r.kind(), "forbidden");
            }
            checked += 1;
        }
    }
    assert!(checked >= 35 * 5, "{checked}");
    // None of those requests changed anything (only sign-ins were recorded).
    let audit_after = env.spoke(&["audit", "list", "--data", &d]).ok();
    let new: Vec<&str> = audit_after.as_array().unwrap()[audit_before.as_array().unwrap().len()..]
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(new.is_empty(), "{new:?}");

    // Signing out revokes the token.
    let (_, viewer) = &tokens[3];
    assert_eq!(
        call(&s, "DELETE", "/api/v1/session", Some(viewer), None).status,
        200
    );
    assert_eq!(get(&s, "/api/v1/status", viewer).status, 401);
}

#[test]
fn work_through_the_api_with_suspension_and_legal_hold() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    env.add_admins(&d, &["counsel"], PASSWORD);
    let s = serve(&env, &d, &["--rate-limit", "0", "--max-upload", "2000"]);
    let admin = login(&s, "admin");
    let counsel = login(&s, "counsel");
    let editor = login(&s, "editor");

    let product = json!({"id": "api-toner", "kind": "product", "name": "API Toner", "category": "hair_rinse_off",
        "markets": ["EU"], "components": [{"substance": "Salicylic acid", "cas": "69-72-7", "concentration": 2.5, "unit": "%"}]});
    let r = send(&s, "POST", "/api/v1/entities", &editor, product.clone());
    assert_eq!(r.status, 201, "{:?}", r.body);
    let up = call(
        &s,
        "POST",
        "/api/v1/documents?kind=cpsr&filename=toner.txt&entity=api-toner&expires=2099-01-01",
        Some(&editor),
        Some(b"Safety report for the API Toner, rinse-off."),
    );
    assert_eq!(up.status, 201, "{:?}", up.body);
    let hits = get(&s, "/api/v1/search?q=toner&kind=document", &editor);
    assert_eq!(hits.body[0]["id"], up.body["id"]);
    let content = call(
        &s,
        "GET",
        &format!(
            "/api/v1/documents/{}/content",
            up.body["id"].as_str().unwrap()
        ),
        Some(&editor),
        None,
    );
    assert_eq!(
        content.body,
        Value::String("Safety report for the API Toner, rinse-off.".into())
    );

    let ev = send(
        &s,
        "POST",
        "/api/v1/evaluations",
        &editor,
        json!({"products": ["api-toner"]}),
    );
    assert_eq!(ev.status, 201, "{:?}", ev.body);
    assert_eq!(ev.body[0]["verdict"], "pass");
    let lock = ev.body[0]["lock_id"].as_str().unwrap();
    let replay = call(
        &s,
        "POST",
        &format!("/api/v1/locks/{lock}/replay"),
        Some(&editor),
        None,
    );
    assert_eq!(replay.body["replay"]["identical"], true);
    assert_eq!(replay.body["result"], ev.body[0]["evaluation"]);
    let shown = get(&s, "/api/v1/entities/api-toner", &editor);
    assert_eq!(shown.body["latest_evaluation"]["lock_id"], lock);

    // The command line works on the same data while the server runs, and the
    // server's searches follow its commits.
    std::fs::write(
        env.path("cli-product.json"),
        r#"{"id": "cli-gel", "kind": "product", "name": "Quince gel", "category": "rinse_off"}"#,
    )
    .unwrap();
    env.spoke(&["entity", "add", "--data", &d, &env.s("cli-product.json")])
        .ok();
    assert_eq!(get(&s, "/api/v1/entities/cli-gel", &editor).status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(&s, "/api/v1/search?q=quince", &editor)
        .body
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never saw the CLI's commit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // SUSPENDED: reads work, every mutation is refused with a clear 403, nothing is lost.
    let r = send(
        &s,
        "PUT",
        "/api/v1/lifecycle",
        &admin,
        json!({"state": "SUSPENDED", "reason": "licence expired"}),
    );
    assert_eq!(r.body["state"], "SUSPENDED");
    assert_eq!(get(&s, "/api/v1/entities/api-toner", &editor).status, 200);
    let viewer = login(&s, "viewer");
    assert_eq!(
        get(&s, "/api/v1/search?q=toner", &viewer).status,
        200,
        "sign-in and reads work while suspended"
    );
    let refused = [
        send(
            &s,
            "POST",
            "/api/v1/entities",
            &editor,
            json!({"kind": "supplier", "name": "New"}),
        ),
        send(
            &s,
            "PUT",
            "/api/v1/entities/api-toner",
            &editor,
            product.clone(),
        ),
        call(
            &s,
            "DELETE",
            "/api/v1/entities/api-toner",
            Some(&editor),
            None,
        ),
        call(
            &s,
            "POST",
            "/api/v1/documents?kind=sds&filename=a.txt",
            Some(&editor),
            Some(b"text"),
        ),
        send(
            &s,
            "POST",
            "/api/v1/evaluations",
            &editor,
            json!({"all": true}),
        ),
    ];
    for r in &refused {
        assert_eq!((r.status, r.kind()), (403, "read_only"), "{:?}", r.body);
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SUSPENDED"));
    }
    send(
        &s,
        "PUT",
        "/api/v1/lifecycle",
        &admin,
        json!({"state": "LEGAL_HOLD"}),
    );
    let r = call(
        &s,
        "DELETE",
        "/api/v1/entities/api-toner",
        Some(&editor),
        None,
    );
    assert_eq!(
        (r.status, r.kind()),
        (403, "read_only"),
        "nothing is destroyed under legal hold"
    );
    let r = send(
        &s,
        "PUT",
        "/api/v1/lifecycle",
        &admin,
        json!({"state": "ACTIVE"}),
    );
    assert_eq!(
        r.status, 400,
        "leaving legal hold needs the clearance: {:?}",
        r.body
    );
    // Two administrators release it: the first asks (202), the same one
    // cannot confirm, another one does.
    let release = json!({"state": "ACTIVE", "reason": "court order 2026/17 lifted"});
    let r = send(&s, "PUT", "/api/v1/lifecycle", &admin, release.clone());
    assert_eq!(
        (r.status, &r.body["result"], &r.body["state"]),
        (202, &json!("release_requested"), &json!("LEGAL_HOLD")),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["release_request"]["by"], "admin");
    let r = send(&s, "PUT", "/api/v1/lifecycle", &admin, release.clone());
    assert_eq!((r.status, r.kind()), (409, "conflict"), "{:?}", r.body);
    assert_eq!(
        get(&s, "/api/v1/lifecycle", &admin).body["state"],
        "LEGAL_HOLD"
    );
    let r = send(&s, "PUT", "/api/v1/lifecycle", &counsel, release);
    assert_eq!(
        (r.status, &r.body["state"]),
        (200, &json!("ACTIVE")),
        "{:?}",
        r.body
    );
    assert!(r.body["cooling_off_until"].is_string(), "{:?}", r.body);
    assert_eq!(
        call(
            &s,
            "DELETE",
            "/api/v1/entities/api-toner",
            Some(&editor),
            None
        )
        .status,
        204
    );

    let audit = get(&s, "/api/v1/audit?limit=1000", &admin);
    let page = get(&s, "/api/v1/audit?after=2&limit=3", &admin);
    let seqs: Vec<i64> = page
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5], "pages are cut in the database");
    let actions: Vec<(&str, &str)> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    for expected in [
        ("editor", "entity.create"),
        ("editor", "document.create"),
        ("editor", "evaluation.run"),
        ("admin", "lifecycle.set"),
        ("editor", "entity.delete"),
    ] {
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    assert!(audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["origin"] == "127.0.0.1" || e["origin"] == "cli"));
    assert_eq!(get(&s, "/api/v1/audit/verify", &admin).status, 200);
}

#[test]
fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    let s = serve(&env, &d, &["--rate-limit", "0", "--max-upload", "2000"]);
    let editor = login(&s, "editor");
    let before = get(&s, "/api/v1/status", &editor).body["counts"].clone();
    let objects_before = common::snapshot(&env.path("spoke/store/objects"));
    // method, path, body, status, error kind, words the message must contain
    type Case<'a> = (&'a str, &'a str, &'a [u8], u16, &'a str, &'a str);
    let cases: [Case; 8] = [
        ("POST", "/api/v1/entities", b"{\"kind\": \"product\", \"name\": ", 400, "invalid", "EOF"),
        ("POST", "/api/v1/entities", br#"{"kind": "product", "name": 42}"#, 400, "invalid", "invalid type"),
        ("POST", "/api/v1/entities", br#"{"kind": "product", "name": "X", "price": 3}"#, 400, "invalid", "unknown field `price`"),
        ("POST", "/api/v1/entities", br#"{"kind": "gadget", "name": "X"}"#, 400, "invalid", "unknown variant"),
        (
            "POST",
            "/api/v1/entities",
            br#"{"kind": "product", "name": "X", "components": [{"substance": "Water", "cas": "7732-18-4"}]}"#,
            400,
            "invalid",
            "check digit",
        ),
        ("POST", "/api/v1/documents?kind=cpsr&filename=report.pdf", b"plain text pretending", 415, "unsupported_media", "%PDF-"),
        ("POST", "/api/v1/documents?kind=cpsr&filename=a.txt", &[b'a'; 2001], 413, "too_large", "limit"),
        ("POST", "/api/v1/documents?kind=cpsr&filename=x.pdf", b"%PDF-1.4\nnot really", 422, "unreadable", "could not be read"),
    ];
    for (method, path, body, status, kind, needle) in cases {
        let r = call(&s, method, path, Some(&editor), Some(body));
        assert_eq!((r.status, r.kind()), (status, kind), "{path}: {:?}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{path}: {msg}");
    }
    let r = call(
        &s,
        "GET",
        "/api/v1/search?q=x&colour=red",
        Some(&editor),
        None,
    );
    assert_eq!(r.status, 400);
    let r = call(&s, "GET", "/api/v1/search?q=%20", Some(&editor), None);
    assert_eq!((r.status, r.kind()), (400, "invalid"), "{:?}", r.body);
    assert_eq!(
        get(&s, "/api/v1/status", &editor).body["counts"],
        before,
        "nothing was stored"
    );
    common::assert_same(
        &objects_before,
        &common::snapshot(&env.path("spoke/store/objects")),
    );
}

#[test]
fn headers_health_metrics_openapi_and_rate_limit() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    let s = serve(&env, &d, &["--rate-limit", "0"]);
    let auditor = login(&s, "auditor");
    let health = call(&s, "GET", "/health", None, None);
    assert_eq!(health.body["status"], "ok");
    for h in [
        "x-content-type-options",
        "x-frame-options",
        "content-security-policy",
        "referrer-policy",
    ] {
        assert!(health.headers.iter().any(|(n, _)| n == h), "{h} missing");
    }
    let deep = get(&s, "/health/deep", &auditor);
    assert_eq!(deep.status, 200, "{:?}", deep.body);
    assert_eq!(deep.body["ok"], true);
    let metrics = call(&s, "GET", "/metrics", None, None);
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(
            "spoke_http_requests_total{method=\"GET\",route=\"/health/deep\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("spoke_store_rows{table=\"entities\"} 5"),
        "{text}"
    );
    assert!(!text.contains("Hydra"), "metrics carry no content");
    let doc = call(&s, "GET", "/api/v1/openapi.json", None, None).body;
    for route in api::routes::ROUTES {
        assert!(
            doc["paths"][route.path][route.method.to_ascii_lowercase()].is_object(),
            "{} {} documented",
            route.method,
            route.path
        );
    }
    let missing = call(&s, "GET", "/api/v1/nothing-here", Some(&auditor), None);
    assert_eq!((missing.status, missing.kind()), (404, "not_found"));
    assert_eq!(call(&s, "GET", "/api/v1/status", None, None).status, 401);
    drop(s);
    // Error responses are counted by code for the report to the hub.
    env.spoke(&["report", "--data", &d, "--to", &env.s("out")])
        .ok();
    let report: Value =
        serde_json::from_slice(&std::fs::read(env.path("out/report.json")).unwrap()).unwrap();
    let errors = &report["body"]["errors_by_code_24h"];
    assert_eq!(
        (errors["http_404"].as_i64(), errors["http_401"].as_i64()),
        (Some(1), Some(1)),
        "{errors}"
    );

    let limited = serve(&env, &d, &["--rate-limit", "1"]);
    let statuses: Vec<u16> = (0..10)
        .map(|_| call(&limited, "GET", "/health", None, None).status)
        .collect();
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// The response to a sign-in attempt.
fn sign_in(s: &Server, user: &str, password: &str) -> Reply {
    let body = json!({"user": user, "password": password}).to_string();
    call(s, "POST", "/api/v1/session", None, Some(body.as_bytes()))
}

fn retry_after(r: &Reply) -> Option<u64> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| v.parse().ok())
}

#[test]
fn sign_in_and_tokens_are_throttled_and_an_administrator_unlocks() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    // An account locks at its 2nd failure (the 1st is answered at once),
    // an address at its 10th; locks last 5 minutes. (The doubling waits
    // between are unit-tested with a clock the test sets.)
    let s = serve(
        &env,
        &d,
        &[
            "--rate-limit",
            "0",
            "--sign-in-lock-after",
            "2",
            "--sign-in-lock-minutes",
            "5",
        ],
    );
    // A real user and an unknown one are answered alike, attempt by attempt.
    let mut answers = Vec::new();
    for user in ["editor", "nobody-here"] {
        let mut seen = Vec::new();
        for password in [
            "wrong password, try again",
            "wrong again, and again",
            PASSWORD,
        ] {
            let r = sign_in(&s, user, password);
            seen.push((r.status, r.kind().to_string()));
            if r.status == 429 {
                // Locked: even the right password is not checked, and
                // the answer says how long to wait and who can lift it.
                let secs = retry_after(&r).expect("Retry-After");
                assert!((290..=300).contains(&secs), "{user}: wait {secs}");
                let message = r.body["error"]["message"].as_str().unwrap();
                assert!(message.contains("spoke users unlock"), "{message}");
            }
        }
        answers.push(seen);
    }
    assert_eq!(
        answers[0], answers[1],
        "no difference between real and unknown users"
    );
    let kinds: Vec<&str> = answers[0].iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds, ["unauthenticated", "unauthenticated", "throttled"]);
    // Other accounts from the same address are not affected (4 failures so far).
    let viewer = login(&s, "viewer");

    // The audit log names the failures and the locks, never a password.
    let actions = env.audit_actions(&d);
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!(
        (count("sign_in.failed"), count("sign_in.locked")),
        (4, 2),
        "{actions:?}"
    );
    let audit = env.spoke(&["audit", "list", "--data", &d]).ok().to_string();
    assert!(
        !audit.contains("wrong password"),
        "no password in the audit log"
    );

    // Unknown API tokens from one address: the 10th locks the address, and
    // then even a valid token from it is refused without being looked up.
    let statuses: Vec<u16> = (0..11)
        .map(|i| get(&s, "/api/v1/status", &format!("sk_guess{i}")).status)
        .collect();
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429);
    let refused = get(&s, "/api/v1/status", &viewer);
    assert_eq!(
        (refused.status, refused.kind()),
        (429, "throttled"),
        "{:?}",
        refused.body
    );
    assert!(retry_after(&refused).is_some());
    assert!(!env
        .spoke(&["audit", "list", "--data", &d])
        .ok()
        .to_string()
        .contains("sk_guess"));

    // An administrator lifts the locks from the command line while the
    // spoke serves; each lift is audit-logged.
    let unlocked = env
        .spoke(&[
            "users",
            "unlock",
            "--data",
            &d,
            "--name",
            "editor",
            "--address",
            "127.0.0.1",
        ])
        .ok();
    let cleared: Vec<&str> = unlocked["cleared"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        cleared,
        ["user:editor", "address:127.0.0.1", "token:127.0.0.1"],
        "{unlocked}"
    );
    assert_eq!(sign_in(&s, "editor", PASSWORD).status, 201);
    assert_eq!(get(&s, "/api/v1/status", &viewer).status, 200);
    assert_eq!(
        sign_in(&s, "nobody-here", PASSWORD).kind(),
        "throttled",
        "only what was named is lifted"
    );
    assert_eq!(
        env.audit_actions(&d)
            .iter()
            .filter(|a| *a == "sign_in.unlock")
            .count(),
        3
    );
    // Bad input to unlock is refused with the reason.
    let bad = env
        .spoke(&["users", "unlock", "--data", &d])
        .fails_with("invalid");
    assert!(bad.contains("--name"), "{bad}");
    let bad = env
        .spoke(&["users", "unlock", "--data", &d, "--address", "not-an-ip"])
        .fails_with("invalid");
    assert!(bad.contains("IP address"), "{bad}");
    let bad = env
        .spoke(&["serve", "--data", &d, "--sign-in-lock-after", "0"])
        .fails_with("invalid");
    assert!(bad.contains("at least 1"), "{bad}");
}

#[test]
fn a_pdf_bomb_is_refused_by_a_limited_reader_while_other_requests_go_on() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    let s = serve(&env, &d, &["--rate-limit", "0"]);
    let editor = login(&s, "editor");
    let viewer = login(&s, "viewer");
    let documents = |s: &Server| get(s, "/api/v1/documents", &viewer).body;
    let before = documents(&s);
    // 300 KB that inflate to 200 MB of drawing operators.
    let bomb = common::pdf_bomb(200 << 20);
    assert!(bomb.len() < 400_000, "{}", bomb.len());

    let url = s.url.clone();
    let upload = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let r = ureq::post(&format!(
            "{url}/api/v1/documents?kind=cpsr&filename=bomb.pdf"
        ))
        .set("authorization", &format!("Bearer {editor}"))
        .send_bytes(&bomb);
        let (status, body) = match r {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{e}"),
        };
        (status, body, start.elapsed())
    });
    // A viewer keeps asking for the status while the bomb is read.
    let mut waits = Vec::new();
    while !upload.is_finished() {
        let start = std::time::Instant::now();
        assert_eq!(get(&s, "/api/v1/status", &viewer).status, 200);
        waits.push(start.elapsed());
    }
    let (status, body, took) = upload.join().unwrap();
    assert_eq!(status, 422, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["kind"], "unreadable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bomb.pdf") && message.contains("MiB of memory"),
        "{message}"
    );
    // The bomb is read without the store's lock: no status request waited
    // for it (with the lock held, one would wait about as long as the upload).
    waits.sort();
    let longest = *waits
        .last()
        .expect("status was asked while the bomb was read");
    assert!(
        longest * 4 < took,
        "a status request waited {longest:?} during a {took:?} upload ({} requests)",
        waits.len()
    );
    eprintln!(
        "bomb refused in {took:?}; {} status requests meanwhile, p99 {:?}, max {longest:?}",
        waits.len(),
        waits[waits.len() * 99 / 100]
    );
    assert_eq!(documents(&s), before, "nothing stored");
    // An ordinary PDF is still read, by the same limited reader.
    let ok = call(
        &s,
        "POST",
        "/api/v1/documents?kind=cpsr&filename=ok.pdf",
        Some(&login(&s, "editor")),
        Some(&common::pdf("Safety assessment of the Bomb Cream")),
    );
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert!(
        ok.body["text_chars"].as_u64().unwrap() > 20,
        "{:?}",
        ok.body
    );
    drop(s);
    // The command line refuses it the same way.
    std::fs::write(env.path("bomb.pdf"), common::pdf_bomb(200 << 20)).unwrap();
    let msg = env
        .doc_add(&d, "cpsr", None, None, &env.path("bomb.pdf"))
        .fails_with("unreadable");
    assert!(msg.contains("MiB of memory"), "{msg}");
}

#[test]
fn media_are_verified_and_previewed_before_an_administrator_installs_them() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    let src = common::annexes_upgrade(&env, "2026.2.0", &[("Lilial", "80-54-6")]);
    env.build_publish(&src, "annexes.bundle", &[]);
    env.export("media/update", &["--only", "@data/eu-cosmetics-annexes"]);
    env.export("media/tampered", &["--only", "@data/eu-cosmetics-annexes"]);
    let ts = env.path("media/tampered/metadata/timestamp.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&ts).unwrap()).unwrap();
    v["signed"]["expires"] = json!("2099-01-01T00:00:00Z");
    std::fs::write(&ts, v.to_string()).unwrap();
    let media = env.s("media");
    let s = serve(&env, &d, &["--rate-limit", "0", "--media", &media]);
    let admin = login(&s, "admin");
    let packs_before = env.packs("spoke");

    let listed = get(&s, "/api/v1/media", &admin);
    let ids: Vec<&str> = listed.body["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tampered", "update"]);

    // Preview verifies and lists, and installs nothing.
    let p = call(
        &s,
        "POST",
        "/api/v1/media/update/preview",
        Some(&admin),
        None,
    );
    assert_eq!(p.status, 200, "{:?}", p.body);
    let new: Vec<&Value> = p.body["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["on_medium"] == true && b["already_installed"] == false)
        .collect();
    assert_eq!(new.len(), 1, "{:?}", p.body);
    assert_eq!(new[0]["version"], "2026.2.0");
    assert_eq!(env.packs("spoke"), packs_before);

    // A tampered medium is refused at preview and at install, naming why.
    for action in ["preview", "install"] {
        let r = call(
            &s,
            "POST",
            &format!("/api/v1/media/tampered/{action}"),
            Some(&admin),
            None,
        );
        assert_eq!((r.status, r.kind()), (422, "bad_signature"), "{:?}", r.body);
    }
    // Only names the listing shows are media: no paths.
    for name in ["..", "%2E%2E%2Fmedia%2Fupdate", "missing"] {
        let r = call(
            &s,
            "POST",
            &format!("/api/v1/media/{name}/install"),
            Some(&admin),
            None,
        );
        assert_eq!(r.status, 404, "{name}: {:?}", r.body);
    }
    assert_eq!(env.packs("spoke"), packs_before);

    // Installing records the bundle and proposes the change for approval.
    let r = call(
        &s,
        "POST",
        "/api/v1/media/update/install",
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["installed"][0]["version"], "2026.2.0");
    assert_eq!(r.body["change"]["status"], "pending");
    let progress = get(&s, "/api/v1/media/progress", &admin);
    assert_eq!(progress.body["running"], false);
    assert_eq!(progress.body["done"], progress.body["total"]);
    assert!(env.packs("spoke").iter().any(|(_, v, _)| v == "2026.2.0"));
    // The audit log names the administrator who installed it, not the CLI.
    let audit = get(&s, "/api/v1/audit?limit=1000", &admin);
    let install = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["action"] == "bundle.install")
        .unwrap()
        .clone();
    assert_eq!(install["actor"], "admin", "{install}");
}

#[test]
fn the_console_is_served_from_the_binary_and_the_session_says_what_the_role_may_call() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    let s = serve(&env, &d, &["--rate-limit", "0"]);
    let header = |r: &Reply, name: &str| {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let page = call(&s, "GET", "/", None, None);
    assert_eq!(page.status, 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    let html = page.body.as_str().unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/app.js">"#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    let script = call(&s, "GET", "/console/app.js", None, None);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    assert_eq!(header(&script, "content-security-policy"), csp);
    let missing = call(&s, "GET", "/console/../../etc/passwd", None, None);
    assert_eq!(missing.status, 404);
    let nope = call(&s, "GET", "/console/nope.js", None, None);
    assert_eq!((nope.status, nope.kind()), (404, "not_found"));
    // The API keeps its own policy, which allows nothing.
    let status = call(&s, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(
        header(&status, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );

    for role in ROLES {
        let token = login(&s, role.as_str());
        let me = get(&s, "/api/v1/session", &token);
        assert_eq!(me.body["user"], role.as_str());
        assert_eq!(me.body["role"], role.as_str());
        let allowed: Vec<String> = me.body["allowed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = api::routes::ROUTES
            .iter()
            .filter(|r| r.permission.is_none_or(|p| role.allows(p)))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(allowed, expected, "{role:?}");
        let approve = "POST /api/v1/changes/{id}/approve".to_string();
        assert_eq!(
            allowed.contains(&approve),
            matches!(role, Role::Admin | Role::RegulatoryManager),
            "{role:?}"
        );
    }
}

#[test]
fn the_os_and_its_boot_slots_are_shown_only_on_the_appliance_image() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    let plain = serve(&env, &d, &["--rate-limit", "0"]);
    let viewer = login(&plain, "viewer");
    let r = get(&plain, "/api/v1/os", &viewer);
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--esp"));
    drop(plain);

    // A mistyped ESP stops `spoke serve` before it listens.
    let msg = env
        .spoke(&[
            "serve",
            "--data",
            &d,
            "--addr",
            "127.0.0.1:0",
            "--esp",
            &env.s("no-esp"),
        ])
        .fails_with("usage");
    assert!(msg.contains("--esp"), "{msg}");

    // An ESP as the image lays it out: slot a blessed, slot b on trial.
    let esp = env.path("esp");
    let slots = esp.join("EFI/Linux");
    std::fs::create_dir_all(&slots).unwrap();
    std::fs::write(slots.join("eurocomply-a.efi"), b"not a real UKI").unwrap();
    std::fs::write(slots.join("eurocomply-b+2-1.efi"), b"not a real UKI").unwrap();
    let s = serve(
        &env,
        &d,
        &["--rate-limit", "0", "--esp", &esp.display().to_string()],
    );
    let viewer = login(&s, "viewer");
    let r = get(&s, "/api/v1/os", &viewer);
    assert_eq!(r.status, 200, "{:?}", r.body);
    let slots = r.body["slots"].as_array().unwrap();
    let a = slots.iter().find(|s| s["slot"] == "a").unwrap();
    let b = slots.iter().find(|s| s["slot"] == "b").unwrap();
    assert_eq!(a["blessed"], true);
    assert_eq!(b["blessed"], false);
    assert_eq!(b["tries_left"], 2);
    assert_eq!(b["tries_done"], 1);
    assert!(r.body["capabilities"]["schema_version"].as_u64().unwrap() > 0);
}

#[test]
fn a_user_holds_at_most_eight_mcp_sessions_and_ending_one_frees_a_place() {
    let env = Env::new();
    let d = spoke_with_users(&env);
    let s = serve(&env, &d, &["--rate-limit", "0"]);
    let (viewer, editor) = (login(&s, "viewer"), login(&s, "editor"));
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                   "clientInfo": {"name": "cap-test", "version": "1"}}
    })
    .to_string();
    let open = |token: &str| -> Result<String, (u16, Value)> {
        let r = ureq::post(&format!("{}/mcp", s.url))
            .set("authorization", &format!("Bearer {token}"))
            .set("accept", "application/json, text/event-stream")
            .set("content-type", "application/json")
            .send_string(&initialize);
        match r {
            Ok(r) => Ok(r.header("mcp-session-id").unwrap().to_string()),
            Err(ureq::Error::Status(code, r)) => Err((
                code,
                serde_json::from_str(&r.into_string().unwrap()).unwrap(),
            )),
            Err(e) => panic!("{e}"),
        }
    };
    let sessions: Vec<String> = (0..8).map(|_| open(&viewer).unwrap()).collect();
    let (code, body) = open(&viewer).unwrap_err();
    assert_eq!(
        (code, &body["error"]["kind"]),
        (429, &json!("too_many_sessions")),
        "{body}"
    );
    // Another user is not held to this one's sessions.
    open(&editor).unwrap();
    // Ending a session (204, as MCP clients expect) frees a place.
    let ended = ureq::delete(&format!("{}/mcp", s.url))
        .set("authorization", &format!("Bearer {viewer}"))
        .set("mcp-session-id", &sessions[0])
        .call()
        .unwrap();
    assert_eq!(ended.status(), 204);
    open(&viewer).unwrap();
    assert_eq!(open(&viewer).unwrap_err().0, 429);
}

/// What a mutating route must do while the spoke is held or suspended.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Held {
    /// 403 `read_only`, nothing written.
    Refused,
    /// Works (sign-in, revocation, reads done by POST, backups, sessions).
    Allowed,
}

/// Every mutating route the OpenAPI document lists, tried under LEGAL_HOLD
/// and under SUSPENDED with a request that would succeed on an ACTIVE
/// spoke: each is refused with `read_only` or allowed as policy says, and
/// the data the refused ones would change is unchanged. A new mutating
/// route fails this test until it is given a row here.
#[test]
fn every_mutating_route_is_refused_under_hold_and_suspension_unless_policy_allows_it() {
    let env = Env::new();
    let common::Busy {
        d,
        pending,
        applied,
    } = common::busy_spoke(&env, &["counsel"], PASSWORD, "media/next");
    env.add_role_users(&d, PASSWORD);
    let lock = env.spoke(&["eval", "--data", &d, "hydra-serum"]).ok()[0]["lock"]["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            env.spoke(&["locks", "--data", &d]).ok()[0]["id"]
                .as_str()
                .unwrap()
                .to_string()
        });
    let token_id = env
        .spoke(&[
            "users",
            "token",
            "--data",
            &d,
            "--user",
            "viewer",
            "--label",
            "to revoke",
        ])
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, recipient) = env.age_key("op.key");
    let s = serve(
        &env,
        &d,
        &[
            "--rate-limit",
            "0",
            "--media",
            &env.s("media"),
            "--backup-to",
            &env.s("backups"),
            "--backup-recipient",
            &recipient,
        ],
    );
    let admin = login(&s, "admin");
    let counsel = login(&s, "counsel");

    // The matrix: (method, route, concrete path, body, what must happen).
    let product = json!({"id": "hydra-serum", "kind": "product", "name": "Hydra Serum", "category": "leave_on",
        "markets": ["EU"], "components": [{"substance": "Aqua", "cas": "7732-18-5", "concentration": 99.0, "unit": "%w/w"}]});
    let rows: Vec<(&str, &str, String, Option<Value>, Held)> = vec![
        (
            "POST",
            "/api/v1/session",
            "/api/v1/session".into(),
            Some(json!({"user": "viewer", "password": PASSWORD})),
            Held::Allowed,
        ),
        (
            "POST",
            "/api/v1/entities",
            "/api/v1/entities".into(),
            Some(json!({"kind": "supplier", "name": "New"})),
            Held::Refused,
        ),
        (
            "PUT",
            "/api/v1/entities/{id}",
            "/api/v1/entities/hydra-serum".into(),
            Some(product),
            Held::Refused,
        ),
        (
            "DELETE",
            "/api/v1/entities/{id}",
            "/api/v1/entities/mystery-balm".into(),
            None,
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/relationships",
            "/api/v1/relationships".into(),
            Some(json!({"src": "acme", "rel": "supplies", "dst": "hydra-serum"})),
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/documents",
            "/api/v1/documents?kind=sds&filename=a.txt".into(),
            None,
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/evaluations",
            "/api/v1/evaluations".into(),
            Some(json!({"all": true})),
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/locks/{id}/replay",
            format!("/api/v1/locks/{lock}/replay"),
            None,
            Held::Allowed,
        ),
        (
            "POST",
            "/api/v1/changes/{id}/approve",
            format!("/api/v1/changes/{pending}/approve"),
            None,
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/changes/{id}/reject",
            format!("/api/v1/changes/{pending}/reject"),
            Some(json!({"reason": "no"})),
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/changes/{id}/rollback",
            format!("/api/v1/changes/{applied}/rollback"),
            None,
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/users",
            "/api/v1/users".into(),
            Some(json!({"name": "ed2", "role": "editor", "password": PASSWORD})),
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            Some(json!({"user": "editor", "label": "ci"})),
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/support-access",
            "/api/v1/support-access".into(),
            Some(json!({"grantee": "vendor-ops", "hours": 4})),
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/media/{id}/preview",
            "/api/v1/media/next/preview".into(),
            None,
            Held::Allowed,
        ),
        (
            "POST",
            "/api/v1/media/{id}/install",
            "/api/v1/media/next/install".into(),
            None,
            Held::Refused,
        ),
        (
            "POST",
            "/api/v1/backups",
            "/api/v1/backups".into(),
            None,
            Held::Allowed,
        ),
        (
            "POST",
            "/api/v1/ai/embed",
            "/api/v1/ai/embed".into(),
            Some(json!({"texts": ["methylparaben"]})),
            Held::Allowed,
        ),
        (
            "PUT",
            "/api/v1/models/active",
            "/api/v1/models/active".into(),
            Some(json!({"model": "tiny-minilm@0.2.0"})),
            Held::Refused,
        ),
    ];
    // Rows tried elsewhere, with why.
    let elsewhere = [
        (
            "DELETE",
            "/api/v1/session",
            "signing out works in every state: lifecycle_gate",
        ),
        (
            "PUT",
            "/api/v1/lifecycle",
            "the lifecycle itself: work_through_the_api_with_suspension_and_legal_hold",
        ),
        (
            "DELETE",
            "/api/v1/tokens/{id}",
            "revocation, tried below after the others",
        ),
        (
            "POST",
            "/api/v1/ai/chat",
            "a read by POST; needs a generator: tests/ai.rs",
        ),
        (
            "POST",
            "/api/v1/ai/ask",
            "a read by POST; needs a generator: tests/ai.rs",
        ),
        (
            "POST",
            "/mcp",
            "sessions open in every state; its evaluate tool is tried below",
        ),
        (
            "DELETE",
            "/mcp",
            "ending a session: a_user_holds_at_most_eight_mcp_sessions",
        ),
    ];
    let spec = get(&s, "/api/v1/openapi.json", &admin).body;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_ascii_uppercase();
            if m == "GET" || m == "HEAD" {
                continue;
            }
            assert!(
                rows.iter().any(|r| r.0 == m && r.1 == path)
                    || elsewhere.iter().any(|e| e.0 == m && e.1 == path),
                "{m} {path} is a mutating route this matrix does not try: give it a row"
            );
        }
    }
    let views = |s: &Server| -> Vec<Value> {
        [
            "/api/v1/entities?limit=1000",
            "/api/v1/changes",
            "/api/v1/models",
            "/api/v1/users",
            "/api/v1/documents",
        ]
        .iter()
        .map(|p| get(s, p, &admin).body)
        .collect()
    };
    let mcp_evaluate = |token: &str| -> String {
        let post = |session: Option<&str>, body: Value| {
            let mut r = ureq::post(&format!("{}/mcp", s.url))
                .set("authorization", &format!("Bearer {token}"))
                .set("accept", "application/json, text/event-stream")
                .set("content-type", "application/json");
            if let Some(id) = session {
                r = r.set("mcp-session-id", id);
            }
            r.send_string(&body.to_string()).unwrap()
        };
        let init = post(
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "matrix", "version": "1"}}}),
        );
        let session = init.header("mcp-session-id").unwrap().to_string();
        drop(init.into_string());
        post(
            Some(&session),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        post(
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "evaluate", "arguments": {"products": ["hydra-serum"]}}}),
        )
        .into_string()
        .unwrap()
    };

    for (state, reason) in [("LEGAL_HOLD", "case 42"), ("SUSPENDED", "case 42 closed")] {
        let r = send(
            &s,
            "PUT",
            "/api/v1/lifecycle",
            &admin,
            json!({"state": state, "reason": reason}),
        );
        if r.status == 202 {
            // Out of LEGAL_HOLD: a second administrator confirms.
            let r = send(
                &s,
                "PUT",
                "/api/v1/lifecycle",
                &counsel,
                json!({"state": state, "reason": reason}),
            );
            assert_eq!(r.body["state"], state, "{:?}", r.body);
        } else {
            assert_eq!(r.body["state"], state, "{:?}", r.body);
        }
        let before = views(&s);
        for (method, route, path, body, held) in &rows {
            let r = match (path.as_str(), body) {
                (p, _) if p.starts_with("/api/v1/documents") => {
                    call(&s, method, p, Some(&admin), Some(b"a safety data sheet"))
                }
                (p, Some(b)) => send(&s, method, p, &admin, b.clone()),
                (p, None) => call(&s, method, p, Some(&admin), None),
            };
            match held {
                Held::Refused => assert_eq!(
                    (r.status, r.kind()),
                    (403, "read_only"),
                    "{state}: {method} {route}: {:?}",
                    r.body
                ),
                Held::Allowed => assert!(
                    r.status < 400,
                    "{state}: {method} {route} must work: {} {:?}",
                    r.status,
                    r.body
                ),
            }
        }
        let evaluated = mcp_evaluate(&admin);
        assert!(
            evaluated.contains("read_only") || evaluated.contains(state),
            "{state}: the MCP evaluate tool: {evaluated}"
        );
        assert_eq!(
            views(&s),
            before,
            "{state}: a refused request changed something"
        );
    }
    // Revocation works in every state (the spoke is SUSPENDED here).
    let r = call(
        &s,
        "DELETE",
        &format!("/api/v1/tokens/{token_id}"),
        Some(&admin),
        None,
    );
    assert!(r.status < 400, "{:?}", r.body);
}
