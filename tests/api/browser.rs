//! The checkout page in a real browser: headless Chromium, driven through chromedriver's
//! WebDriver protocol, pays a test-mode payment and lands on the merchant's `return_url`.
//! Screenshots go to `target/browser-artefacts/`. Skipped when chromedriver is missing,
//! unless REQUIRE_BROWSER=1 (as `.ci/run` sets).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::helpers::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    fn start() -> Option<Browser> {
        let found = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(path) = found else {
            assert!(
                std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"),
                "REQUIRE_BROWSER=1 but chromedriver is missing"
            );
            eprintln!("chromedriver not found: skipping the browser test");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = || {
            let status = ureq::get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok());
            status
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|v| v["value"]["ready"] == true)
        };
        while !ready() {
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=390,844"]}}}});
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
        };
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        Some(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let body = body.map(|b| b.to_string());
        let resp = send(
            method,
            &url,
            &[("Content-Type", "application/json")],
            body.as_deref(),
        );
        assert_eq!(resp.status, 200, "WebDriver {method} {path}: {}", resp.text);
        resp.body["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn click(&self, css: &str) {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"));
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// The element a locator finds, once it is there (a script may still be adding it).
    fn find(&self, using: &str, value: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let body = json!({"using": using, "value": value}).to_string();
            let found = send(
                "POST",
                &url,
                &[("Content-Type", "application/json")],
                Some(&body),
            );
            if let Some(id) = found.body["value"][ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no element {value}:\n{}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find("css selector", css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Clicks the button showing `text`.
    fn click_button(&self, text: &str) {
        let id = self.find("xpath", &format!("//button[normalize-space()='{text}']"));
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page once it contains `text` (a navigation may still be under way).
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let page = self.source();
            if page.contains(text) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {text:?}:\n{page}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a script in the page (WebDriver's scripts are not bound by the page's CSP).
    fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs a script that ends by calling its last argument with the result.
    fn execute_async(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Waits until the address shown contains `part` (a navigation has happened).
    fn wait_for_url(&self, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.url().contains(part) {
            assert!(
                Instant::now() < deadline,
                "never reached {part}: at {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A screenshot once the page is there (one taken mid-navigation is tried again).
    fn screenshot(&self, name: &str) {
        let url = format!("{}/session/{}/screenshot", self.base, self.session);
        let deadline = Instant::now() + Duration::from_secs(20);
        let png = loop {
            let resp = send("GET", &url, &[], None);
            if resp.status == 200 {
                break resp.body["value"].clone();
            }
            assert!(Instant::now() < deadline, "no screenshot: {}", resp.text);
            std::thread::sleep(Duration::from_millis(200));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .expect("a PNG");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artefacts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = send(
                "DELETE",
                &format!("{}/session/{}", self.base, self.session),
                &[],
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A merchant's site: answers every request with a small page and reports its path.
fn merchant_site() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let body = "<!doctype html><title>Thanks</title><h1>Back at the shop</h1>";
            let mut stream = &stream;
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            if path != "/favicon.ico" {
                let _ = tx.send(path);
            }
        }
    });
    (base, rx)
}

#[test]
fn a_payer_pays_in_a_browser_and_returns_to_the_shop() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let app = App::new(Backend::Sqlite).unwrap().in_test_mode();
    let (shop, visits) = merchant_site();

    // Declined: the page says so, and the payment stays payable.
    let declined = app.create_payment(
        json!({"amount": "49.90", "currency": "USD", "description": "Browser test",
        "return_url": format!("{shop}/thanks")}),
    );
    browser.go(declined["checkout_url"].as_str().unwrap());
    browser.screenshot("checkout-form");
    browser.click("input[value='sandbox:tok_chargeDeclined']");
    browser.click("button[type=submit]");
    let page = browser.wait_for("declined (card_declined)");
    browser.screenshot("checkout-declined");
    let after = app.get(&format!("/payments/{}/", declined["id"])).body;
    assert_eq!(
        (after["status"].as_str(), after["failed_reason"].as_str()),
        (Some("failed"), Some("card_declined"))
    );
    assert!(page.contains("<form"), "still payable after a decline");

    // Paid on the same page: the browser follows the redirect to the shop.
    browser.click("input[value='sandbox:tok_visa']");
    browser.click("button[type=submit]");
    let landed = visits
        .recv_timeout(Duration::from_secs(20))
        .expect("the browser reached the shop");
    assert_eq!(
        landed,
        format!("/thanks?payment={}&status=succeeded", declined["id"])
    );
    browser.screenshot("shop-after-payment");
    assert_eq!(
        app.get(&format!("/payments/{}/", declined["id"])).body["status"],
        "succeeded"
    );
    browser.go(declined["checkout_url"].as_str().unwrap());
    browser.wait_for("Keep this page as your receipt");
    browser.screenshot("checkout-receipt");
}

/// A test-mode Stripe integration with a publishable key, so that the checkout page offers
/// its card form (None: no localstripe).
fn stripe_checkout(app: &App) -> Option<()> {
    stripe_url()?;
    app.post(
        "/integrations/",
        json!({"gateway": "stripe", "name": "Stripe", "credentials": {
        "secret_key": "sk_test_51QbrowserTest000000000000001",
        "publishable_key": "pk_test_51QbrowserTest000000000000001"}}),
    )
    .expect(201);
    Some(())
}

/// Types a card into localstripe's card element, as a payer would.
fn type_card(browser: &Browser, number: &str) {
    for (field, value) in [
        ("number", number),
        ("exp_month", "12"),
        ("exp_year", "30"),
        ("cvc", "123"),
        ("postal_code", "12345"),
    ] {
        browser.type_into(&format!("#card-element input[placeholder={field}]"), value);
    }
}

#[test]
fn a_payer_pays_by_card_with_stripe_js_and_passes_3_d_secure() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let app = App::new(Backend::Sqlite).unwrap().in_test_mode();
    if stripe_checkout(&app).is_none() {
        return;
    }
    let (shop, visits) = merchant_site();
    for (number, name, needs_authentication) in [
        ("4242424242424242", "card", false),
        ("4000002760003184", "card-3ds", true),
    ] {
        let p = app.create_payment(
            json!({"amount": "25.00", "currency": "USD", "description": "Card test",
            "return_url": format!("{shop}/thanks")}),
        );
        browser.go(p["checkout_url"].as_str().unwrap());
        // The card form shows once Stripe.js is there; the other ways to pay stay.
        browser.find("css selector", "#card-form:not([hidden])");
        assert!(browser.source().contains("value=\"bank_transfer\""));
        type_card(&browser, number);
        browser.screenshot(&format!("checkout-{name}-form"));
        browser.click("#card-form button");
        if needs_authentication {
            // The bank asks the payer (localstripe's stand-in for 3-D Secure).
            browser.wait_for("Authenticate this payment");
            browser.click_button("Complete authentication");
            browser.screenshot("checkout-card-3ds-authenticated");
        }
        let landed = visits
            .recv_timeout(Duration::from_secs(30))
            .expect("the browser reached the shop");
        assert_eq!(
            landed,
            format!("/thanks?payment={}&status=succeeded", p["id"])
        );
        let paid = app.get(&format!("/payments/{}/", p["id"])).body;
        assert_eq!(
            (paid["status"].as_str(), num(&paid["balance"])),
            (Some("succeeded"), "0.00".to_string())
        );
        let attempts = app.get(&format!("/payments/{}/attempts/", p["id"])).body;
        assert_eq!(
            (
                attempts[0]["gateway"].as_str(),
                attempts[0]["status"].as_str()
            ),
            (Some("stripe"), Some("succeeded"))
        );
        let source = app
            .get(&format!("/sources/{}/", attempts[0]["source"]))
            .body;
        assert_eq!(
            (
                source["card"]["last4"].as_str(),
                source["checkout_payment"].as_i64()
            ),
            (Some(&number[12..]), p["id"].as_i64())
        );
    }
    browser.screenshot("shop-after-card-payment");
}

/// axe-core's script (`npm ci --prefix tests/browser`); None skips the accessibility checks,
/// unless REQUIRE_BROWSER=1.
fn axe_script() -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/axe-core/axe.min.js");
    match std::fs::read_to_string(&path) {
        Ok(script) => Some(script),
        Err(_) => {
            assert!(
                std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"),
                "REQUIRE_BROWSER=1 but axe-core is missing (npm ci --prefix tests/browser)"
            );
            eprintln!("axe-core not installed: skipping the accessibility checks");
            None
        }
    }
}

/// The page shown now: no axe-core violation of impact serious or critical, and a
/// screenshot at 1280 px and at 390 px wide.
fn check_page(browser: &Browser, axe: &Option<String>, name: &str) {
    if let Some(axe) = axe {
        browser.execute(axe, json!([]));
        let result = browser.execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document).then(r => done({passes: r.passes.length, violations: r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => ({id: v.id, impact: v.impact, help: v.help,
                             nodes: v.nodes.map(n => n.html).slice(0, 3)}))}));",
            json!([]),
        );
        assert!(
            result["passes"].as_u64() > Some(10),
            "axe-core ran its rules on {name}: {result}"
        );
        assert_eq!(
            result["violations"],
            json!([]),
            "accessibility violations on {name} ({})",
            browser.url()
        );
    }
    for (width, height) in [(1280, 900), (390, 844)] {
        browser.resize(width, height);
        browser.screenshot(&format!("console-{name}-{width}"));
    }
    browser.resize(1280, 900);
}

fn sign_in(browser: &Browser, email: &str, password: &str) {
    browser.type_into("#email", email);
    browser.type_into("#password", password);
    browser.click_button("Sign in");
}

/// Clicks a form's submit button, saying yes to its confirmation.
fn confirm_and_click(browser: &Browser, css: &str) {
    browser.execute("window.confirm = () => true;", json!([]));
    browser.click(css);
}

#[test]
fn a_merchant_uses_the_console_in_a_browser() {
    use crate::console::{set_password, sign_in_link, PASSWORD};
    let Some(browser) = Browser::start() else {
        return;
    };
    let axe = axe_script();
    let app = App::new(Backend::Sqlite).unwrap();
    let base = app.server.base.clone();
    set_password(app.server, &app.email, PASSWORD);
    app.create_payment(json!({"amount": "5000", "status": "succeeded",
        "payment_date": chrono::Utc::now().to_rfc3339(), "description": "A live order"}));
    browser.resize(1280, 900);

    // Signing in with a password: the page asked for comes after.
    browser.go(&format!("{base}/dashboard/payments/"));
    browser.wait_for("Sign in to cobro");
    check_page(&browser, &axe, "sign-in");
    sign_in(&browser, &app.email, PASSWORD);
    browser.wait_for("A live order");
    assert_eq!(browser.url(), format!("{base}/dashboard/payments/"));
    check_page(&browser, &axe, "payments");
    browser.go(&format!("{base}/dashboard/"));
    browser.wait_for("Collected");
    check_page(&browser, &axe, "overview");

    // Test mode: only test data, and a payment made with the API is found by searching.
    browser.click_button("Test mode off");
    browser.wait_for("Test mode: test data only");
    let test = app.in_test_mode();
    let marker = unique("Console order ");
    let p =
        test.create_payment(json!({"amount": "30.00", "currency": "USD", "description": marker}));
    browser.go(&format!("{base}/dashboard/payments/"));
    let page = browser.wait_for("Payments");
    assert!(
        !page.contains("A live order"),
        "test mode shows no live payment"
    );
    browser.type_into("#search", &marker);
    browser.click_button("Filter");
    browser.wait_for_url("search=");
    browser.wait_for("1 payment<");
    browser.click(&format!("a[href='/dashboard/payments/{}/']", p["id"]));
    browser.wait_for("Checkout link");
    check_page(&browser, &axe, "payment-unpaid");

    // Paid through its checkout link, in the same browser.
    let checkout = browser.execute(
        "return document.getElementById('checkout-url').value;",
        json!([]),
    );
    browser.go(checkout.as_str().unwrap());
    browser.click("input[value='sandbox:tok_visa']");
    browser.click("button[type=submit]");
    browser.wait_for("Keep this page as your receipt");
    browser.go(&format!("{base}/dashboard/payments/{}/", p["id"]));
    browser.wait_for("Amount to refund");

    // Part of it refunded from its page: the refund and its event are on the page.
    browser.type_into("#refund-amount", "12.50");
    confirm_and_click(&browser, "form.refund button[type=submit]");
    let page = browser.wait_for("Refund created.");
    assert!(page.contains("USD 12.50"), "the refund is listed");
    assert!(
        page.contains("refund.created"),
        "the timeline has the refund's event"
    );
    assert!(page.contains(&app.email), "by the signed-in user");
    check_page(&browser, &axe, "payment-refunded");
    let refunds = test.get(&format!("/refunds/?payment={}", p["id"])).body;
    assert_eq!(
        (
            refunds["count"].as_i64(),
            num(&refunds["results"][0]["amount"])
        ),
        (Some(1), "12.50".to_string())
    );

    // Every other page, for its accessibility and its screenshots.
    let customer = test.customer_id("Ada Lovelace");
    let invoice = test.open_invoice(&customer, "USD", "80.00");
    let hook = test
        .post(
            "/webhooks/",
            json!({"url": "https://hooks.example.com/cobro", "events": ["*"]}),
        )
        .expect(201)
        .body;
    test.post(&format!("/webhooks/{}/test/", hook["id"]), json!({}))
        .expect(201);
    for (path, name, shows) in [
        (
            "/dashboard/customers/".to_string(),
            "customers",
            "Ada Lovelace",
        ),
        (
            format!("/dashboard/customers/{customer}/"),
            "customer",
            "All of their invoices",
        ),
        (
            "/dashboard/invoices/".to_string(),
            "invoices",
            invoice.as_str(),
        ),
        (
            format!("/dashboard/invoices/{invoice}/"),
            "invoice",
            "Services",
        ),
        ("/dashboard/keys/".to_string(), "keys", "New key"),
        (
            "/dashboard/integrations/".to_string(),
            "integrations",
            "Connect a Stripe account",
        ),
        (
            "/dashboard/webhooks/".to_string(),
            "webhooks",
            "New webhook",
        ),
        (
            format!("/dashboard/webhooks/{}/", hook["id"]),
            "webhook",
            "Send a test event",
        ),
        ("/dashboard/events/".to_string(), "events", "refund.created"),
        (
            "/dashboard/members/".to_string(),
            "members",
            "Add a member by email",
        ),
        (
            "/dashboard/account/".to_string(),
            "account",
            "Change your password",
        ),
    ] {
        browser.go(&format!("{base}{path}"));
        browser.wait_for(shows);
        check_page(&browser, &axe, name);
    }
    browser.go(&format!("{base}/dashboard/keys/"));
    browser.type_into("#key-name", "browser");
    browser.click_button("Create key");
    browser.wait_for("it is not shown again");
    check_page(&browser, &axe, "key-created");

    // Signing out ends the session: the console asks to sign in again.
    browser.click_button("Sign out");
    browser.wait_for("You are signed out.");
    browser.go(&format!("{base}/dashboard/payments/{}/", p["id"]));
    browser.wait_for("Sign in to cobro");

    // A one-time link signs in once.
    let link = format!("{base}{}", sign_in_link(app.server, &app.email));
    browser.go(&link);
    browser.wait_for("Overview");
    browser.click_button("Sign out");
    browser.wait_for("You are signed out.");
    browser.go(&link);
    browser.wait_for("has been used or has expired");

    // A viewer: no action on the page, and a refund posted from their session (with its
    // CSRF token, as a forged form would) is refused and changes nothing.
    let viewer = app.stranger();
    app.add_member(&viewer.email, cobro::accounts::roles::Role::Viewer);
    set_password(app.server, &viewer.email, PASSWORD);
    browser.go(&format!("{base}/dashboard/sign-in/"));
    sign_in(&browser, &viewer.email, PASSWORD);
    browser.wait_for("Overview");
    browser.execute(
        "const s = document.getElementById('workspace'); s.value = arguments[0]; s.form.submit();",
        json!([app.workspace]),
    );
    browser.wait_for(&format!("value=\"{}\" selected", app.workspace));
    browser.go(&format!("{base}/dashboard/payments/"));
    browser.wait_for("A live order");
    browser.click_button("Test mode off");
    browser.wait_for("Test mode: test data only");
    browser.go(&format!("{base}/dashboard/payments/{}/", p["id"]));
    let page = browser.wait_for("Timeline");
    assert!(page.contains("· viewer"));
    let buttons = browser.execute(
        "return [...document.querySelectorAll('main button, main form[method=post]')].map(b => b.outerHTML);",
        json!([]),
    );
    assert_eq!(buttons, json!([]), "a viewer sees no action");
    check_page(&browser, &axe, "payment-as-viewer");
    browser.execute(
        "const form = document.createElement('form');
         form.method = 'post';
         form.action = arguments[0];
         for (const [name, value] of [['csrf', document.querySelector('input[name=csrf]').value], ['amount', '1.00']]) {
             const input = document.createElement('input');
             input.name = name;
             input.value = value;
             form.append(input);
         }
         document.body.append(form);
         form.submit();",
        json!([format!("/dashboard/payments/{}/refund/", p["id"])]),
    );
    browser.wait_for("Your role in this workspace does not allow this.");
    assert_eq!(
        test.get(&format!("/refunds/?payment={}", p["id"])).body["count"],
        1
    );
}
