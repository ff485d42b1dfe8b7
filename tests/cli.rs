//! The `cobro` binary driven as an operator would: each test runs the real executable in a
//! temporary directory, on a fresh SQLite file and, when `TEST_DATABASE_URL` is set, on a
//! fresh PostgreSQL database (`./scripts/test.sh` provides one).

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::{
    assert_token, for_each_backend, http_get, text, with_database_name, Backend, Server, TestDb,
};

for_each_backend!(
    user_create,
    token_rotate,
    workspace_create_and_add_member,
    key_create,
    migrate_twice,
    bad_database_url,
    serve_end_to_end,
    serve_logs_routes_never_checkout_keys,
    provider_credentials_are_sealed_under_a_key_that_rotates,
    serve_no_bootstrap,
    health_reports_a_database_that_does_not_answer,
    user_token_needs_membership_and_rotation,
    a_revoked_key_is_refused_by_every_server_at_once,
    key_list_and_restricted_keys,
    roles_from_the_cli,
    json_log_lines_carry_the_request_id,
    the_console_from_the_first_start,
);

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

fn user_create(db: &TestDb) {
    let created = db.cobro_json(&["user", "create", " Ada@Example.com ", "--json"]);
    assert_eq!(created["email"], "ada@example.com");
    assert_token(text(&created["token"]));

    // Without --json, the token alone.
    assert_token(db.cobro(&["user", "create", "bob@example.com"]).trim());

    // Emails are compared after normalising.
    let error = db.cobro_error(&["user", "create", "ADA@example.com"]);
    assert!(error.contains("already exists"), "{error}");
    assert!(error.contains("ada@example.com"), "{error}");

    let error = db.cobro_error(&["user", "create", "not-an-email", "--json"]);
    assert!(
        error.contains("\"not-an-email\" is not a valid email"),
        "{error}"
    );
}

fn token_rotate(db: &TestDb) {
    let first = db.user_token("ada@example.com");
    let rotated = db.cobro_json(&["token", "rotate", "Ada@example.com", "--json"]);
    assert_eq!(rotated["email"], "ada@example.com");
    assert_token(text(&rotated["token"]));
    assert_ne!(text(&rotated["token"]), first);

    let error = db.cobro_error(&["token", "rotate", "nobody@example.com"]);
    assert!(error.contains("nobody@example.com"), "{error}");
}

fn workspace_create_and_add_member(db: &TestDb) {
    db.cobro(&["user", "create", "ada@example.com"]);
    db.cobro(&["user", "create", "bob@example.com"]);

    let workspace = db.cobro_json(&[
        "workspace",
        "create",
        " Ada's shop ",
        "--owner",
        "ada@example.com",
        "--json",
    ]);
    let id = text(&workspace["id"]);
    assert!(id.starts_with("acc_") && id.len() > 4, "{workspace}");
    assert_eq!(workspace["name"], "Ada's shop");

    // Without --json, the id alone.
    let plain = db.cobro(&[
        "workspace",
        "create",
        "Second",
        "--owner",
        "ada@example.com",
    ]);
    assert!(plain.trim().starts_with("acc_"), "{plain}");

    let error = db.cobro_error(&[
        "workspace",
        "create",
        "Shop",
        "--owner",
        "nobody@example.com",
    ]);
    assert!(error.contains("nobody@example.com"), "{error}");
    let error = db.cobro_error(&["workspace", "create", "  ", "--owner", "ada@example.com"]);
    assert!(error.contains("blank"), "{error}");

    let added = db.cobro(&["workspace", "add-member", id, "Bob@example.com"]);
    assert!(added.contains("bob@example.com"), "{added}");
    // Adding a member twice is not an error.
    db.cobro(&["workspace", "add-member", id, "bob@example.com"]);

    let error = db.cobro_error(&["workspace", "add-member", "acc_missing", "bob@example.com"]);
    assert!(error.contains("acc_missing"), "{error}");
    let error = db.cobro_error(&["workspace", "add-member", id, "nobody@example.com"]);
    assert!(error.contains("nobody@example.com"), "{error}");
}

