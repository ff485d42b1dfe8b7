//! Roles and restricted keys: every route of the OpenAPI document (and the Billingrails
//! door's), tried by every kind of credential. What a credential may not do is a 403 with
//! DRF's body and changes nothing; what it may do reaches its route (a GET answers 200).
//! Then the rules about owners, and members and keys through the API.

use cobro::accounts::roles::Role;

use crate::both;
use crate::helpers::*;

/// A credential of the table, and what the issue says it may do with a resource.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Owner,
    Admin,
    Developer,
    Viewer,
    FullKey,
    ReadOnlyKey,
    /// `payments:write,refunds:read`
    PaymentsKey,
}

const WHO: [Who; 7] = [
    Who::Owner,
    Who::Admin,
    Who::Developer,
    Who::Viewer,
    Who::FullKey,
    Who::ReadOnlyKey,
    Who::PaymentsKey,
];

fn may(who: Who, resource: &str, write: bool) -> bool {
    let people = resource == "members" || resource == "keys";
    match who {
        Who::Owner | Who::Admin => true,
        Who::Developer => resource != "keys" && (resource != "members" || !write),
        Who::Viewer => !write && resource != "keys",
        Who::FullKey => !people,
        Who::ReadOnlyKey => !people && !write,
        Who::PaymentsKey => resource == "payments" || (resource == "refunds" && !write),
    }
}

/// The resource a route is about: its first segment, but a payment's refund is refunds and
/// Billingrails' accounts are customers.
fn resource_of(path: &str) -> String {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    if path.ends_with("/refund/") {
        return "refunds".into();
    }
    match path.split('/').nth(1).unwrap() {
        "accounts" => "customers".into(),
        other => other.into(),
    }
}

/// Everything in the workspace a route's path may name, made by its owner.
struct Fixtures {
    payment: i64,
    refund: i64,
    source: i64,
    customer: String,
    invoice: String,
    webhook: i64,
    event: i64,
    member: i64,
    key: i64,
    integration: String,
}

