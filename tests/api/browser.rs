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
