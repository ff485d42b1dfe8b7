//! The test harness: one real cobro server per backend (SQLite file, and PostgreSQL when
//! `TEST_DATABASE_URL` is set), started once per test process, and a fresh user and
//! workspace for every test, so that tests run in parallel without seeing each other.

use std::net::TcpListener;
use std::sync::OnceLock;

use cobro::accounts;
use cobro::config::Settings;
use cobro::db::{DatabaseUrl, Db};
pub use serde_json::{json, Value};

pub const ALLOWED_ORIGIN: &str = "https://dashboard.example";
pub const TEST_SECRET_KEY: &str =
    "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Server {
    pub base: String,
    pub db: Db,
}

static SQLITE: OnceLock<Server> = OnceLock::new();
static POSTGRES: OnceLock<Option<Server>> = OnceLock::new();

fn start(database_url: &str) -> Server {
    let url = DatabaseUrl::parse(database_url).expect("database url");
    let db = Db::connect(&url, 8, "NORMAL").expect("connect to the test database");
    serve(db, |_| {})
}

/// Starts a server on `db` with the test settings, changed by `adjust`.
pub fn serve(db: Db, adjust: impl FnOnce(&mut Settings)) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::from_env().expect("settings");
    settings.workers = 2;
    settings.public_url = None;
    settings.cors_origins = vec![ALLOWED_ORIGIN.to_string()];
    settings.body_limit = 64 * 1024;
    // Tests send requests as fast as they can; throttling has its own servers.
    settings.rate_limit = 0;
    // Console sign-ins come from 127.0.0.1 all at once; console.rs tests the limits.
    settings.sign_in_limit_address = 1_000_000;
    settings.sign_in_limit_email = 1_000;
    // Webhooks are delivered by the servers of the webhook tests (webhooks.rs), which reach
    // their receivers on 127.0.0.1 and retry in milliseconds.
    settings.webhook_worker = false;
    settings.webhook_allow_private = false;
    // Provider credentials are sealed under this key (on both backends alike).
    settings.secret_keys = cobro::config::SecretKeys(vec![TEST_SECRET_KEY.to_string()]);
    if let Some(stripe) = stripe_base() {
        settings.stripe_api_base = stripe;
        // Stripe.js from localstripe itself: it calls the emulator it came from.
        settings.stripe_js_url = format!("{}/js.stripe.com/v3/", stripe_url().unwrap());
    }
    adjust(&mut settings);
    let server_db = db.clone();
    if settings.webhook_worker {
        // Runs as long as the test process, like the server.
        std::mem::forget(cobro::webhooks::worker::spawn(
            db.clone(),
            (&settings).into(),
        ));
    }
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            cobro::startup::serve(&settings, server_db, listener, false)
                .expect("server")
                .await
        })
    });
    Server { base, db }
}

/// A second server on the same database as `backend`'s, with other settings: for tests of
/// settings (throttling, key expiry). It lives as long as the test process.
pub fn server_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> Option<&'static Server> {
    let shared = server(backend)?;
    Some(Box::leak(Box::new(serve(shared.db.clone(), adjust))))
}

impl App {
    pub fn backend(&self) -> Backend {
        match self.server.db.backend {
            cobro::db::Backend::Sqlite => Backend::Sqlite,
            cobro::db::Backend::Postgres => Backend::Postgres,
        }
    }

    /// The same user, workspace and mode, talking to another server.
    pub fn on(&self, server: &'static Server) -> App {
        App {
            server,
            ..self.clone()
        }
    }
}

/// The localstripe that `scripts/test.sh` started (`TEST_STRIPE_URL`); None skips the Stripe
/// tests, unless REQUIRE_STRIPE=1.
pub fn stripe_url() -> Option<String> {
    match std::env::var("TEST_STRIPE_URL") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_string()),
        _ => {
            if std::env::var("REQUIRE_STRIPE").as_deref() == Ok("1") {
                panic!("REQUIRE_STRIPE=1 but TEST_STRIPE_URL is not set");
            }
            None
        }
    }
}

/// Marks a payment (in its description, which goes to Stripe in the metadata) whose charge's
/// answer is lost on its way back to cobro.
pub const LOSE_THE_ANSWER: &str = "lose-this-answer";

/// Where the in-process servers reach Stripe: a proxy in front of localstripe that loses
/// the answer to any request marked with [`LOSE_THE_ANSWER`].
pub fn stripe_base() -> Option<String> {
    static PROXY: OnceLock<Option<String>> = OnceLock::new();
    PROXY
        .get_or_init(|| {
            let upstream = stripe_url()?;
            let proxy = crate::proxy::start(&upstream, |_, body| {
                if String::from_utf8_lossy(body).contains(LOSE_THE_ANSWER) {
                    crate::proxy::Fate::Lose
                } else {
                    crate::proxy::Fate::Pass
                }
            });
            Some(proxy.url)
        })
        .clone()
}