fn key_create(db: &TestDb) {
    let (_, workspace) = db.user_with_workspace("ada@example.com");

    let test = db.cobro_json(&["key", "create", &workspace, "--mode", "test", "--json"]);
    assert_secret_key(text(&test["key"]), "sk_test_");
    let live = db.cobro_json(&["key", "create", &workspace, "--mode", "live", "--json"]);
    assert_secret_key(text(&live["key"]), "sk_live_");
    assert_ne!(test["key"], live["key"]);

    // Without --json, the key alone.
    let plain = db.cobro(&["key", "create", &workspace, "--mode", "test"]);
    assert_secret_key(plain.trim(), "sk_test_");

    let error = db.cobro_error(&["key", "create", "acc_missing", "--mode", "test"]);
    assert!(error.contains("acc_missing"), "{error}");
}

fn migrate_twice(db: &TestDb) {
    for _ in 0..2 {
        let migrated = db.cobro(&["migrate"]);
        assert!(migrated.contains("up to date"), "{migrated}");
    }
}

fn bad_database_url(db: &TestDb) {
    let own_backend = match db.backend {
        Backend::Sqlite => "/nonexistent-directory/cobro.db".to_string(),
        // A server that is up, but a database that is not.
        Backend::Postgres => with_database_name(&db.url, "cobro_cli_no_such_database"),
    };
    let urls = [
        "mysql://x".to_string(),
        // Nothing listens on port 1.
        "postgres://u@127.0.0.1:1/x".to_string(),
        own_backend,
    ];
    // Promptly: `run` fails the test after 15 s.
    let wrong: Vec<String> = urls
        .iter()
        .flat_map(|url| [(url, "migrate"), (url, "worker")])
        .filter_map(|(url, command)| {
            let output = db.run(url, &[command], Duration::from_secs(15));
            output.error_line().err()
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

fn serve_end_to_end(db: &TestDb) {
    let server = Server::start(db, &[]);
    let first = server.read_bootstrap();
    server.wait_until_healthy();

    // The request the printed curl command makes.
    let (url, headers) = parse_curl(&first.curl);
    assert_eq!(url, server.url("/payments/"));
    assert_eq!(
        headers,
        [
            (
                "Authorization".to_string(),
                format!("Token {}", first.token)
            ),
            ("x-simple-workspace".to_string(), first.workspace.clone()),
        ]
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let (status, body) = http_get(&url, &headers).expect("the server answers");
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert_eq!(body["count"].as_i64(), Some(0), "{body}");
    // One log line per request: method, path, status and time, and never the token.
    let log = server.log();
    let line = log
        .lines()
        .find(|line| line.contains("\"GET /payments/\" 200"))
        .unwrap_or_else(|| panic!("no request line in the log:\n{log}"));
    // …with the request's id and, last, who sent it.
    assert!(line.contains(" req_"), "{line}");
    assert!(
        line.trim_end().ends_with("ms user:admin@cobro.local"),
        "{line}"
    );
    assert!(
        !log.contains(&first.token),
        "the log shows the token:\n{log}"
    );
    server.stop();

    // Again on the same database: it has a user now, so nothing is created or printed,
    // and the first token still works.
    let again = Server::start(db, &[]);
    again.wait_until_healthy();
    let (status, body) = again.get("/payments/", &first.token, &first.workspace);
    assert_eq!(status, 200, "{body}\n{}", again.log());
    let printed = again.stop();
    assert!(
        printed.iter().all(|line| !line.contains("token")),
        "bootstrapped again: {printed:?}"
    );
}

/// A checkout key is a bearer credential: the request log names the route it came by
/// (`/pay/{key}/`), never the key, whether in the path, the query or the body.
fn serve_logs_routes_never_checkout_keys(db: &TestDb) {
    let server = Server::start(db, &[]);
    let first = server.read_bootstrap();
    server.wait_until_healthy();
    let merchant = common::Client::new(&server.url(""), &first.token, &first.workspace);
    let fields =
        json!({"amount": 500, "currency": "CLP", "date": "2026-12-01", "description": "Order"});
    let (status, payment) = merchant
        .send(
            "POST",
            "/payments/",
            Some(&fields),
            &[("x-piriod-test-mode", "true")],
        )
        .expect("an answer");
    assert_eq!(status, 201, "{payment}");
    let checkout_url = text(&payment["checkout_url"]).to_string();
    let key = checkout_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let payer = ureq::AgentBuilder::new().redirects(0).build();
    let call = |method: &str, path: &str, body: Option<&serde_json::Value>| {
        common::http(&payer, method, &server.url(path), &[], body).expect("an answer")
    };
    assert_eq!(call("GET", &format!("/pay/{key}/"), None).0, 200);
    let card =
        json!({"checkout": key, "gateway": "sandbox", "gateway_data": {"token": "tok_redirect"}});
    let (status, source) = call("POST", "/sources/", Some(&card));
    assert_eq!(status, 201, "{source}");
    let authorize = json!({"checkout": key, "source": source["id"]});
    let id = &payment["id"];
    assert_eq!(
        call(
            "POST",
            &format!("/payments/{id}/authorize/"),
            Some(&authorize)
        )
        .0,
        200
    );
    assert_eq!(
        call("GET", &format!("/payments/{id}/pay/?checkout={key}"), None).0,
        200
    );
    assert_eq!(
        call("GET", "/pay/AAAAAAAAAAAAAAAAAAAA/nowhere", None).0,
        404
    );
    let log = server.log();
    assert!(!log.contains(&key), "the log shows a checkout key:\n{log}");
    for line in [
        "\"GET /pay/{key}/\" 200",
        "\"POST /sources/\" 201",
        "\"POST /payments/{id}/authorize/\" 200",
        "\"GET /payments/{id}/pay/\" 200",
        "\"GET (no route)\" 404",
    ] {
        assert!(log.contains(line), "no {line} in the log:\n{log}");
    }
}

/// Provider credentials sealed under the server's key: on SQLite a key file made beside the
/// database (mode 0600), on PostgreSQL `COBRO_SECRET_KEY`, and `cobro secrets rotate`.
fn provider_credentials_are_sealed_under_a_key_that_rotates(db: &TestDb) {
    let (k1, k2) = ("11".repeat(32), "22".repeat(32));
    let integration = json!({"gateway": "stripe", "name": "Stripe",
        "credentials": {"secret_key": "sk_test_51QsealedUnderTheKey000000000042"}});
    let rotate = json!({"credentials": {"webhook_secret": "whsec_rotatedRotatedRotated00001"}});
    let test = [("x-piriod-test-mode", "true")];
    let port = common::free_port();
    let mut server = Server::start_on(db, port, &[]);
    let first = server.read_bootstrap();
    server.wait_until_healthy();
    if db.backend == Backend::Postgres {
        // Without a key, a server starts but keeps no provider credentials.
        let client = common::Client::new(&server.url(""), &first.token, &first.workspace);
        let (status, body) = client
            .send("POST", "/integrations/", Some(&integration), &test)
            .unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(text(&body["detail"]).contains("COBRO_SECRET_KEY"), "{body}");
        server.stop();
        server = Server::start_with(db, port, &[], &[("COBRO_SECRET_KEY", k1.as_str())]);
        server.wait_until_healthy();
    }
    let client = common::Client::new(&server.url(""), &first.token, &first.workspace);
    let (status, made) = client
        .send("POST", "/integrations/", Some(&integration), &test)
        .unwrap();
    assert_eq!(status, 201, "{made}");
    let path = format!("/integrations/{}/", text(&made["id"]));
    server.stop();

    let key_file = db.dir.path().join("cobro.db.key");
    let rotated_env: Vec<(&str, String)> = match db.backend {
        Backend::Sqlite => {
            use std::os::unix::fs::PermissionsExt;
            let before =
                std::fs::read_to_string(&key_file).expect("a key file beside the database");
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the key file is its owner's only");
            let said = db.cobro(&["secrets", "rotate"]);
            assert!(said.contains("sealed 1 integrations anew"), "{said}");
            let after = std::fs::read_to_string(&key_file).unwrap();
            assert!(after != before && after.lines().count() == 1, "{after}");
            vec![]
        }
        Backend::Postgres => {
            let both = format!("{k2},{k1}");
            let output = db
                .command(&db.url)
                .env("COBRO_SECRET_KEY", &both)
                .args(["secrets", "rotate"])
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&output.stdout);
            assert!(said.contains("sealed 1 integrations anew"), "{said}");
            vec![("COBRO_SECRET_KEY", k2.clone())]
        }
    };
    let env: Vec<(&str, &str)> = rotated_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let again = Server::start_with(db, port, &[], &env);
    again.wait_until_healthy();
    let client = common::Client::new(&again.url(""), &first.token, &first.workspace);
    // A change of credentials opens the sealed ones: they open under the new key.
    let (status, body) = client.send("PATCH", &path, Some(&rotate), &test).unwrap();
    assert_eq!(status, 200, "{body}\n{}", again.log());
    assert_eq!(body["credentials"]["secret_key"], "sk_test_…0042");
    again.stop();
    if db.backend == Backend::Postgres {
        // The old key alone no longer opens them.
        let old = Server::start_with(db, port, &[], &[("COBRO_SECRET_KEY", k1.as_str())]);
        old.wait_until_healthy();
        let client = common::Client::new(&old.url(""), &first.token, &first.workspace);
        let (status, _) = client.send("PATCH", &path, Some(&rotate), &test).unwrap();
        assert_eq!(status, 500);
        assert!(!old.log().contains("rotatedRotated"), "a secret in the log");
    }
    // A malformed key stops the server at start, with the reason.
    let output = db
        .command(&db.url)
        .env("COBRO_SECRET_KEY", "not-hex")
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && said.contains("COBRO_SECRET_KEY: a secret key is 64 hex digits"),
        "{said}"
    );
}

fn health_reports_a_database_that_does_not_answer(db: &TestDb) {
    let name = match db.backend {
        Backend::Postgres => db.backend_name(),
        // A SQLite file cannot be taken away from open connections.
        Backend::Sqlite => return,
    };
    let server = Server::start(db, &["--no-bootstrap"]);
    server.wait_until_healthy();
    let (status, body) = http_get(&server.url("/health/"), &[]).expect("the server answers");
    assert_eq!(
        (status, body),
        (200, json!({"status": "ok", "database": name}))
    );
    db.drop_now();
    let (status, body) = http_get(&server.url("/health/"), &[]).expect("the server answers");
    assert_eq!(
        (status, body),
        (503, json!({"status": "unavailable", "database": name}))
    );
}

fn serve_no_bootstrap(db: &TestDb) {
    let server = Server::start(db, &["--no-bootstrap"]);
    server.wait_until_healthy();
    // A bootstrap block would have been printed before the server started answering.
    let printed = server.stop();
    assert!(
        printed.iter().all(|line| !line.contains("token")),
        "{printed:?}"
    );

    // The database is still empty, so a normal start bootstraps it.
    Server::start(db, &[]).read_bootstrap();
}

fn user_token_needs_membership_and_rotation(db: &TestDb) {
    let ada = db.user_token("ada@example.com");
    let (bob, workspace) = db.user_with_workspace("bob@example.com");
    let key = db.cobro(&["key", "create", &workspace, "--mode", "test"]);

    let server = Server::start(db, &[]);
    server.wait_until_healthy();

    assert_eq!(server.get("/payments/", &bob, &workspace).0, 200);
    // Ada's token is valid, but she is not a member of Bob's workspace.
    assert_eq!(server.get("/payments/", &ada, &workspace).0, 403);
    db.cobro(&["workspace", "add-member", &workspace, "ada@example.com"]);
    assert_eq!(server.get("/payments/", &ada, &workspace).0, 200);

    let rotated = db.cobro_json(&["token", "rotate", "ada@example.com", "--json"]);
    // The running server refuses the old token from its very next request: no cache window.
    let (status, body) = server.get("/payments/", &ada, &workspace);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body, json!({"detail": "Invalid token."}));
    assert_eq!(
        server
            .get("/payments/", text(&rotated["token"]), &workspace)
            .0,
        200
    );
    // Only Ada's token changed.
    assert_eq!(server.get("/payments/", &bob, &workspace).0, 200);

    // A workspace secret key carries its own workspace and mode.
    let bearer = format!("Bearer {}", key.trim());
    let (status, body) =
        http_get(&server.url("/payments/"), &[("Authorization", &bearer)]).expect("an answer");
    assert_eq!(status, 200, "{body}");

    // A role taken away by another process counts from the next request too.
    db.cobro(&[
        "workspace",
        "set-role",
        &workspace,
        "ada@example.com",
        "viewer",
    ]);
    let ada = text(&rotated["token"]);
    let (status, _) = server.post(
        "/payments/",
        ada,
        &workspace,
        json!({"amount": 5, "currency": "CLP", "date": "2026-01-01"}),
    );
    assert_eq!(status, 403);
    assert_eq!(server.get("/payments/", ada, &workspace).0, 200);
    db.cobro(&["workspace", "remove-member", &workspace, "ada@example.com"]);
    assert_eq!(server.get("/payments/", ada, &workspace).0, 403);

    server.stop();
}

/// Two `cobro serve` processes on one database: a key revoked through one (or by the CLI)
/// is refused by the other on its very next request.
fn a_revoked_key_is_refused_by_every_server_at_once(db: &TestDb) {
    let (owner, workspace) = db.user_with_workspace("ada@example.com");
    let first = Server::start(db, &["--no-bootstrap"]);
    let second = Server::start(db, &["--no-bootstrap"]);
    first.wait_until_healthy();
    second.wait_until_healthy();
    let bearer = |key: &str| format!("Bearer {key}");
    let get_with = |server: &Server, key: &str| {
        http_get(
            &server.url("/payments/"),
            &[("Authorization", &bearer(key))],
        )
        .expect("an answer")
    };

    // A write let in on a cached key: on PostgreSQL its check rides on its BEGIN.
    let post_with = |server: &Server, key: &str| {
        let answer = ureq::post(&server.url("/payments/"))
            .set("Authorization", &bearer(key))
            .set("Content-Type", "application/json")
            .send_string(r#"{"amount": 5, "currency": "CLP", "date": "2026-12-01", "description": "Cached"}"#);
        match answer {
            Ok(answer) => answer.status(),
            Err(ureq::Error::Status(status, _)) => status,
            Err(err) => panic!("no answer: {err}"),
        }
    };
    let payments = || first.get("/payments/", &owner, &workspace).1["count"].clone();

    // Revoked through the API of the first server.
    let made = db.cobro_json(&["key", "create", &workspace, "--mode", "live", "--json"]);
    let key = text(&made["key"]);
    assert_eq!(get_with(&second, key).0, 200);
    assert_eq!(get_with(&first, key).0, 200);
    assert_eq!(post_with(&second, key), 201);
    // Another credential made meanwhile: the cached key is asked about again, and holds.
    db.cobro_json(&["key", "create", &workspace, "--mode", "live", "--json"]);
    assert_eq!(post_with(&second, key), 201);
    let written = payments();
    assert_eq!(written, json!(2));
    let id = made["id"].as_i64().unwrap();
    let (status, revoked) = first.delete(&format!("/keys/{id}/"), &owner, &workspace);
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked"].is_string(), "{revoked}");
    // The second server still holds the key as valid: its write is refused and writes nothing.
    assert_eq!(post_with(&second, key), 401);
    assert_eq!(payments(), written);
    let (status, body) = get_with(&second, key);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body, json!({"detail": "Invalid token."}));
    assert_eq!(get_with(&first, key).0, 401);

    // Revoked by the CLI, a third process.
    let made = db.cobro_json(&[
        "key",
        "create",
        &workspace,
        "--mode",
        "test",
        "--read-only",
        "--json",
    ]);
    let key = text(&made["key"]);
    assert!(key.starts_with("rk_test_"), "{made}");
    assert_eq!(get_with(&second, key).0, 200);
    let said = db.cobro(&["key", "revoke", &workspace, &made["id"].to_string()]);
    assert!(said.contains("revoked rk_test_…"), "{said}");
    assert_eq!(get_with(&second, key).0, 401);
    assert_eq!(get_with(&first, key).0, 401);

    first.stop();
    second.stop();
}

/// `COBRO_LOG_FORMAT=json`: one JSON object per line, the request line with its fields, and
/// the same request id as the answer's header.
fn json_log_lines_carry_the_request_id(db: &TestDb) {
    let server = Server::start_with(
        db,
        common::free_port(),
        &[],
        &[("COBRO_LOG_FORMAT", "json")],
    );
    let first = server.read_bootstrap();
    server.wait_until_healthy();
    let authorization = format!("Token {}", first.token);
    let call = |trace: Option<&str>| {
        let mut request = ureq::post(&server.url("/payments/"))
            .set("Authorization", &authorization)
            .set("x-simple-workspace", &first.workspace);
        if let Some(trace) = trace {
            request = request.set("X-Request-Id", trace);
        }
        let answer = request
            .set("Content-Type", "application/json")
            .send_string(r#"{"amount": 5, "currency": "CLP", "date": "2026-12-01", "description": "Traced"}"#)
            .expect("a 201");
        answer.header("x-request-id").expect("an id").to_string()
    };
    assert_eq!(call(Some("json-trace-1")), "json-trace-1");
    let generated = call(None);
    assert!(generated.starts_with("req_"), "{generated}");
    let log = server.log();
    server.stop();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() > 3, "{log}");
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    for id in ["json-trace-1", generated.as_str()] {
        let request = lines
            .iter()
            .find(|l| l["request_id"] == id && l["route"].is_string())
            .unwrap_or_else(|| panic!("no request line for {id}:\n{log}"));
        assert_eq!(request["method"], "POST");
        assert_eq!(request["route"], "/payments/");
        assert_eq!(request["status"], 201);
        assert!(request["duration_ms"].is_number(), "{request}");
        assert_eq!(request["actor"], "user:admin@cobro.local");
    }
    assert!(!log.contains(&first.token), "the log shows the token");
}

/// `cobro key create --read-only | --allow …`, `key list` and their refusals.
fn key_list_and_restricted_keys(db: &TestDb) {
    let (_, workspace) = db.user_with_workspace("ada@example.com");
    let full = db.cobro_json(&[
        "key", "create", &workspace, "--mode", "test", "--name", "server", "--json",
    ]);
    assert!(text(&full["key"]).starts_with("sk_test_"), "{full}");
    assert_eq!(full["permissions"], Value::Null);
    let read_only = db.cobro_json(&[
        "key",
        "create",
        &workspace,
        "--mode",
        "test",
        "--read-only",
        "--json",
    ]);
    assert!(
        text(&read_only["key"]).starts_with("rk_test_"),
        "{read_only}"
    );
    assert_eq!(
        read_only["permissions"].as_array().unwrap().len(),
        8,
        "{read_only}"
    );
    let some = db.cobro_json(&[
        "key",
        "create",
        &workspace,
        "--mode",
        "test",
        "--allow",
        "payments:write,refunds:read",
        "--json",
    ]);
    assert_eq!(
        some["permissions"],
        json!(["payments:write", "refunds:read"])
    );

    for bad in ["payments:delete", "members:read", "keys:write", "nothing"] {
        let error = db.cobro_error(&[
            "key", "create", &workspace, "--mode", "test", "--allow", bad,
        ]);
        assert!(error.contains("not a permission"), "{bad}: {error}");
    }
    let refused = db.run(
        &db.url,
        &[
            "key",
            "create",
            &workspace,
            "--mode",
            "test",
            "--read-only",
            "--allow",
            "payments:read",
        ],
        Duration::from_secs(60),
    );
    assert!(
        !refused.status.success() && refused.stderr.contains("cannot be used with"),
        "{}",
        refused.stderr
    );

    db.cobro(&["key", "revoke", &workspace, &some["id"].to_string()]);
    let listed: Vec<Value> = db
        .cobro(&["key", "list", &workspace, "--mode", "test", "--json"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    // Newest first, never the secret; each by its kind and last four characters.
    assert_eq!(listed[0]["id"], some["id"]);
    assert!(listed[0]["revoked"].is_string());
    assert!(listed[1]["revoked"].is_null());
    assert_eq!(listed[2]["name"], "server");
    for (key, made) in listed.iter().zip([&some, &read_only, &full]) {
        let secret = text(&made["key"]);
        assert!(key.get("secret").is_none(), "{key}");
        let expected = format!("{}…{}", &secret[..8], &secret[secret.len() - 4..]);
        assert_eq!(key["prefix"], expected.as_str());
    }
    assert!(db
        .cobro(&["key", "list", &workspace, "--mode", "live"])
        .trim()
        .is_empty());
    let error = db.cobro_error(&["key", "revoke", &workspace, "999999"]);
    assert!(error.contains("no key 999999"), "{error}");
}

/// `cobro workspace add-member --role`, `set-role`, `remove-member` and `members`, and the
/// rule that a workspace keeps an owner.
fn roles_from_the_cli(db: &TestDb) {
    let (_, workspace) = db.user_with_workspace("ada@example.com");
    db.cobro(&["user", "create", "bob@example.com"]);
    let added = db.cobro(&[
        "workspace",
        "add-member",
        &workspace,
        "bob@example.com",
        "--role",
        "viewer",
    ]);
    assert!(added.contains("as viewer"), "{added}");
    let members = db.cobro(&["workspace", "members", &workspace]);
    assert!(members.contains("owner\tada@example.com"), "{members}");
    assert!(members.contains("viewer\tbob@example.com"), "{members}");

    let error = db.cobro_error(&[
        "workspace",
        "set-role",
        &workspace,
        "ada@example.com",
        "admin",
    ]);
    assert!(error.contains("at least one owner"), "{error}");
    let error = db.cobro_error(&["workspace", "remove-member", &workspace, "ada@example.com"]);
    assert!(error.contains("last owner"), "{error}");
    let refused = db.run(
        &db.url,
        &[
            "workspace",
            "set-role",
            &workspace,
            "bob@example.com",
            "king",
        ],
        Duration::from_secs(60),
    );
    assert!(
        !refused.status.success() && refused.stderr.contains("invalid value"),
        "{}",
        refused.stderr
    );

    db.cobro(&[
        "workspace",
        "set-role",
        &workspace,
        "bob@example.com",
        "owner",
    ]);
    let said = db.cobro(&[
        "workspace",
        "set-role",
        &workspace,
        "ada@example.com",
        "developer",
    ]);
    assert!(said.contains("is developer"), "{said}");
    db.cobro(&["workspace", "remove-member", &workspace, "ada@example.com"]);
    let members = db.cobro(&["workspace", "members", &workspace, "--json"]);
    assert_eq!(members.lines().count(), 1, "{members}");
    let error = db.cobro_error(&["workspace", "remove-member", &workspace, "ada@example.com"]);
    assert!(error.contains("not found"), "{error}");
}

fn assert_secret_key(key: &str, prefix: &str) {
    let rest = key.strip_prefix(prefix).unwrap_or_default();
    assert!(
        rest.len() >= 24 && rest.bytes().all(|b| b.is_ascii_alphanumeric()),
        "not a {prefix}… key: {key:?}"
    );
}

/// The URL and headers of `curl -H 'Name: value' … URL`.
fn parse_curl(line: &str) -> (String, Vec<(String, String)>) {
    let parts: Vec<&str> = line.split('\'').collect();
    let headers = parts
        .iter()
        .skip(1)
        .step_by(2)
        .map(|header| {
            let (name, value) = header.split_once(": ").expect("Name: value");
            (name.to_string(), value.to_string())
        })
        .collect();
    let url = parts.last().unwrap_or(&"").trim().to_string();
    (url, headers)
}

/// A console sign-in as a browser sends it: (status, the session cookie's value if set).
fn console_sign_in(server: &Server, email: &str, password: &str) -> (u16, Option<String>) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let result = agent
        .post(&server.url("/dashboard/sign-in/"))
        .send_form(&[("email", email), ("password", password)]);
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(err) => panic!("sign-in: {err}"),
    };
    let cookie = response
        .header("set-cookie")
        .and_then(|c| c.strip_prefix("cobro_session="))
        .map(|c| c.split(';').next().unwrap_or("").to_string());
    (response.status(), cookie)
}

fn the_console_from_the_first_start(db: &TestDb) {
    let server = Server::start(db, &[]);
    let first = server.read_bootstrap();
    server.wait_until_healthy();
    // The printed link opens the console once.
    assert!(
        first
            .sign_in
            .starts_with(&server.url("/dashboard/sign-in/")),
        "{}",
        first.sign_in
    );
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let opened = agent.get(&first.sign_in).call().expect("the link answers");
    assert_eq!(opened.status(), 303);
    assert_eq!(opened.header("location"), Some("/dashboard/"));
    assert!(opened
        .header("set-cookie")
        .is_some_and(|c| c.contains("HttpOnly")));
    let again = agent.get(&first.sign_in).call().expect("the link answers");
    assert_eq!(
        again.header("location"),
        Some("/dashboard/sign-in/?link=used")
    );
    // No password yet: none signs in.
    assert_eq!(console_sign_in(&server, "admin@cobro.local", "").0, 401);

    // A password from stdin (not a terminal): a short one is refused.
    let short = db
        .cobro_with_input(
            &["user", "set-password", "admin@cobro.local"],
            "too short\n",
        )
        .error();
    assert!(short.contains("at least 12 characters"), "{short}");
    let set = db
        .cobro_with_input(
            &["user", "set-password", "Admin@cobro.local"],
            "a long enough password\n",
        )
        .succeeded();
    assert!(
        set.stdout.contains("password set for admin@cobro.local"),
        "{}",
        set.stdout
    );
    let (status, cookie) = console_sign_in(&server, "admin@cobro.local", "a long enough password");
    assert_eq!(status, 303);
    assert!(cookie.is_some_and(|c| c.len() >= 32));
    assert!(
        !server.log().contains("a long enough password"),
        "the log shows a password"
    );

    // A user made with a password signs in with it; a link can be printed for anyone.
    db.cobro_with_input(
        &["user", "create", "eve@example.com", "--password"],
        "eve's long password\n",
    )
    .succeeded();
    assert_eq!(
        console_sign_in(&server, "eve@example.com", "eve's long password").0,
        303
    );
    let link = db.cobro(&[
        "user",
        "sign-in-link",
        "eve@example.com",
        "--base-url",
        &server.url(""),
    ]);
    let opened = agent.get(link.trim()).call().expect("the link answers");
    assert_eq!(opened.header("location"), Some("/dashboard/"));
    let unknown = db.cobro_error(&["user", "sign-in-link", "nobody@example.com"]);
    assert!(
        unknown.contains("no user with email nobody@example.com"),
        "{unknown}"
    );
    server.stop();
}
