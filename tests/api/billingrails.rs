//! The Billingrails door (`/v1/…`) onto the same data: accounts are customers, invoices are
//! invoices, payments are payments, in Billingrails' wire format (integer minor units,
//! string ids, the resource under its name with `meta.request_id`, `page`/`per_page` lists,
//! and `{"error": {…}}` errors), authenticated by a workspace secret key alone.

use crate::both;
use crate::helpers::*;

/// A Billingrails client: a secret key of the app's workspace, in one mode.
struct Br {
    app: App,
    key: String,
}

impl Br {
    fn new(app: &App, test_mode: bool) -> Br {
        Br {
            app: app.clone(),
            key: app.secret_key(test_mode),
        }
    }
    fn call(&self, method: &str, path: &str, body: Option<Value>, extra: &[(&str, &str)]) -> Resp {
        let auth = format!("Bearer {}", self.key);
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        send(
            method,
            &self.app.url(path),
            &headers,
            body.map(|b| b.to_string()).as_deref(),
        )
    }
    fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None, &[])
    }
    fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body), &[])
    }
    fn patch(&self, path: &str, body: Value) -> Resp {
        self.call("PATCH", path, Some(body), &[])
    }
    /// An account and an issued invoice for it of `amount` minor units of USD.
    fn account_with_invoice(&self, amount: i64) -> (String, String) {
        let account = self
            .post(
                "/v1/accounts",
                json!({"name": "Acme", "email": "billing@acme.test"}),
            )
            .expect(201)
            .body;
        let account = account["account"]["id"].as_str().unwrap().to_string();
        let invoice = self.post("/v1/invoices", json!({"account_id": account, "currency": "USD",
            "due_at": "2026-12-31T00:00:00Z", "line_items": [{"name": "Plan", "description": null, "quantity": 1, "unit_amount": amount}]})).expect(201).body;
        let invoice = invoice["invoice"]["id"].as_str().unwrap().to_string();
        self.post(&format!("/v1/invoices/{invoice}/issue"), json!({}))
            .expect(200);
        (account, invoice)
    }
}

fn error_of(resp: &Resp) -> (String, String, Vec<(String, String)>) {
    let e = &resp.body["error"];
    assert!(e["message"].is_string(), "{}", resp.text);
    assert_eq!(resp.body["message"], e["message"]);
    let details = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap().to_string(),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (
        e["type"].as_str().unwrap().to_string(),
        e["code"].as_str().unwrap().to_string(),
        details,
    )
}

fn fields(resp: &Resp) -> Vec<String> {
    error_of(resp).2.into_iter().map(|(f, _)| f).collect()
}

