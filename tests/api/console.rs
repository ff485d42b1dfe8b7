//! The console at `/dashboard/`, over HTTP as a browser without JavaScript uses it: signing
//! in (password, one-time link, rate limits), what ends a session, CSRF and roles on its
//! forms, and its actions writing what the API's would. The browser tests (browser.rs)
//! drive the same pages in Chromium.

use cobro::accounts::passwords::{self, Password};
use cobro::accounts::roles::Role;
use cobro::accounts::sessions;

use crate::both;
use crate::helpers::*;

pub const PASSWORD: &str = "a long test password";

/// Gives a user a console password, as `cobro user set-password` does.
pub fn set_password(server: &Server, email: &str, password: &str) {
    let mut conn = server.db.pool.get().unwrap();
    let hashed = passwords::hash(&Password::parse(password).unwrap());
    passwords::set(&mut conn, email, &hashed).unwrap();
}

/// A one-time sign-in link's path, as `cobro user sign-in-link` prints it.
pub fn sign_in_link(server: &Server, email: &str) -> String {
    let mut conn = server.db.pool.get().unwrap();
    let secret = sessions::new_link(&mut conn, email).unwrap();
    format!("/dashboard/sign-in/{secret}/")
}

/// A browser without JavaScript: a session cookie and the CSRF token of its last page.
pub struct Browser {
    pub base: String,
    pub cookie: Option<String>,
    csrf: String,
}

pub fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).unwrap()
}

