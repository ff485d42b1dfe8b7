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

    fn screenshot(&self, name: &str) {
        let png = self.call("GET", "/screenshot", None);
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
