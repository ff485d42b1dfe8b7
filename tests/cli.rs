//! The `cobro` binary driven as an operator would: each test runs the real executable in a
//! temporary directory, on a fresh SQLite file and, when `TEST_DATABASE_URL` is set, on a
//! fresh PostgreSQL database (`./scripts/test.sh` provides one).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Runs each named test function once per backend: `name::sqlite` and `name::postgres`.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::TestDb::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(db) = super::TestDb::postgres() {
                    super::$name(&db);
                }
            }
        }
    )*};
}

for_each_backend!(
    user_create,
    token_rotate,
    workspace_create_and_add_member,
    key_create,
    migrate_twice,
    bad_database_url,
    serve_end_to_end,
    serve_no_bootstrap,
    health_reports_a_database_that_does_not_answer,
    user_token_needs_membership_and_rotation,
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
        .filter_map(|url| {
            let output = db.run(url, &["migrate"], Duration::from_secs(15));
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
    assert!(line.trim_end().ends_with("ms"), "{line}");
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

    server.stop();
}

// ---------------------------------------------------------------------------------------
// A database per test, and running the binary on it
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database and a temporary directory that every `cobro` runs in.
struct TestDb {
    backend: Backend,
    url: String,
    dir: TempDir,
    /// For PostgreSQL: the server's URL and the database to drop afterwards.
    drop_database: Option<(String, String)>,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = dir.path().join("cobro.db").display().to_string();
        TestDb {
            backend: Backend::Sqlite,
            url,
            dir,
            drop_database: None,
        }
    }

    /// None (skip) without TEST_DATABASE_URL, unless REQUIRE_POSTGRES=1.
    fn postgres() -> Option<TestDb> {
        let Some(server) = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
        else {
            if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set");
            }
            eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL variant");
            return None;
        };
        let name = format!("cobro_cli_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::establish(&server)
            .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("CREATE DATABASE");
        Some(TestDb {
            backend: Backend::Postgres,
            url: with_database_name(&server, &name),
            dir: tempfile::tempdir().expect("a temporary directory"),
            drop_database: Some((server, name)),
        })
    }

    /// `cobro ARGS` on this database, which must succeed: its stdout.
    fn cobro(&self, args: &[&str]) -> String {
        self.run(&self.url, args, Duration::from_secs(60))
            .succeeded()
            .stdout
    }

    /// `cobro ARGS`, which must succeed and print JSON.
    fn cobro_json(&self, args: &[&str]) -> Value {
        let stdout = self.cobro(args);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
    }

    /// `cobro ARGS`, which must fail with one line on stderr: the message.
    fn cobro_error(&self, args: &[&str]) -> String {
        self.run(&self.url, args, Duration::from_secs(60)).error()
    }

    /// `cobro ARGS` with any DATABASE_URL, killed after `timeout`.
    fn run(&self, url: &str, args: &[&str], timeout: Duration) -> Output {
        let command = format!("DATABASE_URL={url} cobro {}", args.join(" "));
        let child = self
            .command(url)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cobro starts");
        let pid = child.id();
        let (done, finished) = mpsc::channel();
        thread::spawn(move || done.send(child.wait_with_output()));
        let Ok(output) = finished.recv_timeout(timeout) else {
            signal(pid, "KILL");
            panic!("`{command}` did not finish within {timeout:?}");
        };
        let output = output.expect("cobro's output");
        Output {
            command,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The binary, with only the environment the test chooses.
    fn command(&self, url: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cobro"));
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("COBRO_") || name == "RUST_LOG" {
                command.env_remove(&*name);
            }
        }
        command
            .env_remove("DATABASE_URL")
            .env("DATABASE_URL", url)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    fn user_token(&self, email: &str) -> String {
        let created = self.cobro_json(&["user", "create", email, "--json"]);
        text(&created["token"]).to_string()
    }

    /// A new user and a workspace they own: (token, workspace id).
    fn user_with_workspace(&self, email: &str) -> (String, String) {
        let token = self.user_token(email);
        let workspace =
            self.cobro_json(&["workspace", "create", "Shop", "--owner", email, "--json"]);
        (token, text(&workspace["id"]).to_string())
    }
}

impl TestDb {
    fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }

    /// Drops a PostgreSQL test database at once, cutting off its connections.
    fn drop_now(&self) {
        if let Some((server, name)) = &self.drop_database {
            let mut conn = PgConnection::establish(server).expect("connect to the server");
            diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut conn)
                .expect("DROP DATABASE");
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.drop_database {
            if let Ok(mut conn) = PgConnection::establish(server) {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = diesel::sql_query(sql).execute(&mut conn);
            }
        }
    }
}

/// `url` (a postgres://… URL) naming another database on the same server.
fn with_database_name(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(name);
    url.to_string()
}

struct Output {
    command: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn succeeded(self) -> Output {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\n{}",
            self.command,
            self.status,
            self.stderr
        );
        self
    }

    /// Checks that the command failed with exactly one line, `error: …`, on stderr and
    /// nothing on stdout; returns the message.
    fn error(self) -> String {
        self.error_line()
            .unwrap_or_else(|problem| panic!("{problem}"))
    }

    fn error_line(&self) -> Result<String, String> {
        let command = &self.command;
        if self.status.success() {
            return Err(format!("`{command}` succeeded: {}", self.stdout));
        }
        if !self.stdout.is_empty() {
            return Err(format!("`{command}` printed on stdout: {}", self.stdout));
        }
        match self.stderr.lines().collect::<Vec<_>>()[..] {
            [line] if line.starts_with("error: ") => Ok(line["error: ".len()..].to_string()),
            _ => Err(format!(
                "`{command}` should print one `error: …` line on stderr, not:\n{}",
                self.stderr
            )),
        }
    }
}

/// A JSON string's value.
fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

fn assert_token(token: &str) {
    assert!(
        token.len() == 40
            && token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not a 40-character lowercase hex token: {token:?}"
    );
}

fn assert_secret_key(key: &str, prefix: &str) {
    let rest = key.strip_prefix(prefix).unwrap_or_default();
    assert!(
        rest.len() >= 24 && rest.bytes().all(|b| b.is_ascii_alphanumeric()),
        "not a {prefix}… key: {key:?}"
    );
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

// ---------------------------------------------------------------------------------------
// `cobro serve` as a child process
// ---------------------------------------------------------------------------------------

/// A running `cobro serve`, killed when dropped (so a failing test leaves nothing behind).
struct Server {
    child: Child,
    base: String,
    stdout: Receiver<String>,
    log: PathBuf,
}

/// What the first start on an empty database prints.
struct Bootstrap {
    token: String,
    workspace: String,
    curl: String,
}

impl Server {
    fn start(db: &TestDb, args: &[&str]) -> Server {
        let port = free_port();
        let log = db.dir.path().join(format!("serve-{port}.log"));
        let mut child = db
            .command(&db.url)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("a log file"))
            .spawn()
            .expect("cobro serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, received) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout: received,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's log (stderr) so far, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads stdout up to the end of the bootstrap block.
    fn read_bootstrap(&self) -> Bootstrap {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut token, mut workspace, mut curl) = (None, None, None);
        let mut seen = Vec::new();
        while token.is_none() || workspace.is_none() || curl.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no bootstrap block on stdout; got {seen:?}\nlog:\n{}",
                    self.log()
                )
            });
            if let Some(value) = line.strip_prefix("  token:") {
                token = Some(value.trim().to_string());
            } else if let Some(value) = line.strip_prefix("  workspace:") {
                workspace = Some(value.trim().to_string());
            } else if line.contains("curl -H 'Authorization: Token ") {
                curl = Some(line.trim().to_string());
            }
            seen.push(line);
        }
        let first = Bootstrap {
            token: token.unwrap_or_default(),
            workspace: workspace.unwrap_or_default(),
            curl: curl.unwrap_or_default(),
        };
        assert_token(&first.token);
        assert!(first.workspace.starts_with("acc_"), "{seen:?}");
        first
    }

    /// Polls `GET /health/` until it answers 200.
    fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(&self.url("/health/"), &[]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/health/ never answered 200; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` with a user token and a workspace: (status, JSON body).
    fn get(&self, path: &str, token: &str, workspace: &str) -> (u16, Value) {
        let authorization = format!("Token {token}");
        let headers = [
            ("Authorization", authorization.as_str()),
            ("x-simple-workspace", workspace),
        ];
        http_get(&self.url(path), &headers).expect("the server answers")
    }

    /// SIGTERM; the server must exit successfully within 15 s. Returns the rest of stdout.
    fn stop(mut self) -> Vec<String> {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for cobro serve") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "cobro serve did not stop within 15 s of SIGTERM; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "cobro serve exited with {status}; log:\n{}",
            self.log()
        );
        // The process is gone, so stdout ends.
        std::iter::from_fn(|| self.stdout.recv_timeout(Duration::from_secs(5)).ok()).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a local address").port()
}

/// One GET with a new connection, like curl: (status, JSON body) for any HTTP status;
/// Err when the server cannot be reached.
fn http_get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, Value), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => return Err(e.to_string()),
    };
    let status = response.status();
    let body = response.into_string().unwrap_or_default();
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok((status, body))
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
