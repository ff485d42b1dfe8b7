//! What the tests that run the real `cobro` binary share: a fresh database per test (a SQLite
//! file, or a PostgreSQL database created on `TEST_DATABASE_URL`), running `cobro` commands
//! on it, `cobro serve` as a child process, and plain HTTP calls. Each test target uses its
//! own part of it (`mod common;`).

#![allow(dead_code)]

pub mod proxy;
pub mod receiver;

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;
use tempfile::TempDir;

/// Runs each named test function once per backend: `name::sqlite` and `name::postgres`.
#[allow(unused_macros)]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&$crate::common::TestDb::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(db) = $crate::common::TestDb::postgres() {
                    super::$name(&db);
                }
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use for_each_backend;

// ---------------------------------------------------------------------------------------
// A database per test, and running the binary on it
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database and a temporary directory that every `cobro` runs in.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: TempDir,
    /// For PostgreSQL: the server's URL and the database to drop afterwards.
    pub drop_database: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
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
    pub fn postgres() -> Option<TestDb> {
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
    pub fn cobro(&self, args: &[&str]) -> String {
        self.run(&self.url, args, Duration::from_secs(60))
            .succeeded()
            .stdout
    }

    /// `cobro ARGS`, which must succeed and print JSON.
    pub fn cobro_json(&self, args: &[&str]) -> Value {
        let stdout = self.cobro(args);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
    }

    /// `cobro ARGS`, which must fail with one line on stderr: the message.
    pub fn cobro_error(&self, args: &[&str]) -> String {
        self.run(&self.url, args, Duration::from_secs(60)).error()
    }

    /// `cobro ARGS` with any DATABASE_URL, killed after `timeout`.
    pub fn run(&self, url: &str, args: &[&str], timeout: Duration) -> Output {
        self.run_with_input(url, args, None, timeout)
    }

    /// `cobro ARGS` on this database with `input` on its stdin (not a terminal).
    pub fn cobro_with_input(&self, args: &[&str], input: &str) -> Output {
        self.run_with_input(&self.url, args, Some(input), Duration::from_secs(60))
    }

    fn run_with_input(
        &self,
        url: &str,
        args: &[&str],
        input: Option<&str>,
        timeout: Duration,
    ) -> Output {
        use std::io::Write;
        let command = format!("DATABASE_URL={url} cobro {}", args.join(" "));
        let mut spawned = self.command(url);
        spawned
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if input.is_some() {
            spawned.stdin(Stdio::piped());
        }
        let mut child = spawned.spawn().expect("cobro starts");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(input.as_bytes())
                .expect("cobro reads its stdin");
        }
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
    pub fn command(&self, url: &str) -> Command {
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
            // Tests send requests as fast as they can.
            .env("COBRO_RATE_LIMIT", "0")
            // and receive webhooks on 127.0.0.1, where failed deliveries are retried at once.
            .env("COBRO_WEBHOOK_ALLOW_PRIVATE", "1")
            .env("COBRO_WEBHOOK_FIRST_RETRY_MS", "100")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    pub fn user_token(&self, email: &str) -> String {
        let created = self.cobro_json(&["user", "create", email, "--json"]);
        text(&created["token"]).to_string()
    }

    /// A new user and a workspace they own: (token, workspace id).
    pub fn user_with_workspace(&self, email: &str) -> (String, String) {
        let token = self.user_token(email);
        let workspace =
            self.cobro_json(&["workspace", "create", "Shop", "--owner", email, "--json"]);
        (token, text(&workspace["id"]).to_string())
    }
}

impl TestDb {
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }

    /// Drops a PostgreSQL test database at once, cutting off its connections.
    pub fn drop_now(&self) {
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
pub fn with_database_name(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(name);
    url.to_string()
}

pub struct Output {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn succeeded(self) -> Output {
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
    pub fn error(self) -> String {
        self.error_line()
            .unwrap_or_else(|problem| panic!("{problem}"))
    }

    pub fn error_line(&self) -> Result<String, String> {
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
pub fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

pub fn assert_token(token: &str) {
    assert!(
        token.len() == 40
            && token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not a 40-character lowercase hex token: {token:?}"
    );
}

pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

// ---------------------------------------------------------------------------------------
// `cobro serve` as a child process
// ---------------------------------------------------------------------------------------

/// A running `cobro serve`, killed when dropped (so a failing test leaves nothing behind).
pub struct Server {
    child: Child,
    port: u16,
    base: String,
    stdout: Receiver<String>,
    log: PathBuf,
}

/// What the first start on an empty database prints.
pub struct Bootstrap {
    pub token: String,
    pub workspace: String,
    pub curl: String,
    /// The console's one-time sign-in link.
    pub sign_in: String,
}

impl Server {
    pub fn start(db: &TestDb, args: &[&str]) -> Server {
        Server::start_on(db, free_port(), args)
    }

    /// Starts on a given port: a restart where the previous server listened, say. The log
    /// of every server that ran on `port` is kept, one after the other.
    pub fn start_on(db: &TestDb, port: u16, args: &[&str]) -> Server {
        Server::start_with(db, port, args, &[])
    }

    /// Starts on `port` with extra environment variables.
    pub fn start_with(db: &TestDb, port: u16, args: &[&str], env: &[(&str, &str)]) -> Server {
        let log = db.dir.path().join(format!("serve-{port}.log"));
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("a log file");
        let mut child = db
            .command(&db.url)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log_file)
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
            port,
            base: format!("http://127.0.0.1:{port}"),
            stdout: received,
            log,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's log (stderr) so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads stdout up to the end of the bootstrap block.
    pub fn read_bootstrap(&self) -> Bootstrap {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut token, mut workspace, mut curl, mut sign_in) = (None, None, None, None);
        let mut seen = Vec::new();
        while token.is_none() || workspace.is_none() || curl.is_none() || sign_in.is_none() {
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
            } else if line.contains("/dashboard/sign-in/") {
                sign_in = Some(line.trim().to_string());
            }
            seen.push(line);
        }
        let first = Bootstrap {
            token: token.unwrap_or_default(),
            workspace: workspace.unwrap_or_default(),
            curl: curl.unwrap_or_default(),
            sign_in: sign_in.unwrap_or_default(),
        };
        assert_token(&first.token);
        assert!(first.workspace.starts_with("acc_"), "{seen:?}");
        first
    }

    /// Polls `GET /health/` until it answers 200.
    pub fn wait_until_healthy(&self) {
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
    pub fn get(&self, path: &str, token: &str, workspace: &str) -> (u16, Value) {
        let authorization = format!("Token {token}");
        let headers = [
            ("Authorization", authorization.as_str()),
            ("x-simple-workspace", workspace),
        ];
        http_get(&self.url(path), &headers).expect("the server answers")
    }

    /// A request as the user `token`, in `workspace`'s live mode.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        workspace: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let authorization = format!("Token {token}");
        let headers = [
            ("Authorization", authorization.as_str()),
            ("x-simple-workspace", workspace),
        ];
        http(&ureq::agent(), method, &self.url(path), &headers, body).expect("the server answers")
    }

    pub fn post(&self, path: &str, token: &str, workspace: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, token, workspace, Some(&body))
    }

    pub fn delete(&self, path: &str, token: &str, workspace: &str) -> (u16, Value) {
        self.send("DELETE", path, token, workspace, None)
    }

    /// SIGTERM; the server must exit successfully within 15 s. Returns the rest of stdout.
    pub fn stop(mut self) -> Vec<String> {
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

    /// SIGKILL, as a crash or an out-of-memory kill would end it: no graceful shutdown, the
    /// requests in flight get no answer. Returns once the process is gone.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL cobro serve");
        self.child.wait().expect("waiting for cobro serve");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a local address").port()
}

/// One GET with a new connection, like curl: (status, JSON body) for any HTTP status;
/// Err when the server cannot be reached.
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, Value), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    http(&agent, "GET", url, headers, None).map_err(|e| e.message)
}

/// A request that got no complete answer: nothing listened, or the connection broke.
#[derive(Debug)]
pub struct NoAnswer {
    /// What went wrong, for counting: `ConnectionRefused`, `ConnectionReset`, `TimedOut`…
    pub kind: String,
    pub message: String,
}

/// One request through `agent` (which may reuse a connection), with a JSON body if any:
/// (status, JSON body, or the text when it is not JSON) for any HTTP status.
pub fn http(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<(u16, Value), NoAnswer> {
    http_answer(agent, method, url, headers, body).map(|answer| (answer.status, answer.body))
}

/// An answer with the headers a test looks at.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
}

/// As [`http`], keeping `Retry-After`.
pub fn http_answer(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Answer, NoAnswer> {
    let mut request = agent.request(method, url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(&body.to_string()),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(transport)) => {
            let io_kind = std::error::Error::source(&transport)
                .and_then(|source| source.downcast_ref::<std::io::Error>())
                .map(std::io::Error::kind);
            return Err(NoAnswer {
                kind: match io_kind {
                    Some(kind) => format!("{kind:?}"),
                    None => format!("{:?}", transport.kind()),
                },
                message: transport.to_string(),
            });
        }
    };
    let status = response.status();
    let retry_after = response.header("retry-after").map(str::to_string);
    let text = response.into_string().map_err(|e| NoAnswer {
        kind: format!("body: {:?}", e.kind()),
        message: format!("{method} {url}: {status}, then the body broke off: {e}"),
    })?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer {
        status,
        body,
        retry_after,
    })
}