impl Fixtures {
    fn make(app: &App) -> Fixtures {
        let payment = app.create_payment(json!({}))["id"].as_i64().unwrap();
        let paid = app.create_payment(json!({"status": "succeeded"}));
        let refund = app
            .post("/refunds/", json!({"payment": paid["id"], "amount": 100}))
            .expect(201)
            .body["id"]
            .as_i64()
            .unwrap();
        let customer = app.customer_id("Ana");
        let invoice = app.open_invoice(&customer, "CLP", "1000");
        // Disabled by hand: no delivery worker (another test's) changes it meanwhile.
        let webhook = app
            .post(
                "/webhooks/",
                json!({"url": "https://hooks.example/cobro", "events": ["payment.*"], "enabled": false}),
            )
            .expect(201)
            .body["id"]
            .as_i64()
            .unwrap();
        let event = app.get("/events/").expect(200).body["results"][0]["id"]
            .as_i64()
            .unwrap();
        let member = app.stranger();
        app.add_member(&member.email, Role::Viewer);
        let members = app.get("/members/").expect(200).body;
        let member = members["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == member.email.as_str())
            .unwrap()["user"]
            .as_i64()
            .unwrap();
        app.key(false, None);
        let key = app.get("/keys/").expect(200).body["results"][0]["id"]
            .as_i64()
            .unwrap();
        Fixtures {
            payment,
            refund,
            source: app.source_id(),
            customer,
            invoice,
            webhook,
            event,
            member,
            key,
            integration: app.get("/integrations/").expect(200).body["results"][0]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        }
    }

    /// The path with its parameters replaced by the fixture it names.
    fn fill(&self, path: &str) -> String {
        let id = match resource_of(path).as_str() {
            _ if path.starts_with("/payments/{id}/refund/") => self.payment.to_string(),
            "payments" => self.payment.to_string(),
            "refunds" => self.refund.to_string(),
            "sources" => self.source.to_string(),
            "customers" => self.customer.clone(),
            "invoices" => self.invoice.clone(),
            "webhooks" => self.webhook.to_string(),
            "events" => self.event.to_string(),
            "keys" => self.key.to_string(),
            "integrations" => self.integration.clone(),
            _ => String::new(),
        };
        path.replace("{id}", &id)
            .replace("{account}", &self.customer)
            .replace("{invoice}", &self.invoice)
            .replace("{payment}", &self.payment.to_string())
            .replace("{user}", &self.member.to_string())
            .replace("{delivery_id}", "999999")
    }
}

/// What the workspace holds, as its owner sees it: every event of both modes, the members
/// and keys, and the object a path names.
fn snapshot(owner: &App, path: &str) -> Vec<Value> {
    let live = App {
        test_mode: false,
        ..owner.clone()
    };
    let test = live.in_test_mode();
    // When a key was last used is written after its answers, and is no change by anyone.
    let keys = |app: &App| {
        let mut page = app.get("/keys/").body;
        for key in page["results"].as_array_mut().unwrap() {
            key.as_object_mut().unwrap().remove("last_used");
        }
        page
    };
    // What a user or a key did (the sandbox's job settles earlier fixtures meanwhile).
    let mut seen = vec![
        live.get("/events/?page_size=100&actor_type=user").body,
        live.get("/events/?page_size=100&actor_type=key").body,
        test.get("/events/?page_size=100&actor_type=user").body,
        test.get("/events/?page_size=100&actor_type=key").body,
        live.get("/members/").body,
        keys(&live),
        keys(&test),
    ];
    if path.matches('/').count() > 2 && !path.starts_with("/v1/") {
        let object = path.split('/').take(3).collect::<Vec<_>>().join("/") + "/";
        seen.push(owner.get(&object).body);
    }
    seen
}

/// Every route of the OpenAPI document that takes a token or key, and Billingrails'.
fn routes(app: &App) -> Vec<(String, String)> {
    let doc = send("GET", &app.url("/openapi.json"), &[], None)
        .expect(200)
        .body;
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Unauthenticated by design: the health check and a provider's signed webhook.
        if path == "/health/" || path.ends_with("/webhook/") {
            continue;
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    for (method, path) in [
        ("GET", "/v1/accounts"),
        ("POST", "/v1/accounts"),
        ("GET", "/v1/accounts/{account}"),
        ("PATCH", "/v1/accounts/{account}"),
        ("GET", "/v1/invoices"),
        ("POST", "/v1/invoices"),
        ("GET", "/v1/invoices/{invoice}"),
        ("PATCH", "/v1/invoices/{invoice}"),
        ("POST", "/v1/invoices/{invoice}/issue"),
        ("GET", "/v1/payments"),
        ("POST", "/v1/payments"),
        ("GET", "/v1/payments/{payment}"),
    ] {
        routes.push((method.to_string(), path.to_string()));
    }
    routes
}

/// A request to a route that succeeds when allowed: fresh objects made by the workspace's
/// owner (`app`) for writes, the shared fixtures for reads. (path, body, test mode)
fn prepare(
    app: &App,
    fixtures: &Fixtures,
    method: &str,
    route: &str,
) -> (String, Option<Value>, bool) {
    let test = app.in_test_mode();
    let live_payment = || app.create_payment(json!({}))["id"].to_string();
    let paid = |on: &App| on.create_payment(json!({"status": "succeeded"}))["id"].to_string();
    let draft = || {
        let customer = app.customer_id("Draft");
        app.post(
            "/invoices/",
            json!({"customer": customer, "currency": "CLP", "due_date": "2026-12-31",
            "lines": [{"name": "Services", "unit_amount": "1000"}]}),
        )
        .expect(201)
        .body["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let webhook = || {
        app.post(
            "/webhooks/",
            json!({"url": "https://hooks.example/w", "events": ["payment.*"], "enabled": false}),
        )
        .expect(201)
        .body["id"]
            .to_string()
    };
    let member = || {
        let user = app.stranger();
        app.add_member(&user.email, Role::Viewer);
        members_of(app)
            .into_iter()
            .find(|m| m["email"] == user.email.as_str())
            .unwrap()["user"]
            .to_string()
    };
    let sandbox =
        |token: &str| test.create_source(json!({"gateway_data": {"token": token}}))["id"].clone();
    // A test-mode payment charged through a sandbox token (capture: false holds it).
    let charged = |token: &str, capture: bool| {
        let p = test.create_payment(json!({}))["id"].to_string();
        test.post(
            &format!("/payments/{p}/authorize/"),
            json!({"source": sandbox(token), "capture": capture}),
        )
        .expect(200);
        p
    };
    let pending_refund = || {
        let p = charged("tok_refund_async", true);
        test.post("/refunds/", json!({"payment": p.parse::<i64>().unwrap()}))
            .expect(201)
            .body["id"]
            .to_string()
    };
    let live = |path: String, body: Value| (path, Some(body), false);
    let in_test = |path: String, body: Value| (path, Some(body), true);
    let payment_body =
        json!({"amount": 5, "currency": "CLP", "date": "2026-01-01", "description": "By role"});
    match (method, route) {
        ("GET", _) => (fixtures.fill(route), None, false),
        ("POST", "/payments/") => live("/payments/".into(), payment_body),
        ("PUT", "/payments/{id}/") => live(format!("/payments/{}/", live_payment()), payment_body),
        ("PATCH", "/payments/{id}/") => live(
            format!("/payments/{}/", live_payment()),
            json!({"description": "Changed"}),
        ),
        ("DELETE", "/payments/{id}/") => (format!("/payments/{}/", live_payment()), None, false),
        ("POST", "/payments/{id}/authorize/") => {
            let p = test.create_payment(json!({}))["id"].to_string();
            in_test(
                format!("/payments/{p}/authorize/"),
                json!({"source": sandbox("tok_visa")}),
            )
        }
        ("POST", "/payments/{id}/cancel/") => {
            live(format!("/payments/{}/cancel/", live_payment()), json!({}))
        }
        ("POST", "/payments/{id}/capture/") => in_test(
            format!("/payments/{}/capture/", charged("tok_visa", false)),
            json!({}),
        ),
        ("POST", "/payments/{id}/settle/") => in_test(
            format!("/payments/{}/settle/", charged("tok_async_success", true)),
            json!({}),
        ),
        ("POST", "/payments/{id}/refund/") => {
            live(format!("/payments/{}/refund/", paid(app)), json!({}))
        }
        ("POST", "/refunds/") => live(
            "/refunds/".into(),
            json!({"payment": paid(app).parse::<i64>().unwrap()}),
        ),
        ("PATCH", "/refunds/{id}/") => live(
            format!("/refunds/{}/", fixtures.refund),
            json!({"metadata": {"by": "role"}}),
        ),
        ("POST", "/refunds/{id}/cancel/") => {
            in_test(format!("/refunds/{}/cancel/", pending_refund()), json!({}))
        }
        ("POST", "/refunds/{id}/settle/") => {
            in_test(format!("/refunds/{}/settle/", pending_refund()), json!({}))
        }
        ("POST", "/sources/") => live("/sources/".into(), json!({"gateway": "bank_transfer"})),
        ("DELETE", "/sources/{id}/") => (format!("/sources/{}/", app.source_id()), None, false),
        ("POST", "/customers/") => live("/customers/".into(), json!({"name": "Ana"})),
        ("PUT", "/customers/{id}/") => live(
            format!("/customers/{}/", app.customer_id("Put")),
            json!({"name": "Ana María"}),
        ),
        ("PATCH", "/customers/{id}/") => live(
            format!("/customers/{}/", app.customer_id("Patch")),
            json!({"name": "Ana"}),
        ),
        ("DELETE", "/customers/{id}/") => (
            format!("/customers/{}/", app.customer_id("Gone")),
            None,
            false,
        ),
        ("POST", "/invoices/") => live(
            "/invoices/".into(),
            json!({"customer": fixtures.customer, "currency": "CLP",
            "due_date": "2026-12-31", "lines": [{"name": "Services", "unit_amount": "1000"}]}),
        ),
        ("PUT", "/invoices/{id}/") => live(
            format!("/invoices/{}/", draft()),
            json!({"customer": fixtures.customer, "currency": "CLP",
            "due_date": "2026-12-31", "lines": [{"name": "Other", "unit_amount": "900"}]}),
        ),
        ("PATCH", "/invoices/{id}/") => live(
            format!("/invoices/{}/", draft()),
            json!({"description": "Changed"}),
        ),
        ("DELETE", "/invoices/{id}/") => (format!("/invoices/{}/", draft()), None, false),
        ("POST", "/invoices/{id}/finalize/") => {
            live(format!("/invoices/{}/finalize/", draft()), json!({}))
        }
        ("POST", "/invoices/{id}/cancel/") => live(
            format!(
                "/invoices/{}/cancel/",
                app.open_invoice(&fixtures.customer, "CLP", "10")
            ),
            json!({}),
        ),
        ("POST", "/invoices/{id}/mark_uncollectible/") => live(
            format!(
                "/invoices/{}/mark_uncollectible/",
                app.open_invoice(&fixtures.customer, "CLP", "10")
            ),
            json!({}),
        ),
        ("POST", "/webhooks/") => live(
            "/webhooks/".into(),
            json!({"url": "https://hooks.example/new", "events": ["refund.*"], "enabled": false}),
        ),
        ("PUT", "/webhooks/{id}/") => live(
            format!("/webhooks/{}/", webhook()),
            json!({"url": "https://hooks.example/put", "events": ["payment.*"], "enabled": false}),
        ),
        ("PATCH", "/webhooks/{id}/") => live(
            format!("/webhooks/{}/", webhook()),
            json!({"description": "Changed"}),
        ),
        ("DELETE", "/webhooks/{id}/") => (format!("/webhooks/{}/", webhook()), None, false),
        ("POST", "/webhooks/{id}/rotate-secret/") => {
            live(format!("/webhooks/{}/rotate-secret/", webhook()), json!({}))
        }
        ("POST", "/webhooks/{id}/test/") => {
            live(format!("/webhooks/{}/test/", webhook()), json!({}))
        }
        ("POST", "/webhooks/{id}/deliveries/{delivery_id}/retry/") => {
            let hook = webhook();
            let delivery = app
                .post(&format!("/webhooks/{hook}/test/"), json!({}))
                .expect(201)
                .body["id"]
                .to_string();
            live(
                format!("/webhooks/{hook}/deliveries/{delivery}/retry/"),
                json!({}),
            )
        }
        ("POST", "/integrations/") => in_test("/integrations/".into(), stripe_integration()),
        ("PATCH", "/integrations/{id}/") => in_test(
            format!("/integrations/{}/", integration(&test)),
            json!({"name": "Renamed"}),
        ),
        ("DELETE", "/integrations/{id}/") => {
            (format!("/integrations/{}/", integration(&test)), None, true)
        }
        ("POST", "/members/") => {
            let user = app.stranger();
            live(
                "/members/".into(),
                json!({"email": user.email, "role": "viewer"}),
            )
        }
        ("PATCH", "/members/{user}/") => live(
            format!("/members/{}/", member()),
            json!({"role": "developer"}),
        ),
        ("DELETE", "/members/{user}/") => (format!("/members/{}/", member()), None, false),
        ("POST", "/keys/") => live("/keys/".into(), json!({"name": "by role"})),
        ("DELETE", "/keys/{id}/") => {
            app.key(false, None);
            let id = app.get("/keys/").expect(200).body["results"][0]["id"].to_string();
            (format!("/keys/{id}/"), None, false)
        }
        ("POST", "/v1/accounts") => live("/v1/accounts".into(), json!({"name": "Acme"})),
        ("POST", "/v1/invoices") => live(
            "/v1/invoices".into(),
            json!({"account_id": fixtures.customer, "currency": "CLP",
            "due_at": "2026-12-31T00:00:00Z", "line_items": [{"name": "Plan", "quantity": 1, "unit_amount": 1000}]}),
        ),
        ("PATCH", "/v1/accounts/{account}") => live(
            format!("/v1/accounts/{}", app.customer_id("Br")),
            json!({"name": "Acme SpA"}),
        ),
        ("PATCH", "/v1/invoices/{invoice}") => live(
            format!("/v1/invoices/{}", draft()),
            json!({"description": "Changed"}),
        ),
        ("POST", "/v1/invoices/{invoice}/issue") => {
            live(format!("/v1/invoices/{}/issue", draft()), json!({}))
        }
        ("POST", "/v1/payments") => live(
            "/v1/payments".into(),
            json!({"mode": "offline", "account_id": fixtures.customer, "reference_id": "REF-1",
            "invoice_id": app.open_invoice(&fixtures.customer, "CLP", "10")}),
        ),
        other => panic!("no request prepared for {other:?}: add one"),
    }
}

/// A Stripe integration's body (its credentials are checked against localstripe).
fn stripe_integration() -> Value {
    json!({"gateway": "stripe", "name": "Stripe",
        "credentials": {"secret_key": "sk_test_51QcobroLocalstripe0000000000001", "webhook_secret": "whsec_cobroLocalstripe0000000001"}})
}

/// A test-mode integration of the workspace's own (Stripe, through localstripe), or a
/// built-in one's id when localstripe is not running (its writes then answer 400).
fn integration(test: &App) -> String {
    if stripe_url().is_none() {
        return "sandbox".into();
    }
    test.post("/integrations/", stripe_integration())
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_string()
}

both! {
    fn every_role_and_key_against_every_route(app) {
        let fixtures = Fixtures::make(&app);
        let member = |role: Role| {
            let user = app.stranger();
            app.add_member(&user.email, role);
            App { workspace: app.workspace.clone(), ..user }
        };
        let read_only = |test_mode: bool| read_only_key(&app, test_mode);
        // Each credential in both modes: users by the header, keys by their own.
        let both_modes = |live: App, test: App| (live, test);
        let keyed = |live: String, test: String| both_modes(
            App { token: live, ..app.clone() },
            App { token: test, test_mode: true, ..app.clone() },
        );
        let user = |live: App| { let test = live.in_test_mode(); both_modes(live, test) };
        let credentials = [
            (Who::Owner, user(app.clone())),
            (Who::Admin, user(member(Role::Admin))),
            (Who::Developer, user(member(Role::Developer))),
            (Who::Viewer, user(member(Role::Viewer))),
            (Who::FullKey, keyed(app.key(false, None), app.key(true, None))),
            (Who::ReadOnlyKey, keyed(read_only(false), read_only(true))),
            (Who::PaymentsKey, keyed(app.key(false, Some(&["payments:write", "refunds:read"])), app.key(true, Some(&["payments:write", "refunds:read"])))),
        ];
        assert_eq!(credentials.len(), WHO.len());
        let routes = routes(&app);
        assert!(routes.len() > 60, "{} routes", routes.len());
        let (mut allowed_seen, mut forbidden_seen) = (0, 0);
        for (method, route) in &routes {
            let write = method != "GET";
            let resource = resource_of(route);
            for (who, (live, test)) in &credentials {
                let v1 = route.starts_with("/v1/");
                // Billingrails' door takes keys alone, as `Bearer`: a user's token is a 401.
                if v1 && matches!(who, Who::Owner | Who::Admin | Who::Developer | Who::Viewer) {
                    let (path, _, _) = prepare(&app, &fixtures, "GET", route);
                    let bearer = format!("Bearer {}", live.token);
                    let refused = send(method, &live.url(&path), &[("Authorization", &bearer)], None);
                    assert_eq!(refused.status, 401, "{who:?} {method} {path}: {}", refused.text);
                    continue;
                }
                let (path, body, test_mode) = prepare(&app, &fixtures, method, route);
                let caller = if test_mode { test } else { live };
                let bearer = format!("Bearer {}", caller.token);
                let extra: &[(&str, &str)] = if v1 { &[("Authorization", bearer.as_str())] } else { &[] };
                let body = body.map(|b| b.to_string());
                let owner = if test_mode { app.in_test_mode() } else { app.clone() };
                if may(*who, &resource, write) {
                    let answer = caller.send(method, &path, body.as_deref(), extra);
                    // Without localstripe an integration of the workspace's own cannot be made.
                    let no_stripe = resource == "integrations" && write && stripe_url().is_none();
                    if no_stripe {
                        assert!(![401, 403].contains(&answer.status), "{who:?} {method} {path}: {}", answer.text);
                    } else {
                        assert!((200..300).contains(&answer.status), "{who:?} {method} {path}: {} {}", answer.status, answer.text);
                    }
                    allowed_seen += 1;
                } else {
                    let before = snapshot(&owner, &path);
                    let answer = caller.send(method, &path, body.as_deref(), extra);
                    assert_eq!(answer.status, 403, "{who:?} {method} {path}: {}", answer.text);
                    let (detail, expected) = if v1 {
                        (answer.body["error"]["type"].clone(), "permission_error")
                    } else {
                        (answer.body["detail"].clone(), "You do not have permission to perform this action.")
                    };
                    assert_eq!(detail, expected, "{who:?} {method} {path}: {}", answer.text);
                    assert_eq!(snapshot(&owner, &path), before, "{who:?} {method} {path} changed something");
                    forbidden_seen += 1;
                }
            }
        }
        assert!(allowed_seen > 200 && forbidden_seen > 100, "{allowed_seen} allowed, {forbidden_seen} refused");
    }

    fn a_workspace_keeps_an_owner_and_only_owners_touch_owners(app) {
        let me = members_of(&app).into_iter().find(|m| m["email"] == app.email.as_str()).unwrap();
        let me_path = format!("/members/{}/", me["user"]);
        assert_eq!(me["role"], "owner");
        // The last owner can be neither demoted nor removed.
        let refused = app.patch(&me_path, json!({"role": "admin"})).expect(400).body;
        assert!(refused["role"][0].as_str().unwrap().contains("at least one owner"), "{refused}");
        let refused = app.delete(&me_path).expect(400).body;
        assert!(refused["non_field_errors"][0].as_str().unwrap().contains("last owner"), "{refused}");

        // An admin manages everyone but owners.
        let admin = app.stranger();
        app.post("/members/", json!({"email": admin.email, "role": "admin"})).expect(201);
        let admin = App { workspace: app.workspace.clone(), ..admin };
        let viewer = app.stranger();
        let added = admin.post("/members/", json!({"email": viewer.email, "role": "viewer"})).expect(201).body;
        assert_eq!(added["role"], "viewer");
        let viewer_path = format!("/members/{}/", added["user"]);
        assert_eq!(admin.patch(&viewer_path, json!({"role": "developer"})).expect(200).body["role"], "developer");
        admin.patch(&me_path, json!({"role": "viewer"})).expect(403);
        admin.delete(&me_path).expect(403);
        admin.patch(&viewer_path, json!({"role": "owner"})).expect(403);
        admin.post("/members/", json!({"email": app.stranger().email, "role": "owner"})).expect(403);
        assert_eq!(members_of(&app).iter().filter(|m| m["role"] == "owner").count(), 1);

        // With a second owner, the first may step down.
        app.patch(&viewer_path, json!({"role": "owner"})).expect(200);
        assert_eq!(app.patch(&me_path, json!({"role": "developer"})).expect(200).body["role"], "developer");
        // Now a developer: members are read only.
        app.patch(&viewer_path, json!({"role": "viewer"})).expect(403);
        assert_eq!(members_of(&app).len(), 3);
        admin.delete(&viewer_path).expect(403);

        // Bad input is a 400 naming the field, and changes nothing.
        let admin_path = format!("/members/{}/", members_of(&app).iter().find(|m| m["role"] == "admin").unwrap()["user"]);
        assert!(admin.patch(&admin_path, json!({"role": "king"})).expect(400).body["role"].is_array());
        assert!(admin.post("/members/", json!({"email": "nobody@example.com"})).expect(400).body["email"].is_array());
        assert!(admin.post("/members/", json!({})).expect(400).body["email"].is_array());
        assert!(admin.post("/members/", json!({"email": app.email})).expect(400).body["email"][0].as_str().unwrap().contains("already"));
        admin.get("/members/999999999/").expect(404);
        assert_eq!(members_of(&app).len(), 3);

        // Each change is an event with its actor, in live mode.
        let events = app.get("/events/?type=member.updated").expect(200).body;
        assert!(events["count"].as_i64().unwrap() >= 3, "{events}");
        assert!(events["results"].as_array().unwrap().iter().any(|e| e["actor"]["email"] == admin.email.as_str()));
        assert_eq!(app.get("/events/?type=member.added").expect(200).body["count"], 2);
    }

    fn trust_never_outlives_a_change_made_on_another_server(app) {
        // Servers trust a credential they saw valid, until any credential changes anywhere.
        let Some(other) = server_with(app.backend(), |_| {}) else { return };
        let payment = json!({"amount": 5, "currency": "CLP", "date": "2026-01-01", "description": "trust"});
        let member = app.stranger();
        app.add_member(&member.email, Role::Developer);
        let elsewhere = App { workspace: app.workspace.clone(), ..member.clone() }.on(other);
        elsewhere.get("/payments/").expect(200);
        let made_there = elsewhere.post("/payments/", payment.clone()).expect(201).body;
        let one = format!("/payments/{}/", made_there["id"]);
        elsewhere.get(&one).expect(200);
        let user = members_of(&app).into_iter().find(|m| m["email"] == member.email.as_str()).unwrap()["user"].clone();
        let path = format!("/members/{user}/");

        // Demoted on the first server: refused on the other at its next request, even one
        // that would have been refused for its body.
        app.patch(&path, json!({"role": "viewer"})).expect(200);
        elsewhere.post("/payments/", payment.clone()).expect(403);
        elsewhere.post("/payments/", json!({})).expect(403);
        // Still allowed to read after each change: a page, a payment, one that is not there.
        elsewhere.get("/payments/").expect(200);
        app.patch(&path, json!({"role": "developer"})).expect(200);
        elsewhere.get(&one).expect(200);
        app.patch(&path, json!({"role": "viewer"})).expect(200);
        elsewhere.get("/payments/999999999/").expect(404);
        // Promoted again: allowed at once (a refusal is never trusted).
        app.patch(&path, json!({"role": "developer"})).expect(200);
        elsewhere.post("/payments/", payment.clone()).expect(201);
        // Removed: not a member any more.
        app.delete(&path).expect(204);
        elsewhere.get(&one).expect(403);
        elsewhere.get("/payments/").expect(403);

        // A key revoked on the first server: 401 on the other, whatever the request.
        let made = app.post("/keys/", json!({})).expect(201).body;
        let as_key = App { token: made["secret"].as_str().unwrap().to_string(), ..app.clone() }.on(other);
        as_key.get("/payments/").expect(200);
        as_key.get(&one).expect(200);
        app.delete(&format!("/keys/{}/", made["id"])).expect(200);
        assert_eq!(as_key.post("/payments/", json!({"amount": "x"})).expect(401).body, json!({"detail": "Invalid token."}));
        // Refused before any answer, even one with no row to show.
        as_key.get("/payments/999999999/").expect(401);
        as_key.get(&one).expect(401);
        as_key.get("/payments/").expect(401);
        let bearer = format!("Bearer {}", made["secret"].as_str().unwrap());
        let refused = send("GET", &as_key.url("/v1/payments"), &[("Authorization", &bearer)], None).expect(401);
        assert_eq!(refused.body["error"]["type"], "authentication_error");
    }

    fn events_show_only_what_the_caller_may_read(app) {
        let p = app.create_payment(json!({}));
        let made = app.post("/keys/", json!({"permissions": ["events:read"]})).expect(201).body;
        app.post("/webhooks/", json!({"url": "https://hooks.example/e", "events": ["payment.*"], "enabled": false})).expect(201);
        let viewer = app.stranger();
        app.add_member(&viewer.email, Role::Viewer);
        let viewer = App { workspace: app.workspace.clone(), ..viewer };
        let kinds = |who: &App| -> std::collections::BTreeSet<String> {
            who.get("/events/?page_size=100").expect(200).body["results"].as_array().unwrap().iter()
                .map(|e| e["type"].as_str().unwrap().split('.').next().unwrap().to_string()).collect()
        };
        assert_eq!(kinds(&app), ["key", "member", "payment", "webhook"].map(String::from).into());
        // A viewer reads no key's events; a key that may read events alone, none of them.
        assert_eq!(kinds(&viewer), ["member", "payment", "webhook"].map(String::from).into());
        let events_only = App { token: made["secret"].as_str().unwrap().to_string(), ..app.clone() };
        assert!(kinds(&events_only).is_empty());
        let key_event = app.get("/events/?type=key.created").expect(200).body["results"][0]["id"].clone();
        viewer.get(&format!("/events/{key_event}/")).expect(404);
        app.get(&format!("/events/{key_event}/")).expect(200);
        let payment_event = app.get(&format!("/events/?object_id={}&object_type=payment", p["id"])).expect(200).body["results"][0]["id"].clone();
        events_only.get(&format!("/events/{payment_event}/")).expect(404);
        viewer.get(&format!("/events/{payment_event}/")).expect(200);
    }

    fn keys_through_the_api_are_shown_once_and_revoked_at_once(app) {
        let made = app.post("/keys/", json!({"name": "reporting", "permissions": ["events:read", "payments:read"]})).expect(201).body;
        let secret = made["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("rk_live_"), "{made}");
        assert_eq!(made["kind"], "restricted");
        assert_eq!(made["permissions"], json!(["payments:read", "events:read"]));
        assert_eq!(made["prefix"], format!("rk_live_…{}", &secret[secret.len() - 4..]));
        let listed = app.get("/keys/").expect(200).body;
        assert_eq!(listed["count"], 1);
        assert!(listed["results"][0].get("secret").is_none(), "{listed}");
        assert!(!listed.to_string().contains(&secret));
        let as_key = App { token: secret.clone(), ..app.clone() };
        as_key.get("/payments/").expect(200);
        as_key.post("/payments/", json!({"amount": 5, "currency": "CLP", "date": "2026-01-01"})).expect(403);
        // Used just now: last_used is set.
        let key_path = format!("/keys/{}/", made["id"]);
        let mut used = Value::Null;
        for _ in 0..250 {
            used = app.get(&key_path).expect(200).body["last_used"].clone();
            if used.is_string() { break; }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(used.is_string(), "last_used never written");

        // A full key in test mode, by test mode's own list.
        let test = app.in_test_mode();
        let full = test.post("/keys/", json!({})).expect(201).body;
        assert!(full["secret"].as_str().unwrap().starts_with("sk_test_"));
        assert_eq!(full["permissions"], Value::Null);
        assert_eq!(test.get("/keys/").expect(200).body["count"], 1);
        app.get(&format!("/keys/{}/", full["id"])).expect(404);

        // Bad permissions name the field, and make nothing.
        for bad in [json!(["payments:delete"]), json!(["members:read"]), json!([]), json!("payments:read"), json!([5])] {
            let refused = app.post("/keys/", json!({"permissions": bad})).expect(400).body;
            assert!(refused["permissions"].is_array(), "{bad}: {refused}");
        }
        assert_eq!(app.get("/keys/").expect(200).body["count"], 1);

        // Revoked: refused at once, still listed, revoking again changes nothing.
        let revoked = app.delete(&key_path).expect(200).body;
        assert!(revoked["revoked"].is_string());
        assert_eq!(as_key.get("/payments/").expect(401).body, json!({"detail": "Invalid token."}));
        assert_eq!(app.delete(&key_path).expect(200).body["revoked"], revoked["revoked"]);
        let events = app.get("/events/?type=key.revoked").expect(200).body;
        assert_eq!(events["count"], 1);
        assert_eq!(events["results"][0]["actor"], json!({"type": "user", "email": app.email}));
        assert!(!events.to_string().contains(&secret));
        assert_eq!(app.get("/events/?type=key.created").expect(200).body["count"], 1);
        // Keys never reach members or keys, whatever they may do otherwise.
        let full_live = App { token: app.key(false, None), ..app.clone() };
        full_live.get("/keys/").expect(403);
        full_live.get("/members/").expect(403);
        full_live.get("/payments/").expect(200);
    }
}

fn members_of(app: &App) -> Vec<Value> {
    app.get("/members/").expect(200).body["results"]
        .as_array()
        .unwrap()
        .clone()
}

fn read_only_key(app: &App, test_mode: bool) -> String {
    let mut conn = app.server.db.pool.get().unwrap();
    let scope = cobro::accounts::operator_scope(&mut conn, &app.workspace, test_mode).unwrap();
    let new = cobro::accounts::keys::NewKey {
        permissions: Some(cobro::accounts::roles::read_only()),
        name: "read only".into(),
    };
    cobro::accounts::keys::create(&mut conn, &scope, &new)
        .unwrap()
        .secret
        .unwrap()
}
