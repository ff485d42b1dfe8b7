//! Rate limiting per credential (`COBRO_RATE_LIMIT`), on servers of their own.

use crate::both;
use crate::helpers::*;

both! {
    fn a_credential_over_its_rate_gets_429_with_retry_after(app) {
        let Some(server) = server_with(app.backend(), |s| { s.rate_limit = 2; s.rate_limit_burst = 3; }) else { return };
        let limited = app.on(server);
        for _ in 0..3 {
            limited.get("/payments/").expect(200);
        }
        let throttled = limited.post("/payments/", json!({"amount": 10, "currency": "CLP", "date": "2026-11-23", "description": "x"})).expect(429);
        assert_eq!(throttled.header("Retry-After"), Some("1"));
        assert_eq!(throttled.body, json!({"detail": "Request was throttled. Expected available in 1 second."}));
        // A throttled request changes nothing.
        assert_eq!(app.get("/payments/").expect(200).body["count"], 0);

        // Other credentials have their own budget, even in the same workspace.
        app.stranger().on(server).get("/payments/").expect(200);
        let secret = app.secret_key(false);
        send("GET", &limited.url("/payments/"), &[("Authorization", &format!("Bearer {secret}"))], None).expect(200);

        // The budget refills at the rate.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        limited.get("/payments/").expect(200);
    }

    fn a_checkout_key_is_a_credential_too(app) {
        let Some(server) = server_with(app.backend(), |s| { s.rate_limit = 1; s.rate_limit_burst = 2; }) else { return };
        let app = app.in_test_mode();
        let payment = app.create_payment(json!({}));
        let key = key_of(&payment);
        let body = json!({"checkout": key, "gateway": "sandbox", "gateway_data": {"token": "tok_visa"}}).to_string();
        let url = format!("{}/sources/", server.base);
        let headers = [("Content-Type", "application/json")];
        send("POST", &url, &headers, Some(&body)).expect(201);
        send("POST", &url, &headers, Some(&body)).expect(201);
        send("POST", &url, &headers, Some(&body)).expect(429);
        // The checkout page's form counts against the same key: a page that says to wait.
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let page = send("POST", &format!("{}/pay/{key}/", server.base), &form, Some("method=sandbox%3Atok_visa")).expect(429);
        assert_eq!(page.header("Retry-After"), Some("1"));
        assert!(page.text.contains("Too many attempts") && page.header("content-type") == Some("text/html; charset=utf-8"));
        assert_eq!(app.get(&format!("/payments/{}/attempts/", payment["id"])).body, json!([]), "nothing was charged");
        // And so do its pages.
        let shown = send("GET", payment["checkout_url"].as_str().unwrap().replace(&app.server.base, &server.base).as_str(), &[], None).expect(429);
        assert!(shown.text.contains("Too many attempts"));
        // Other payments' keys have their own budget.
        let other = app.create_payment(json!({}));
        let other_body = json!({"checkout": key_of(&other), "gateway": "bank_transfer"}).to_string();
        send("POST", &url, &headers, Some(&other_body)).expect(201);
    }

    fn the_billingrails_door_throttles_with_retry_after_too(app) {
        let Some(server) = server_with(app.backend(), |s| { s.rate_limit = 1; s.rate_limit_burst = 1; }) else { return };
        let key = app.secret_key(true);
        let bearer = format!("Bearer {key}");
        let url = format!("{}/v1/payments", server.base);
        send("GET", &url, &[("Authorization", &bearer)], None).expect(200);
        let throttled = send("GET", &url, &[("Authorization", &bearer)], None).expect(429);
        assert_eq!(throttled.header("Retry-After"), Some("1"));
        assert_eq!(throttled.body["error"]["type"], "rate_limit_error");
        assert_eq!(throttled.body["message"], "Too many requests.");
    }
}