// ---------------------------------------------------------------------------------------
// A user's calls to one server
// ---------------------------------------------------------------------------------------

pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: String,
    workspace: String,
}

impl Client {
    /// `base`: the server's address, `http://127.0.0.1:PORT`.
    pub fn new(base: &str, token: &str, workspace: &str) -> Client {
        Client {
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(2))
                .timeout(Duration::from_secs(20))
                .build(),
            base: base.to_string(),
            authorization: format!("Token {token}"),
            workspace: workspace.to_string(),
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), NoAnswer> {
        self.send(method, path, body, &[])
    }

    /// `POST /payments/` with an idempotency key.
    pub fn create(&self, key: &str, fields: &Value) -> Result<(u16, Value), NoAnswer> {
        self.send(
            "POST",
            "/payments/",
            Some(fields),
            &[("Idempotency-Key", key)],
        )
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Result<(u16, Value), NoAnswer> {
        let mut headers = vec![
            ("Authorization", self.authorization.as_str()),
            ("x-simple-workspace", self.workspace.as_str()),
        ];
        headers.extend_from_slice(extra);
        http(
            &self.agent,
            method,
            &format!("{}{path}", self.base),
            &headers,
            body,
        )
    }

    /// A call that must be answered.
    pub fn expect_answer(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call(method, path, body)
            .unwrap_or_else(|no| panic!("{method} {path}: no answer: {}", no.message))
    }
}

// ---------------------------------------------------------------------------------------
// A PostgreSQL cluster of the test's own, to stop and start under a running server
// ---------------------------------------------------------------------------------------

/// A throwaway PostgreSQL cluster on 127.0.0.1, as `scripts/pg-cluster.sh` makes them, that
/// a test may stop and start again on the same port. Removed when dropped.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// As root, the cluster belongs to the `postgres` user (initdb refuses root).
    owner: Option<&'static str>,
}