both! {
    fn accounts_are_customers(app) {
        let br = Br::new(&app, true);
        let created = br.post("/v1/accounts", json!({"name": "Acme", "email": "Billing@Acme.test", "country": "cl",
            "type": "organization", "default_currency": "USD", "metadata": {"crm": "7"}})).expect(201).body;
        assert!(created["meta"]["request_id"].as_str().unwrap().starts_with("req_"));
        let account = &created["account"];
        let id = account["id"].as_str().unwrap();
        assert_eq!((account["object"].as_str(), account["name"].as_str(), account["email"].as_str(), account["country"].as_str()),
            (Some("account"), Some("Acme"), Some("billing@acme.test"), Some("CL")));
        // The same customer through the Piriod door, in the key's mode only.
        let customer = app.in_test_mode().get(&format!("/customers/{id}/")).expect(200).body;
        assert_eq!((customer["name"].as_str(), customer["metadata"].clone()), (Some("Acme"), json!({"crm": "7"})));
        app.get(&format!("/customers/{id}/")).expect(404);
        Br::new(&app, false).get(&format!("/v1/accounts/{id}")).expect(404);
        assert_eq!(br.get(&format!("/v1/accounts/{id}")).expect(200).body["account"], *account);
        let renamed = br.patch(&format!("/v1/accounts/{id}"), json!({"name": "Acme SpA"})).expect(200).body;
        assert_eq!((renamed["account"]["name"].as_str(), renamed["account"]["email"].as_str()), (Some("Acme SpA"), Some("billing@acme.test")));
        app.in_test_mode().post("/customers/", json!({"name": "Second"})).expect(201);
        let page = br.get("/v1/accounts?page=2&per_page=1").expect(200).body;
        assert_eq!(page["accounts"].as_array().unwrap().len(), 1);
        assert_eq!(page["accounts"][0]["name"], "Acme SpA");
        let meta = &page["meta"];
        assert_eq!((meta["current_page"].clone(), meta["per_page"].clone(), meta["total_count"].clone()), (json!(2), json!(1), json!(2)));
        assert!(meta["request_id"].is_string());
        // Errors in Billingrails' shape.
        let missing = br.post("/v1/accounts", json!({"email": "x@y.z"})).expect(400);
        assert_eq!(error_of(&missing), ("invalid_request_error".into(), "invalid_parameters".into(),
            vec![("name".into(), "This field is required.".into())]));
        assert_eq!(missing.body["error"]["message"], "name: This field is required.");
        assert_eq!(error_of(&br.get("/v1/accounts/cus_nobody").expect(404)).1, "resource_not_found");
        assert_eq!(fields(&br.get("/v1/accounts?per_page=500").expect(400)), ["per_page"]);
        let auth = format!("Bearer {}", br.key);
        let bad_json = send("POST", &app.url("/v1/accounts"), &[("Authorization", &auth), ("Content-Type", "application/json")], Some("{")).expect(400);
        assert_eq!(error_of(&bad_json).1, "invalid_json");
        // No credentials come before a bad query.
        send("GET", &app.url("/v1/payments?page=0"), &[], None).expect(401);
    }

    fn only_a_secret_key_opens_the_door(app) {
        let none = send("GET", &app.url("/v1/accounts"), &[], None).expect(401);
        assert_eq!(error_of(&none).0, "authentication_error");
        // A user token (even with its workspace headers) is the Piriod door's credential.
        let token = app.send("GET", "/v1/accounts", None, &[]).expect(401);
        assert_eq!(error_of(&token).1, "unauthenticated");
        let wrong = send("GET", &app.url("/v1/accounts"), &[("Authorization", "Bearer sk_test_nope")], None).expect(401);
        assert_eq!(error_of(&wrong).0, "authentication_error");
        // Another workspace's key sees none of this one's objects.
        let br = Br::new(&app, true);
        let (account, invoice) = br.account_with_invoice(500);
        let stranger = Br::new(&app.stranger(), true);
        stranger.get(&format!("/v1/accounts/{account}")).expect(404);
        stranger.get(&format!("/v1/invoices/{invoice}")).expect(404);
        assert_eq!(stranger.get("/v1/invoices").expect(200).body["meta"]["total_count"], 0);
        assert_eq!(error_of(&br.get("/v1/nothing-here").expect(404)).1, "resource_not_found");
    }

    fn invoices_in_minor_units(app) {
        let br = Br::new(&app, true);
        let account = br.post("/v1/accounts", json!({"name": "Acme"})).expect(201).body["account"]["id"].as_str().unwrap().to_string();
        let created = br.post("/v1/invoices", json!({"account_id": account, "currency": "USD", "due_at": "2026-12-31T12:00:00Z",
            "line_items": [{"name": "Seats", "description": null, "quantity": 3, "unit_amount": 1050}, {"name": "Setup", "quantity": 1, "unit_amount": 99}]})).expect(201).body;
        let inv = &created["invoice"];
        let id = inv["id"].as_str().unwrap();
        assert_eq!((inv["object"].as_str(), inv["status"].as_str(), inv["account_id"].as_str()), (Some("invoice"), Some("draft"), Some(account.as_str())));
        assert_eq!((inv["total_amount"].clone(), inv["due_amount"].clone(), inv["paid_amount"].clone()), (json!(3249), json!(3249), json!(0)));
        assert_eq!(inv["line_items"][0]["total_amount"], 3150);
        assert_eq!(inv["due_at"], "2026-12-31T00:00:00.000Z");
        // Through the Piriod door: the same invoice, in decimals.
        let piriod = app.in_test_mode().get(&format!("/invoices/{id}/")).expect(200).body;
        assert_eq!((num(&piriod["total"]), piriod["due_date"].as_str()), ("32.49".into(), Some("2026-12-31")));
        // Unit amounts of an update are in the invoice's currency.
        let changed = br.patch(&format!("/v1/invoices/{id}"), json!({"line_items": [{"id": "li_1", "name": "Seats", "description": null, "quantity": 1, "unit_amount": 1000}]})).expect(200).body;
        assert_eq!(changed["invoice"]["total_amount"], 1000);
        let bad = br.patch(&format!("/v1/invoices/{id}"), json!({"line_items": [{"name": "Seats", "quantity": 1, "unit_amount": "ten"}]})).expect(400);
        assert_eq!(fields(&bad), ["line_items"]);
        let issued = br.post(&format!("/v1/invoices/{id}/issue"), json!({})).expect(200).body;
        assert_eq!(issued["invoice"]["status"], "issued");
        assert!(issued["invoice"]["issued_at"].is_string());
        assert_eq!(app.in_test_mode().get(&format!("/invoices/{id}/")).body["status"], "finalized");
        let again = br.post(&format!("/v1/invoices/{id}/issue"), json!({})).expect(400);
        assert_eq!(error_of(&again).1, "invalid_request");
        assert_eq!(fields(&br.post("/v1/invoices", json!({"account_id": "cus_nobody", "currency": "USD"})).expect(400)), ["account_id"]);
        assert_eq!(fields(&br.post("/v1/invoices", json!({"account_id": account, "currency": "USD", "line_items": [{"name": "x", "unit_amount": 10.5}]})).expect(400)), ["line_items"]);
        // Billingrails' lines carry minor units in unit_amount; an `amount` (Piriod's unit
        // price, in major units) is not read as one.
        let bare = br.post("/v1/invoices", json!({"account_id": account, "currency": "USD", "line_items": [{"name": "x", "quantity": 1, "amount": 1050}]})).expect(400);
        assert_eq!(fields(&bare), ["line_items"]);
        let listed = br.get(&format!("/v1/invoices?account_id={account}")).expect(200).body;
        assert_eq!(listed["meta"]["total_count"], 1);
    }

    fn offline_payments_record_what_was_paid(app) {
        let br = Br::new(&app, true);
        let (account, invoice) = br.account_with_invoice(2500);
        let made = br.post("/v1/payments", json!({"mode": "offline", "account_id": account, "reference_id": "PAY-REF-001",
            "invoice_id": invoice})).expect(201).body;
        let p = &made["payment"];
        let id = p["id"].as_str().unwrap();
        assert!(id.parse::<i64>().is_ok(), "{id}");
        assert_eq!((p["object"].as_str(), p["status"].as_str(), p["amount"].clone(), p["currency"].as_str(), p["reference_id"].as_str()),
            (Some("payment"), Some("succeeded"), json!(2500), Some("USD"), Some("PAY-REF-001")));
        assert!(p["succeeded_at"].is_string() && made["meta"]["request_id"].is_string());
        assert_eq!(made["payment_link"], Value::Null);
        assert_eq!(br.get(&format!("/v1/invoices/{invoice}")).body["invoice"]["status"], "paid");
        // The same payment through the Piriod door.
        let piriod = app.in_test_mode().get(&format!("/payments/{id}/")).expect(200).body;
        assert_eq!((piriod["status"].as_str(), piriod["invoice"].as_str(), piriod["customer"].as_str()), (Some("succeeded"), Some(invoice.as_str()), Some(account.as_str())));
        assert_eq!(piriod["metadata"]["reference_id"], "PAY-REF-001");
        // A time given is kept.
        let (account, invoice) = br.account_with_invoice(100);
        let dated = br.post("/v1/payments", json!({"account_id": account, "reference_id": "R2", "invoice_id": invoice,
            "succeeded_at": "2026-11-01T10:00:00Z"})).expect(201).body;
        assert_eq!(dated["payment"]["succeeded_at"], "2026-11-01T10:00:00.000Z");
        // A payment made on the Piriod side is a Billingrails payment too.
        let plain = app.in_test_mode().create_payment(json!({"amount": 700, "currency": "CLP"}));
        let seen = br.get(&format!("/v1/payments/{}", plain["id"])).expect(200).body;
        assert_eq!((seen["payment"]["status"].as_str(), seen["payment"]["amount"].clone()), (Some("pending"), json!(700)));
        let page = br.get("/v1/payments?per_page=2").expect(200).body;
        assert_eq!((page["payments"].as_array().unwrap().len(), page["meta"]["total_count"].clone()), (2, json!(3)));
        assert_eq!(br.get(&format!("/v1/payments?invoice_id={invoice}")).body["meta"]["total_count"], 1);
        br.get("/v1/payments/999999999").expect(404);
    }

    fn online_payments_charge_a_source_or_open_the_checkout(app) {
        let br = Br::new(&app, true);
        let (account, invoice) = br.account_with_invoice(1999);
        let source = app.in_test_mode().create_source(json!({"usage": "reusable", "customer": account}))["id"].as_i64().unwrap();
        let charged = br.post("/v1/payments", json!({"mode": "online", "account_id": account, "reference_id": "ONLINE-1",
            "invoice_id": invoice, "payment_method_id": source.to_string()})).expect(201).body;
        assert_eq!((charged["payment"]["status"].as_str(), charged["payment"]["payment_method_id"].as_str()), (Some("succeeded"), Some(source.to_string().as_str())));
        assert_eq!(br.get(&format!("/v1/invoices/{invoice}")).body["invoice"]["status"], "paid");
        // With an integration: pending, and the checkout page to send the payer to.
        let (account, invoice) = br.account_with_invoice(500);
        let pending = br.post("/v1/payments", json!({"mode": "online", "account_id": account, "reference_id": "ONLINE-2",
            "invoice_id": invoice, "integration_id": "sandbox"})).expect(201).body;
        assert_eq!(pending["payment"]["status"], "pending");
        let link = pending["payment_link"].as_str().unwrap();
        assert!(link.starts_with("http") && link.contains("/pay/"), "{link}");
        assert_eq!(br.get(&format!("/v1/invoices/{invoice}")).body["invoice"]["status"], "issued");
        assert_eq!(fields(&br.post("/v1/payments", json!({"mode": "online", "account_id": account, "reference_id": "X",
            "invoice_id": invoice, "integration_id": "stripe"})).expect(400)), ["integration_id"]);
        let single = app.in_test_mode().source_id();
        assert_eq!(fields(&br.post("/v1/payments", json!({"mode": "online", "account_id": account, "reference_id": "X",
            "invoice_id": invoice, "payment_method_id": single.to_string()})).expect(400)), ["payment_method_id"]);
    }

    fn what_cobro_cannot_pay_is_refused_clearly(app) {
        let br = Br::new(&app, true);
        let (account, invoice) = br.account_with_invoice(1000);
        let before = app.in_test_mode().get("/payments/").body["count"].clone();
        let base = json!({"account_id": account, "reference_id": "R"});
        let with = |extra: Value| { let mut b = base.clone(); for (k, v) in extra.as_object().unwrap() { b[k] = v.clone(); } br.post("/v1/payments", b) };
        for field in ["payment_request_id", "order_id", "credit_grant_id"] {
            let resp = with(json!({field: "x_1"})).expect(400);
            assert_eq!(fields(&resp), [field]);
            assert_eq!(error_of(&resp).0, "invalid_request_error");
        }
        assert_eq!(fields(&with(json!({})).expect(400)), ["invoice_id"]);
        assert_eq!(fields(&with(json!({"invoice_id": "inv_nobody"})).expect(400)), ["invoice_id"]);
        assert_eq!(fields(&with(json!({"invoice_id": invoice, "mode": "cash"})).expect(400)), ["mode"]);
        assert_eq!(fields(&with(json!({"invoice_id": invoice, "mode": "online"})).expect(400)), ["integration_id"]);
        assert_eq!(fields(&with(json!({"invoice_id": invoice, "payment_method_id": "1"})).expect(400)), ["payment_method_id"]);
        assert_eq!(fields(&br.post("/v1/payments", json!({"invoice_id": invoice})).expect(400)), ["account_id", "reference_id"]);
        let other = br.post("/v1/accounts", json!({"name": "Other"})).expect(201).body["account"]["id"].as_str().unwrap().to_string();
        assert_eq!(fields(&br.post("/v1/payments", json!({"account_id": other, "reference_id": "R", "invoice_id": invoice})).expect(400)), ["account_id"]);
        let draft = br.post("/v1/invoices", json!({"account_id": account, "currency": "USD", "line_items": [{"name": "x", "quantity": 1, "unit_amount": 5}]})).expect(201).body["invoice"]["id"].as_str().unwrap().to_string();
        assert_eq!(error_of(&with(json!({"invoice_id": draft})).expect(400)).1, "invalid_request");
        assert_eq!(app.in_test_mode().get("/payments/").body["count"], before);
        // Paid once, safely retried with its key, and then nothing is left to pay.
        let keyed = |b: Value| br.call("POST", "/v1/payments", Some(b), &[("Idempotency-Key", "br-1")]);
        let first = keyed(json!({"account_id": account, "reference_id": "R", "invoice_id": invoice})).expect(201);
        let again = keyed(json!({"account_id": account, "reference_id": "R", "invoice_id": invoice})).expect(201);
        assert_eq!(first.body["payment"], again.body["payment"]);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        let reused = keyed(json!({"account_id": account, "reference_id": "other", "invoice_id": invoice})).expect(409);
        assert_eq!(error_of(&reused).0, "idempotency_error");
        assert_eq!(error_of(&with(json!({"invoice_id": invoice})).expect(400)).1, "invalid_request");
        assert_eq!(app.in_test_mode().get(&format!("/payments/?invoice={invoice}")).body["count"], 1);
    }
}