/// A call to localstripe itself, as Stripe.js or Stripe's dashboard would make it.
pub fn localstripe(method: &str, path: &str, form: &[(&str, &str)]) -> Resp {
    let url = format!("{}{path}", stripe_url().expect("localstripe"));
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let headers = [
        ("Authorization", "Bearer sk_test_cobro_tests"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    if method == "GET" {
        let url = if body.is_empty() {
            url
        } else {
            format!("{url}?{body}")
        };
        send("GET", &url, &headers[..1], None)
    } else {
        send(method, &url, &headers, Some(&body))
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn server(backend: Backend) -> Option<&'static Server> {
    match backend {
        Backend::Sqlite => Some(SQLITE.get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("cobro-test.db");
            std::mem::forget(dir); // lives as long as the test process
            start(path.to_str().unwrap())
        })),
        Backend::Postgres => POSTGRES
            .get_or_init(|| match std::env::var("TEST_DATABASE_URL") {
                Ok(url) if !url.is_empty() => Some(start(&url)),
                _ => {
                    if std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1") {
                        panic!("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set");
                    }
                    eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL variant");
                    None
                }
            })
            .as_ref(),
    }
}

/// A response: status, headers and the body as JSON (Null when not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
}

/// Sends a request and returns the response whatever its status.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    send_bytes(method, url, headers, body.map(str::as_bytes))
}

/// `send` with a body of any bytes (text that is not UTF-8, say).
pub fn send_bytes(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    // Redirects are answers to check, not to follow.
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    let agent = AGENT.get_or_init(|| ureq::AgentBuilder::new().redirects(0).build());
    let mut request = agent.request(method, url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let result = match body {
        Some(body) => request.send_bytes(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(err) => panic!("{method} {url}: {err}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            response
                .header(&name)
                .map(|v| (name.clone(), v.to_string()))
        })
        .collect();
    let text = response.into_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        body,
        text,
        headers,
    }
}

/// A user with a workspace of their own on one server, acting in live or test mode.
#[derive(Clone)]
pub struct App {
    pub server: &'static Server,
    pub email: String,
    pub token: String,
    pub workspace: String,
    pub test_mode: bool,
}

pub fn unique(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "{prefix}{}",
        Alphanumeric
            .sample_string(&mut rand::rng(), 12)
            .to_lowercase()
    )
}

impl App {
    pub fn new(backend: Backend) -> Option<App> {
        let server = server(backend)?;
        let mut conn = server.db.pool.get().unwrap();
        let email = format!("{}@example.com", unique("user-"));
        let token = accounts::create_user(&mut conn, &email).unwrap();
        let workspace = accounts::create_workspace(&mut conn, "Test workspace", &email).unwrap();
        Some(App {
            server,
            email,
            token,
            workspace,
            test_mode: false,
        })
    }

    /// Another user with another workspace on the same server.
    pub fn stranger(&self) -> App {
        let mut conn = self.server.db.pool.get().unwrap();
        let email = format!("{}@example.com", unique("user-"));
        let token = accounts::create_user(&mut conn, &email).unwrap();
        let workspace = accounts::create_workspace(&mut conn, "Other workspace", &email).unwrap();
        App {
            server: self.server,
            email,
            token,
            workspace,
            test_mode: false,
        }
    }

    /// The same user and workspace in test mode.
    pub fn in_test_mode(&self) -> App {
        App {
            test_mode: true,
            ..self.clone()
        }
    }

    pub fn secret_key(&self, test_mode: bool) -> String {
        self.key(test_mode, None)
    }

    /// A key of this workspace: full (`permissions` None) or restricted.
    pub fn key(&self, test_mode: bool, permissions: Option<&[&str]>) -> String {
        let mut conn = self.server.db.pool.get().unwrap();
        let scope = accounts::operator_scope(&mut conn, &self.workspace, test_mode).unwrap();
        let new = accounts::keys::NewKey {
            permissions: permissions
                .map(|p| accounts::roles::parse_permissions(p.iter().copied()).unwrap()),
            name: String::new(),
        };
        accounts::keys::create(&mut conn, &scope, &new)
            .unwrap()
            .secret
            .unwrap()
    }