impl Browser {
    pub fn new(server: &Server) -> Browser {
        Browser {
            base: server.base.clone(),
            cookie: None,
            csrf: String::new(),
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![];
        if let Some(cookie) = &self.cookie {
            headers.push(("Cookie", format!("cobro_session={cookie}")));
        }
        headers
    }

    /// Keeps the cookie a response sets (or clears).
    fn keep(&mut self, resp: &Resp) {
        if let Some(set) = resp.header("set-cookie") {
            let value = set
                .strip_prefix("cobro_session=")
                .and_then(|v| v.split(';').next())
                .unwrap_or("");
            self.cookie = (!value.is_empty()).then(|| value.to_string());
        }
        if let Some(at) = resp.text.find("name=\"csrf\" value=\"") {
            let rest = &resp.text[at + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_string();
        }
    }

    pub fn get(&mut self, path: &str) -> Resp {
        let headers = self.headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = send("GET", &format!("{}{path}", self.base), &headers, None);
        self.keep(&resp);
        resp
    }

    /// Posts a form as it is, with `extra` headers.
    pub fn post_raw(&mut self, path: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
        let mut headers = self.headers();
        headers.push((
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ));
        let mut headers: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.extend_from_slice(extra);
        let resp = send(
            "POST",
            &format!("{}{path}", self.base),
            &headers,
            Some(body),
        );
        self.keep(&resp);
        resp
    }

    /// Posts a form with the CSRF token of the last page, as the page's own form would.
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let csrf = self.csrf.clone();
        let mut fields = fields.to_vec();
        fields.push(("csrf", &csrf));
        self.post_raw(path, &form(&fields), &[])
    }

    pub fn sign_in(&mut self, email: &str, password: &str) -> Resp {
        self.post_raw(
            "/dashboard/sign-in/",
            &form(&[
                ("email", email),
                ("password", password),
                ("next", "/dashboard/payments/"),
            ]),
            &[],
        )
    }

    /// Signs in, and shows the payments list (its CSRF token is then at hand).
    #[track_caller]
    pub fn signed_in(server: &Server, email: &str) -> Browser {
        let mut browser = Browser::new(server);
        let resp = browser.sign_in(email, PASSWORD);
        assert_eq!(resp.status, 303, "{}", resp.text);
        assert_eq!(resp.header("location"), Some("/dashboard/payments/"));
        browser.get("/dashboard/payments/").expect(200);
        browser
    }
}

/// Where a response sends the browser.
fn location(resp: &Resp) -> &str {
    resp.header("location").unwrap_or("")
}

/// A user with a password and the app's workspace, signed in.
fn owner(app: &App) -> Browser {
    set_password(app.server, &app.email, PASSWORD);
    Browser::signed_in(app.server, &app.email)
}

/// A member of the app's workspace with `role`, signed in.
fn member(app: &App, role: Role) -> (String, Browser) {
    let other = app.stranger();
    app.add_member(&other.email, role);
    set_password(app.server, &other.email, PASSWORD);
    let mut browser = Browser::signed_in(app.server, &other.email);
    // Their own workspace is shown first: switch to the app's.
    let resp = browser.post(
        "/dashboard/place/",
        &[
            ("workspace", &app.workspace),
            ("test_mode", "false"),
            ("next", "/dashboard/payments/"),
        ],
    );
    assert_eq!(resp.status, 303, "{}", resp.text);
    browser.get("/dashboard/payments/").expect(200);
    (other.email, browser)
}

/// A live payment paid by bank transfer recorded as received, so that it can be refunded.
fn paid_payment(app: &App) -> Value {
    app.create_payment(
        json!({"amount": "5000", "status": "succeeded", "payment_date": "2026-12-01T10:00:00Z"}),
    )
}

both! {
    fn a_password_signs_in_and_pages_carry_the_console_headers(app) {
        let mut browser = owner(&app);
        let root = browser.get("/");
        assert_eq!((root.status, location(&root)), (303, "/dashboard/"), "the server's address opens the console");
        let page = browser.get("/dashboard/payments/").expect(200);
        assert!(page.text.contains(&app.email), "the header names who is signed in");
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(page.header("cache-control"), Some("no-store"));
        // The cookie: not for scripts, not sent on other sites' POSTs.
        let mut fresh = Browser::new(app.server);
        let signed = fresh.sign_in(&app.email, PASSWORD);
        let cookie = signed.header("set-cookie").unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/dashboard"), "{cookie}");
        // Signed in, the sign-in page sends the browser on.
        let again = browser.get("/dashboard/sign-in/?next=%2Fdashboard%2Fcustomers%2F");
        assert_eq!((again.status, location(&again)), (303, "/dashboard/customers/"));
        // Signing in again in the same browser ends its old session.
        let first = fresh.cookie.clone().unwrap();
        assert_eq!(fresh.sign_in(&app.email, PASSWORD).status, 303);
        assert_ne!(fresh.cookie.as_deref(), Some(first.as_str()));
        fresh.get("/dashboard/payments/").expect(200);
        let mut old = Browser::new(app.server);
        old.cookie = Some(first);
        assert_eq!(old.get("/dashboard/payments/").status, 303, "the old session ended");
    }

    fn an_unknown_email_and_a_wrong_password_get_the_same_answer(app) {
        set_password(app.server, &app.email, PASSWORD);
        let mut browser = Browser::new(app.server);
        let wrong = browser.sign_in(&app.email, "not the password at all");
        let unknown = browser.sign_in("nobody-here@example.com", "not the password at all");
        assert_eq!((wrong.status, unknown.status), (401, 401));
        assert_eq!(
            wrong.text.replace(&app.email, "EMAIL"),
            unknown.text.replace("nobody-here@example.com", "EMAIL")
        );
        assert!(wrong.header("set-cookie").is_none() && browser.cookie.is_none());
        // Without a session, a page sends the browser to sign in, and back afterwards.
        let resp = browser.get("/dashboard/payments/?status=failed");
        assert_eq!(resp.status, 303);
        assert_eq!(location(&resp), "/dashboard/sign-in/?next=%2Fdashboard%2Fpayments%2F%3Fstatus%3Dfailed");
    }

    fn a_sign_in_link_works_once(app) {
        let link = sign_in_link(app.server, &app.email);
        let mut browser = Browser::new(app.server);
        let first = browser.get(&link);
        assert_eq!((first.status, location(&first)), (303, "/dashboard/"));
        browser.get("/dashboard/payments/").expect(200);
        let mut other = Browser::new(app.server);
        let again = other.get(&link);
        assert_eq!((again.status, location(&again)), (303, "/dashboard/sign-in/?link=used"));
        assert!(other.cookie.is_none());
        let page = other.get("/dashboard/sign-in/?link=used").expect(200);
        assert!(page.text.contains("has been used or has expired"));
    }

    fn signing_out_ends_the_session_on_the_server(app) {
        let mut browser = owner(&app);
        let cookie = browser.cookie.clone().unwrap();
        let resp = browser.post("/dashboard/sign-out/", &[]);
        assert_eq!((resp.status, location(&resp)), (303, "/dashboard/sign-in/?signed_out=1"));
        assert!(browser.cookie.is_none(), "the browser is told to forget it");
        // The old cookie, sent again (copied before sign-out), is refused.
        browser.cookie = Some(cookie);
        let resp = browser.get("/dashboard/payments/");
        assert_eq!(resp.status, 303);
        assert!(location(&resp).starts_with("/dashboard/sign-in/"));
    }

    fn a_password_change_ends_every_session(app) {
        let link = sign_in_link(app.server, &app.email);
        let mut browser = owner(&app);
        let mut second = Browser::signed_in(app.server, &app.email);
        set_password(app.server, &app.email, "another long password");
        for b in [&mut browser, &mut second] {
            let resp = b.get("/dashboard/payments/");
            assert_eq!(resp.status, 303);
        }
        assert_eq!(Browser::new(app.server).sign_in(&app.email, PASSWORD).status, 401);
        let stale = Browser::new(app.server).get(&link);
        assert_eq!(location(&stale), "/dashboard/sign-in/?link=used", "its open links end too");
        assert_eq!(Browser::new(app.server).sign_in(&app.email, "another long password").status, 303);
    }

    fn a_form_without_the_csrf_token_or_from_another_site_changes_nothing(app) {
        let p = paid_payment(&app);
        let events = app.events_of("payment", &p["id"]);
        let mut browser = owner(&app);
        let path = format!("/dashboard/payments/{}/refund/", p["id"]);
        browser.get(&format!("/dashboard/payments/{}/", p["id"])).expect(200);
        let without = browser.post_raw(&path, &form(&[("amount", "100")]), &[]);
        assert_eq!(without.status, 403, "{}", without.text);
        assert!(without.text.contains("This form has expired"));
        let csrf = browser.csrf.clone();
        let forged = browser.post_raw(
            &path,
            &form(&[("amount", "100"), ("csrf", &csrf)]),
            &[("Origin", "https://evil.example")],
        );
        assert_eq!(forged.status, 403);
        // Another session's token is no good either.
        let other = Browser::signed_in(app.server, &app.email);
        let crossed = browser.post_raw(&path, &form(&[("amount", "100"), ("csrf", &other.csrf)]), &[]);
        assert_eq!(crossed.status, 403);
        assert_eq!(app.get(&format!("/refunds/?payment={}", p["id"])).body["count"], 0);
        assert_eq!(app.events_of("payment", &p["id"]), events);
    }

    fn a_viewer_sees_no_actions_and_cannot_post_them(app) {
        let p = paid_payment(&app);
        let (_, mut viewer) = member(&app, Role::Viewer);
        let page = viewer.get(&format!("/dashboard/payments/{}/", p["id"])).expect(200);
        assert!(!page.text.contains("<button type=\"submit\">Refund"), "no refund button");
        assert!(!page.text.contains("Cancel payment"));
        assert!(page.text.contains("· viewer"));
        let refused = viewer.post(&format!("/dashboard/payments/{}/refund/", p["id"]), &[("amount", "100")]);
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert!(refused.text.contains("does not allow"));
        assert_eq!(app.get(&format!("/refunds/?payment={}", p["id"])).body["count"], 0);
    }

    fn a_refund_from_the_console_is_the_api_s_refund_by_the_user_and_acts_once(app) {
        let p = paid_payment(&app);
        let (email, mut developer) = member(&app, Role::Developer);
        let page = developer.get(&format!("/dashboard/payments/{}/", p["id"])).expect(200);
        let key_at = page.text.find("name=\"idempotency_key\" value=\"").unwrap() + 30;
        let key = page.text[key_at..key_at + 24].to_string();
        let path = format!("/dashboard/payments/{}/refund/", p["id"]);
        let fields = [("amount", "1200"), ("reason", "requested_by_customer"), ("idempotency_key", key.as_str())];
        for _ in 0..2 {
            let resp = developer.post(&path, &fields);
            assert_eq!(resp.status, 303, "{}", resp.text);
            assert_eq!(location(&resp), format!("/dashboard/payments/{}/?done=refund", p["id"]));
        }
        let refunds = app.get(&format!("/refunds/?payment={}", p["id"])).body;
        assert_eq!(refunds["count"], 1, "sent twice, refunded once");
        assert_eq!(num(&refunds["results"][0]["amount"]), "1200");
        let events = app.get(&format!("/events/?object_type=refund&object_id={}", refunds["results"][0]["id"])).body;
        assert_eq!(events["results"][0]["actor"], json!({"type": "user", "email": email}));
        let page = developer.get(&format!("/dashboard/payments/{}/?done=refund", p["id"])).expect(200);
        assert!(page.text.contains("Refund created."));
        assert!(page.text.contains("refund.created"), "the timeline shows the refund's event");
        // More than is left: the page says why, and nothing changes.
        let resp = developer.post(&path, &[("amount", "999999")]);
        assert_eq!(resp.status, 400, "{}", resp.text);
        assert!(resp.text.contains("role=\"alert\""));
        assert_eq!(app.get(&format!("/refunds/?payment={}", p["id"])).body["count"], 1);
    }

    fn test_mode_shows_only_test_data(app) {
        let live = app.create_payment(json!({"description": "A live order"}));
        let test = app.in_test_mode().create_payment(json!({"description": "A test order"}));
        let mut browser = owner(&app);
        let page = browser.get("/dashboard/payments/").expect(200);
        assert!(page.text.contains("A live order") && !page.text.contains("A test order"));
        let resp = browser.post(
            "/dashboard/place/",
            &[("workspace", &app.workspace), ("test_mode", "true"), ("next", "/dashboard/payments/")],
        );
        assert_eq!(resp.status, 303);
        let page = browser.get("/dashboard/payments/").expect(200);
        assert!(page.text.contains("A test order") && !page.text.contains("A live order"));
        assert!(page.text.contains("Test mode: test data only"));
        browser.get(&format!("/dashboard/payments/{}/", live["id"])).expect(404);
        browser.get(&format!("/dashboard/payments/{}/", test["id"])).expect(200);
        // A workspace the user is not a member of cannot be chosen.
        let stranger = app.stranger();
        let resp = browser.post(
            "/dashboard/place/",
            &[("workspace", &stranger.workspace), ("test_mode", "false")],
        );
        assert_eq!(resp.status, 404);
    }

    fn the_list_filters_as_the_api_does(app) {
        let marker = unique("needle-");
        let found = app.create_payment(json!({"description": format!("Order {marker}")}));
        app.create_payment(json!({"description": "Something else"}));
        let mut browser = owner(&app);
        let page = browser.get(&format!("/dashboard/payments/?search={marker}&status=&customer=")).expect(200);
        assert!(page.text.contains(&format!("/dashboard/payments/{}/", found["id"])));
        assert!(page.text.contains("1 payment<") && !page.text.contains("Something else"));
        let bad = browser.get("/dashboard/payments/?amount__gte=lots").expect(400);
        assert!(bad.text.contains("amount__gte: "), "the API's message, on the page");
    }
}

#[test]
fn a_session_ends_after_it_is_idle() {
    // A database of its own: this server's purge ends every session idle for a second.
    let dir = tempfile::tempdir().unwrap();
    let url = cobro::db::DatabaseUrl::parse(dir.path().join("idle.db").to_str().unwrap()).unwrap();
    std::mem::forget(dir); // lives as long as the server: the test process
    let db = cobro::db::Db::connect(&url, 4, "NORMAL").unwrap();
    let server: &'static Server = Box::leak(Box::new(serve(db, |s| s.session_idle_seconds = 1)));
    let mut conn = server.db.pool.get().unwrap();
    let email = "idle@example.com".to_string();
    let token = cobro::accounts::create_user(&mut conn, &email).unwrap();
    let workspace = cobro::accounts::create_workspace(&mut conn, "Idle", &email).unwrap();
    drop(conn);
    let app = App {
        server,
        email,
        token,
        workspace,
        test_mode: false,
    };
    let mut browser = owner(&app);
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let resp = browser.get("/dashboard/payments/");
    assert_eq!(resp.status, 303);
    assert_eq!(
        location(&resp),
        "/dashboard/sign-in/?next=%2Fdashboard%2Fpayments%2F&expired=1"
    );
    let page = browser.get(location(&resp)).expect(200);
    assert!(page.text.contains("without activity"));
}

#[test]
fn sign_ins_are_limited_per_email_and_per_address() {
    let Some(server) = server_with(Backend::Sqlite, |s| {
        s.sign_in_limit_email = 3;
        s.sign_in_limit_address = 6;
    }) else {
        return;
    };
    let app = App::new(Backend::Sqlite).unwrap().on(server);
    set_password(server, &app.email, PASSWORD);
    let mut browser = Browser::new(server);
    for _ in 0..3 {
        assert_eq!(
            browser.sign_in(&app.email, "a wrong password here").status,
            401
        );
    }
    // Over the email's limit: the right password too waits, and an unknown email alike.
    let limited = browser.sign_in(&app.email, PASSWORD);
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert!(limited.header("retry-after").is_some());
    assert!(browser.cookie.is_none());
    // The address has two attempts left; then every email waits.
    let other = app.stranger();
    set_password(server, &other.email, PASSWORD);
    assert_eq!(browser.sign_in(&other.email, PASSWORD).status, 303);
    assert_eq!(
        browser
            .sign_in("nobody@example.com", "a wrong password here")
            .status,
        401
    );
    assert_eq!(browser.sign_in(&other.email, PASSWORD).status, 429);
}

both! {
    fn the_overview_keeps_each_currency_apart(app) {
        let paid_at = chrono::Utc::now().to_rfc3339();
        app.create_payment(json!({"amount": "30.00", "currency": "USD", "status": "succeeded", "payment_date": paid_at}));
        app.create_payment(json!({"amount": "12.25", "currency": "USD", "status": "succeeded", "payment_date": paid_at}));
        app.create_payment(json!({"amount": "5000", "currency": "CLP", "status": "succeeded", "payment_date": paid_at}));
        app.create_payment(json!({"amount": "1.00", "currency": "USD"}));
        let mut browser = owner(&app);
        let page = browser.get("/dashboard/").expect(200);
        assert!(page.text.contains("<dd>USD 42.25</dd>"), "{}", page.text);
        assert!(page.text.contains("<dd>CLP 5,000</dd>"));
        assert!(page.text.contains("status=requires_payment_method"), "counts by status link to the list");
        assert!(page.text.contains("<svg"), "a chart drawn on the server");
    }
}

/// The value of the input `id` on a page.
fn input_value(page: &str, id: &str) -> String {
    let at = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let rest = &page[at..];
    let start = rest.find("value=\"").unwrap() + 7;
    rest[start..start + rest[start..].find('"').unwrap()].to_string()
}

both! {
    fn customers_and_invoices_have_lists_and_pages_with_their_payments(app) {
        let customer = app.customer_id("Ada Lovelace");
        let invoice = app.open_invoice(&customer, "USD", "80.00");
        app.create_payment(json!({"amount": "80.00", "currency": "USD", "customer": customer, "invoice": invoice, "description": "For the invoice"}));
        let mut browser = owner(&app);
        let list = browser.get("/dashboard/customers/?search=lovelace").expect(200);
        assert!(list.text.contains(&format!("/dashboard/customers/{customer}/")));
        let page = browser.get(&format!("/dashboard/customers/{customer}/")).expect(200);
        assert!(page.text.contains("Ada Lovelace") && page.text.contains("For the invoice") && page.text.contains(&invoice));
        let invoices = browser.get(&format!("/dashboard/invoices/?customer={customer}&status=finalized")).expect(200);
        assert!(invoices.text.contains(&format!("/dashboard/invoices/{invoice}/")));
        let page = browser.get(&format!("/dashboard/invoices/{invoice}/")).expect(200);
        assert!(page.text.contains("USD 80.00") && page.text.contains("For the invoice"));
        browser.get("/dashboard/invoices/?status=lost").expect(400);
        // Another workspace's customer is not found.
        let theirs = app.stranger().customer_id("Someone else's");
        browser.get(&format!("/dashboard/customers/{theirs}/")).expect(404);
    }

    fn a_key_made_in_the_console_shows_its_secret_once_and_works_until_revoked(app) {
        let mut browser = owner(&app);
        browser.get("/dashboard/keys/").expect(200);
        let made = browser.post("/dashboard/keys/", &[("name", "reports"), ("perm_payments", "read")]).expect(201);
        assert!(made.text.contains("it is not shown again"));
        let secret = input_value(&made.text, "new-secret");
        assert!(secret.starts_with("rk_live_"), "{secret}");
        let list = browser.get("/dashboard/keys/").expect(200);
        assert!(!list.text.contains(&secret), "never shown again");
        let bearer = format!("Bearer {secret}");
        let call = |method: &str, path: &str| send(method, &app.url(path), &[("Authorization", bearer.as_str()), ("Content-Type", "application/json")], Some("{}")).status;
        assert_eq!(call("GET", "/payments/"), 200);
        assert_eq!(call("POST", "/payments/"), 403, "read only");
        let id_at = list.text.find("/dashboard/keys/").map(|_| ()).and_then(|_| {
            let marker = "action=\"/dashboard/keys/";
            let at = list.text.find(marker)? + marker.len();
            Some(list.text[at..at + list.text[at..].find('/')?].to_string())
        });
        let id = id_at.expect("a revoke form");
        let revoked = browser.post(&format!("/dashboard/keys/{id}/revoke/"), &[]).expect(200);
        assert!(revoked.text.contains("is revoked"));
        assert_eq!(call("GET", "/payments/"), 401);
        // Keys are beyond a developer's role: no tab, and the page is refused.
        let (_, mut developer) = member(&app, Role::Developer);
        let page = developer.get("/dashboard/webhooks/").expect(200);
        assert!(!page.text.contains("href=\"/dashboard/keys/\""));
        developer.get("/dashboard/keys/").expect(403);
        let csrf = developer.csrf.clone();
        let refused = developer.post_raw("/dashboard/keys/", &form(&[("csrf", &csrf), ("name", "sneaky")]), &[]);
        assert_eq!(refused.status, 403);
        assert_eq!(app.get("/keys/").body["count"], 1);
    }

    fn a_webhook_made_in_the_console_gets_a_test_event_and_its_deliveries_show(app) {
        let mut browser = owner(&app);
        browser.get("/dashboard/webhooks/").expect(200);
        let refused = browser.post("/dashboard/webhooks/", &[("url", "not a url"), ("events", "*")]).expect(400);
        assert!(refused.text.contains("url: "));
        let made = browser.post("/dashboard/webhooks/", &[("url", "https://hooks.example.com/cobro"), ("events", "payment.*, refund.succeeded")]).expect(201);
        assert!(input_value(&made.text, "new-secret").starts_with("whsecret_"));
        let hooks = app.get("/webhooks/").body;
        let id = hooks["results"][0]["id"].as_i64().unwrap();
        assert_eq!(hooks["results"][0]["events"], json!(["payment.*", "refund.succeeded"]));
        let resp = browser.post(&format!("/dashboard/webhooks/{id}/test/"), &[]);
        assert_eq!((resp.status, location(&resp)), (303, format!("/dashboard/webhooks/{id}/?done=test").as_str()));
        let deliveries = app.get(&format!("/webhooks/{id}/deliveries/")).body;
        assert_eq!(deliveries["count"], 1);
        let page = browser.get(&format!("/dashboard/webhooks/{id}/?done=test")).expect(200);
        assert!(page.text.contains("A test event (ping) is on its way."));
        assert!(page.text.contains(&format!("/deliveries/{}/retry/", deliveries["results"][0]["id"])));
        // The event log shows who did it.
        let log = browser.get("/dashboard/events/?actor_type=user&type=webhook.created").expect(200);
        assert!(log.text.contains("1 event<") && log.text.contains(&app.email));
    }

    fn members_are_invited_changed_and_removed_under_the_owner_rules(app) {
        let mut browser = owner(&app);
        browser.get("/dashboard/members/").expect(200);
        let newcomer = format!("{}@example.com", unique("invited-"));
        // As the API: only a user who exists, and no credential of theirs is handed out.
        let unknown = browser.post("/dashboard/members/", &[("email", &newcomer), ("role", "admin")]);
        assert_eq!(unknown.status, 400, "{}", unknown.text);
        assert!(unknown.text.contains("No user with email"), "{}", unknown.text);
        cobro::accounts::create_user(&mut app.server.db.pool.get().unwrap(), &newcomer).unwrap();
        let added = browser.post("/dashboard/members/", &[("email", &newcomer), ("role", "admin")]).expect(200);
        assert!(added.text.contains("is a member now, as admin"), "{}", added.text);
        assert!(!added.text.contains("/dashboard/sign-in/"), "no link to sign in as them");
        set_password(app.server, &newcomer, PASSWORD);
        let mut theirs = Browser::signed_in(app.server, &newcomer);
        let page = theirs.get("/dashboard/members/").expect(200);
        assert!(page.text.contains("· admin"));
        // An admin may not remove or demote the owner.
        let members = app.get("/members/").body;
        let owner_id = members["results"].as_array().unwrap().iter().find(|m| m["email"] == app.email.as_str()).unwrap()["user"].clone();
        let refused = theirs.post(&format!("/dashboard/members/{owner_id}/remove/"), &[]);
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert!(refused.text.contains("Only an owner may"));
        // The last owner cannot step down.
        let alone = browser.post(&format!("/dashboard/members/{owner_id}/"), &[("role", "viewer")]);
        assert_eq!(alone.status, 400);
        assert!(alone.text.contains("at least one owner"));
        let newcomer_id = app.get("/members/").body["results"][1]["user"].clone();
        browser.post(&format!("/dashboard/members/{newcomer_id}/"), &[("role", "viewer")]).expect(200);
        browser.post(&format!("/dashboard/members/{newcomer_id}/remove/"), &[]).expect(200);
        assert_eq!(app.get("/members/").body["count"], 1);
        let events = app.get("/events/?type=member.updated").body;
        assert_eq!(events["results"][0]["actor"]["email"], app.email.as_str());
        // Out of the workspace, their session shows it no more, but can still sign out.
        let gone = theirs.get("/dashboard/members/");
        assert_eq!(gone.status, 403);
        assert!(gone.text.contains("No workspace yet"));
        let out = theirs.post("/dashboard/sign-out/", &[]);
        assert_eq!((out.status, location(&out)), (303, "/dashboard/sign-in/?signed_out=1"));
    }

    fn a_new_password_from_the_account_page_ends_every_session(app) {
        let mut browser = owner(&app);
        let mut other = Browser::signed_in(app.server, &app.email);
        browser.get("/dashboard/account/").expect(200);
        let wrong = browser.post("/dashboard/account/", &[("current", "not it at all"), ("new", "a brand new password"), ("again", "a brand new password")]);
        assert_eq!(wrong.status, 400);
        assert!(wrong.text.contains("current password is not right"));
        let short = browser.post("/dashboard/account/", &[("current", PASSWORD), ("new", "short"), ("again", "short")]);
        assert_eq!(short.status, 400);
        let changed = browser.post("/dashboard/account/", &[("current", PASSWORD), ("new", "a brand new password"), ("again", "a brand new password")]);
        assert_eq!((changed.status, location(&changed)), (303, "/dashboard/sign-in/?password_changed=1"));
        assert_eq!(other.get("/dashboard/").status, 303, "the other session ended too");
        assert_eq!(Browser::new(app.server).sign_in(&app.email, "a brand new password").status, 303);
    }
}

both! {
    fn capture_and_cancel_from_the_console_are_the_api_s(app) {
        let test = app.in_test_mode();
        let held = test.create_payment(json!({"amount": "2500"}));
        let source = test.create_source(json!({"gateway_data": {"token": "tok_visa"}}));
        let authorized = test
            .post(&format!("/payments/{}/authorize/", held["id"]), json!({"source": source["id"], "capture": false}))
            .expect(200)
            .body;
        assert_eq!(authorized["status"], "processing", "held, not collected");
        let open = test.create_payment(json!({"amount": "700"}));
        let mut browser = owner(&app);
        let resp = browser.post("/dashboard/place/", &[("workspace", &app.workspace), ("test_mode", "true"), ("next", "/dashboard/payments/")]);
        assert_eq!(resp.status, 303);
        let page = browser.get(&format!("/dashboard/payments/{}/", held["id"])).expect(200);
        assert!(page.text.contains(">Capture</button>"), "a held charge can be captured");
        let resp = browser.post(&format!("/dashboard/payments/{}/capture/", held["id"]), &[]);
        assert_eq!((resp.status, location(&resp)), (303, format!("/dashboard/payments/{}/?done=capture", held["id"]).as_str()));
        let captured = test.get(&format!("/payments/{}/", held["id"])).body;
        assert_eq!(captured["status"], "succeeded");
        let page = browser.get(&format!("/dashboard/payments/{}/", held["id"])).expect(200);
        assert!(!page.text.contains(">Capture</button>") && !page.text.contains("Cancel payment"));
        // An open payment is cancelled; a cancelled one offers nothing more.
        browser.get(&format!("/dashboard/payments/{}/", open["id"])).expect(200);
        let resp = browser.post(&format!("/dashboard/payments/{}/cancel/", open["id"]), &[]);
        assert_eq!(resp.status, 303, "{}", resp.text);
        assert_eq!(test.get(&format!("/payments/{}/", open["id"])).body["status"], "cancelled");
        let again = browser.post(&format!("/dashboard/payments/{}/cancel/", open["id"]), &[]);
        assert_eq!(again.status, 400, "{}", again.text);
        assert!(again.text.contains("role=\"alert\""));
        let events = test.get(&format!("/events/?object_type=payment&object_id={}&type=payment.cancelled", open["id"])).body;
        assert_eq!(events["results"][0]["actor"]["email"], app.email.as_str());
    }

    fn a_stripe_integration_connected_in_the_console_shows_its_webhook_url(app) {
        let mut browser = owner(&app);
        browser.get("/dashboard/integrations/").expect(200);
        let refused = browser.post("/dashboard/integrations/", &[("name", "Stripe"), ("secret_key", "not-a-key")]);
        assert_eq!(refused.status, 400, "{}", refused.text);
        let made = browser.post("/dashboard/integrations/", &[("name", "Stripe"), ("secret_key", "sk_live_51QconsoleTest0000000000000001")]);
        assert_eq!(made.status, 303, "{}", made.text);
        let page = browser.get(location(&made)).expect(200);
        let shown = app.get("/integrations/").body;
        let stripe = shown["results"].as_array().unwrap().iter().find(|i| i["gateway"] == "stripe").unwrap().clone();
        assert!(page.text.contains(stripe["webhook_url"].as_str().unwrap()));
        assert!(!page.text.contains("sk_live_51QconsoleTest0000000000000001"), "the secret is masked");
    }
}