impl PgCluster {
    /// None (skip) when PostgreSQL's programs are not installed, unless REQUIRE_POSTGRES=1.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = pg_bin() else {
            if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_POSTGRES=1 but initdb, pg_ctl and postgres were not found");
            }
            eprintln!("PostgreSQL's programs are not installed: skipping");
            return None;
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let dir = PathBuf::from(format!("/tmp/cobro-pg-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&dir).expect("a directory for the cluster");
        let owner = root.then_some("postgres");
        if let Some(owner) = owner {
            let exists = Command::new("id")
                .arg(owner)
                .output()
                .is_ok_and(|o| o.status.success());
            if !exists {
                run_ok(Command::new("useradd").args([
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    owner,
                ]));
            }
            run_ok(Command::new("chown").arg(format!("{owner}:")).arg(&dir));
        }
        let cluster = PgCluster {
            bin,
            dir,
            port: free_port(),
            owner,
        };
        run_ok(
            cluster
                .as_owner("initdb")
                .args(["-U", "postgres", "--auth=trust", "--no-sync", "-D"])
                .arg(cluster.dir.join("data")),
        );
        cluster.start_again();
        Some(cluster)
    }

    /// The cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops at once, as a crash or a kill of the server would (`-m immediate`).
    pub fn stop(&self) {
        run_ok(
            self.as_owner("pg_ctl")
                .args(["stop", "-m", "immediate", "-D"])
                .arg(self.dir.join("data")),
        );
    }

    /// Starts (again) on the same port, and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        run_ok(
            self.as_owner("pg_ctl")
                .args(["start", "-w", "-D"])
                .arg(self.dir.join("data"))
                .args(["-l"])
                .arg(self.dir.join("postgres.log"))
                .args(["-o", &options]),
        );
    }

    fn as_owner(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match self.owner {
            Some(owner) => {
                let mut command = Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding initdb, pg_ctl and postgres: from PATH, or the newest Debian install
/// (the same search as `scripts/pg-cluster.sh`).
fn pg_bin() -> Option<PathBuf> {
    let complete = |dir: &std::path::Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    for dir in on_path {
        if let Ok(initdb) = std::fs::canonicalize(dir.join("initdb")) {
            if let Some(real) = initdb.parent().filter(|d| complete(d)) {
                return Some(real.to_path_buf());
            }
        }
    }
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| complete(d))
        .collect();
    installed.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    installed.pop()
}

fn run_ok(command: &mut Command) {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