    /// Adds a user to this workspace with a role, as `cobro workspace add-member` does.
    pub fn add_member(&self, email: &str, role: accounts::roles::Role) {
        let mut conn = self.server.db.pool.get().unwrap();
        let scope = accounts::operator_scope(&mut conn, &self.workspace, false).unwrap();
        accounts::members::add(
            &mut conn,
            &scope,
            accounts::members::Manager::Operator,
            email,
            role,
        )
        .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let authorization = format!("Token {}", self.token);
        let mode = if self.test_mode { "true" } else { "false" };
        let mut headers = vec![
            ("Authorization", authorization.as_str()),
            ("x-simple-workspace", self.workspace.as_str()),
            ("x-piriod-test-mode", mode),
        ];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        // A header in `extra` replaces the default one of the same name.
        headers.retain(|(name, _)| {
            !extra
                .iter()
                .any(|(other, _)| other.eq_ignore_ascii_case(name))
        });
        headers.extend_from_slice(extra);
        send(method, &self.url(path), &headers, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, &[])
    }
    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(&body.to_string()), &[])
    }
    pub fn patch(&self, path: &str, body: Value) -> Resp {
        self.send("PATCH", path, Some(&body.to_string()), &[])
    }
    pub fn put(&self, path: &str, body: Value) -> Resp {
        self.send("PUT", path, Some(&body.to_string()), &[])
    }
    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None, &[])
    }

    /// Creates a payment from a valid body with `fields` laid over it; returns it.
    #[track_caller]
    pub fn create_payment(&self, fields: Value) -> Value {
        let mut body = json!({"amount": 1000, "currency": "CLP", "date": "2026-11-23", "description": "Order 1"});
        for (key, value) in fields.as_object().expect("an object") {
            body[key] = value.clone();
        }
        self.post("/payments/", body).expect(201).body
    }

    /// Creates a source (the sandbox's `token` in test mode, a bank transfer in live mode)
    /// with `fields` laid over it; returns it.
    #[track_caller]
    pub fn create_source(&self, fields: Value) -> Value {
        let mut body = if self.test_mode {
            json!({"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}})
        } else {
            json!({"gateway": "bank_transfer"})
        };
        for (key, value) in fields.as_object().expect("an object") {
            body[key] = value.clone();
        }
        self.post("/sources/", body).expect(201).body
    }

    pub fn source_id(&self) -> i64 {
        self.create_source(json!({}))["id"].as_i64().unwrap()
    }

    /// Creates and finalizes an invoice for `customer` of one line of `amount` (a decimal
    /// string) in `currency`; returns its id.
    #[track_caller]
    pub fn open_invoice(&self, customer: &str, currency: &str, amount: &str) -> String {
        let invoice = self
            .post(
                "/invoices/",
                json!({"customer": customer, "currency": currency,
            "due_date": "2026-12-31", "lines": [{"name": "Services", "unit_amount": amount}]}),
            )
            .expect(201)
            .body;
        let id = invoice["id"].as_str().unwrap().to_string();
        self.post(&format!("/invoices/{id}/finalize/"), json!({}))
            .expect(200);
        id
    }

    /// Creates a customer named `name`; returns its id.
    #[track_caller]
    pub fn customer_id(&self, name: &str) -> String {
        let customer = self
            .post("/customers/", json!({"name": name}))
            .expect(201)
            .body;
        customer["id"].as_str().unwrap().to_string()
    }

    /// Event types recorded for one payment, oldest first.
    pub fn event_types(&self, object_id: &Value) -> Vec<String> {
        self.events_of("payment", object_id)
    }

    /// Event types recorded for one object of a kind (`payment`, `source`), oldest first.
    pub fn events_of(&self, object_type: &str, object_id: &Value) -> Vec<String> {
        let object_id = match object_id {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        };
        let query =
            format!("/events/?object_type={object_type}&object_id={object_id}&page_size=100");
        let page = self.get(&query).expect(200).body;
        let mut types: Vec<String> = page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect();
        types.reverse();
        types
    }
}

/// A payment's checkout key: the last part of its `checkout_url`.
pub fn key_of(payment: &Value) -> String {
    let url = payment["checkout_url"].as_str().expect("a checkout_url");
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// A JSON number exactly as the server wrote it.
pub fn num(value: &Value) -> String {
    assert!(value.is_number(), "not a number: {value}");
    value.to_string()
}

pub fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

/// Writes each test once and runs it against both backends:
/// `both! { fn name(app) { ... } }` makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($(fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn sqlite() {
                if let Some($app) = $crate::helpers::App::new($crate::helpers::Backend::Sqlite) $body
            }
            #[test]
            fn postgres() {
                if let Some($app) = $crate::helpers::App::new($crate::helpers::Backend::Postgres) $body
            }
        }
    )*};
}
