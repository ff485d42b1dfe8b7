//! Customers: create, read, change, list with filters, delete (or archive when payments
//! name them), and payments that must name a customer of their own workspace and mode.

use crate::both;
use crate::helpers::*;

/// The names on a page of customers, in order.
fn names(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn invalid_pk(id: &str) -> Value {
    json!([format!("Invalid pk \"{id}\" - object does not exist.")])
}

both! {
    fn create_returns_every_field(app) {
        let c = app.post("/customers/", json!({
            "name": "  Ana Pérez ", "email": "Ana@Example.CL", "tax_id": "12.345.678-5", "country": "cl",
            "metadata": {"crm": "A-1", "vip": true},
        })).expect(201).body;
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "name", "email", "tax_id", "country", "status", "metadata", "test_mode", "created", "updated"]);
        let id = c["id"].as_str().unwrap();
        assert!(id.starts_with("cus_") && id.len() > 10, "{id}");
        assert_eq!(c["name"], "Ana Pérez");
        assert_eq!(c["email"], "ana@example.cl");
        assert_eq!((c["country"].as_str(), c["status"].as_str()), (Some("CL"), Some("active")));
        assert_eq!(c["metadata"], json!({"crm": "A-1", "vip": true}));
        assert_eq!(c["test_mode"], false);
        assert_eq!(app.get(&format!("/customers/{id}/")).expect(200).body, c);
        assert_eq!(app.events_of("customer", &c["id"]), ["customer.created"]);
        // Only the name is required.
        let bare = app.post("/customers/", json!({"name": "Bo"})).expect(201).body;
        assert_eq!((bare["email"].clone(), bare["country"].clone(), bare["metadata"].clone()), (Value::Null, Value::Null, json!({})));
        // Test mode has its own customers.
        let test = app.in_test_mode();
        assert_eq!(test.post("/customers/", json!({"name": "T"})).expect(201).body["test_mode"], true);
        test.get(&format!("/customers/{id}/")).expect(404);
        assert_eq!(test.get("/customers/").body["count"], 1);
        assert_eq!(app.get("/customers/").body["count"], 2);
    }

    fn bad_input_is_refused_and_changes_nothing(app) {
        let refused = |body: Value, field: &str, message: &str| {
            let resp = app.post("/customers/", body).expect(400);
            assert_eq!(resp.body, json!({field: [message]}), "{}", resp.text);
        };
        refused(json!({}), "name", "This field is required.");
        refused(json!({"name": "   "}), "name", "This field may not be blank.");
        refused(json!({"name": null}), "name", "This field may not be null.");
        refused(json!({"name": "x".repeat(257)}), "name", "Ensure this field has no more than 256 characters.");
        refused(json!({"name": "A", "email": "not-an-email"}), "email", "Enter a valid email address.");
        refused(json!({"name": "A", "country": "ZZ"}), "country", "\"ZZ\" is not a valid choice.");
        refused(json!({"name": "A", "country": "Chile"}), "country", "Ensure this field has no more than 2 characters.");
        refused(json!({"name": "A", "status": "gone"}), "status", "\"gone\" is not a valid choice.");
        refused(json!({"name": "A", "tax_id": "\u{0}"}), "tax_id", "Null characters are not allowed.");
        let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        refused(json!({"name": "A", "metadata": many}), "metadata", "Ensure there are no more than 50 keys.");
        app.post("/customers/", json!(["name"])).expect(400);
        assert_eq!(app.get("/customers/").body["count"], 0);
        assert_eq!(app.get("/events/").body["count"], 0);
        // Ids that cannot be customers are simply not found.
        for path in ["/customers/1/", "/customers/cus_/", "/customers/cus_a%20b/", "/customers/acc_x/"] {
            app.get(path).expect(404);
        }
    }

    fn patch_and_put_change_what_they_name(app) {
        let c = app.post("/customers/", json!({"name": "Ana", "email": "ana@x.cl", "tax_id": "1-9",
            "metadata": {"a": "1", "b": "2"}})).expect(201).body;
        let path = format!("/customers/{}/", c["id"].as_str().unwrap());
        let patched = app.patch(&path, json!({"country": "AR", "metadata": {"b": null, "c": 3}})).expect(200).body;
        assert_eq!((patched["name"].as_str(), patched["email"].as_str(), patched["country"].as_str()), (Some("Ana"), Some("ana@x.cl"), Some("AR")));
        assert_eq!(patched["metadata"], json!({"a": "1", "c": 3}));
        assert_ne!(patched["updated"], c["updated"]);
        let cleared = app.patch(&path, json!({"email": null, "tax_id": ""})).expect(200).body;
        assert_eq!((cleared["email"].clone(), cleared["tax_id"].clone()), (Value::Null, Value::Null));
        // A PATCH that changes nothing writes nothing.
        let same = app.patch(&path, json!({"name": "Ana"})).expect(200).body;
        assert_eq!(same["updated"], cleared["updated"]);
        // Bad input changes nothing.
        app.patch(&path, json!({"email": "nope", "name": "Other"})).expect(400);
        assert_eq!(app.get(&path).body["name"], "Ana");
        // PUT needs the name; what it leaves out keeps its value, metadata is replaced.
        assert_eq!(app.put(&path, json!({"country": "CL"})).expect(400).body, json!({"name": ["This field is required."]}));
        let put = app.put(&path, json!({"name": "Ana María", "metadata": {"z": "1"}})).expect(200).body;
        assert_eq!((put["name"].as_str(), put["country"].as_str()), (Some("Ana María"), Some("AR")));
        assert_eq!(put["metadata"], json!({"z": "1"}));
        // Archive and reactivate by hand.
        assert_eq!(app.patch(&path, json!({"status": "archived"})).expect(200).body["status"], "archived");
        assert_eq!(app.patch(&path, json!({"status": "active"})).expect(200).body["status"], "active");
        assert_eq!(app.events_of("customer", &c["id"]),
            ["customer.created", "customer.updated", "customer.updated", "customer.updated", "customer.updated", "customer.updated"]);
        app.patch("/customers/cus_missing123/", json!({"name": "x"})).expect(404);
    }

    fn lists_filter_search_and_page(app) {
        for (name, email, country, tax_id) in [
            ("Ana Pérez", "ana@example.cl", "CL", "11-1"),
            ("Bruno Díaz", "bruno@example.ar", "AR", "22-2"),
            ("Ánika Ruiz", "anika@shop.cl", "CL", "33-3"),
            ("Zoë 100%", "zoe@example.com", "US", "44_4"),
        ] {
            app.post("/customers/", json!({"name": name, "email": email, "country": country, "tax_id": tax_id})).expect(201);
        }
        let bruno = app.get("/customers/?email=BRUNO@example.ar").expect(200).body;
        assert_eq!(names(&bruno), ["Bruno Díaz"]);
        app.patch(&format!("/customers/{}/", bruno["results"][0]["id"].as_str().unwrap()), json!({"status": "archived"})).expect(200);
        let get = |query: &str| names(&app.get(&format!("/customers/?{query}")).expect(200).body);
        assert_eq!(get(""), ["Zoë 100%", "Ánika Ruiz", "Bruno Díaz", "Ana Pérez"]);
        assert_eq!(get("country=cl"), ["Ánika Ruiz", "Ana Pérez"]);
        assert_eq!(get("name=RUIZ"), ["Ánika Ruiz"]);
        assert_eq!(get("name=ánika"), ["Ánika Ruiz"]);
        assert_eq!(get("tax_id=22-2"), ["Bruno Díaz"]);
        assert_eq!(get("status=archived"), ["Bruno Díaz"]);
        assert_eq!(get("status=active&country=CL"), ["Ánika Ruiz", "Ana Pérez"]);
        assert_eq!(get("search=example"), ["Zoë 100%", "Bruno Díaz", "Ana Pérez"]);
        assert_eq!(get("search=33-3"), ["Ánika Ruiz"]);
        // LIKE's wildcards are plain characters in a search.
        assert_eq!(get("search=100%25"), ["Zoë 100%"]);
        assert_eq!(get("search=4_4"), ["Zoë 100%"]);
        assert_eq!(get("search=_"), ["Zoë 100%"]);
        assert_eq!(get("search=' OR 1=1 --"), Vec::<String>::new());
        let page = app.get("/customers/?page_size=3&page=2").expect(200).body;
        assert_eq!((page["count"].clone(), names(&page)), (json!(4), vec!["Ana Pérez".to_string()]));
        assert_eq!(app.get("/customers/?status=gone").expect(400).body, json!({"status": ["Select a valid choice. gone is not one of the available choices."]}));
        app.get("/customers/?page=9").expect(404);
    }

    fn delete_removes_or_archives_a_named_customer(app) {
        let lone = app.customer_id("Lone");
        let path = format!("/customers/{lone}/");
        let answer = app.delete(&path).expect(204);
        assert_eq!(answer.text, "");
        app.get(&path).expect(404);
        app.delete(&path).expect(404);
        assert_eq!(app.events_of("customer", &json!(lone)), ["customer.created", "customer.deleted"]);

        // Named by a payment: archived, still readable and still a valid reference.
        let named = app.customer_id("Named");
        let payment = app.create_payment(json!({"customer": named}));
        let path = format!("/customers/{named}/");
        let archived = app.delete(&path).expect(200).body;
        assert_eq!((archived["id"].as_str(), archived["status"].as_str()), (Some(named.as_str()), Some("archived")));
        assert_eq!(app.get(&path).expect(200).body["status"], "archived");
        assert_eq!(app.delete(&path).expect(200).body["status"], "archived");
        assert_eq!(app.events_of("customer", &json!(named)), ["customer.created", "customer.updated"]);
        let again = app.create_payment(json!({"customer": named}));
        assert_eq!(again["customer"], named.as_str());
        assert_eq!(app.get(&format!("/payments/{}/", payment["id"])).body["customer"], named.as_str());
    }

    fn payments_must_name_a_customer_of_their_scope(app) {
        let before = app.get("/payments/").body["count"].clone();
        let resp = app.post("/payments/", json!({"amount": 1000, "currency": "CLP", "date": "2026-11-23",
            "description": "x", "customer": "cus_nobody"})).expect(400);
        assert_eq!(resp.body, json!({"customer": invalid_pk("cus_nobody")}));
        // A test-mode customer does not exist in live mode.
        let test_customer = app.in_test_mode().customer_id("Sandbox");
        let resp = app.post("/payments/", json!({"amount": 1000, "currency": "CLP", "date": "2026-11-23",
            "description": "x", "customer": test_customer})).expect(400);
        assert_eq!(resp.body, json!({"customer": invalid_pk(&test_customer)}));
        assert_eq!(app.get("/payments/").body["count"], before);
        // Both errors at once, sources included.
        let resp = app.post("/payments/", json!({"amount": 1000, "currency": "CLP", "date": "2026-11-23",
            "description": "x", "customer": "cus_nobody", "source": 999999})).expect(400);
        assert_eq!(resp.body, json!({"source": invalid_pk("999999"), "customer": invalid_pk("cus_nobody")}));
        // A change to another customer is checked too, and a refused one changes nothing.
        let ana = app.customer_id("Ana");
        let p = app.create_payment(json!({"customer": ana}));
        let path = format!("/payments/{}/", p["id"]);
        let resp = app.patch(&path, json!({"customer": "cus_nobody", "description": "new"})).expect(400);
        assert_eq!(resp.body, json!({"customer": invalid_pk("cus_nobody")}));
        assert_eq!(app.get(&path).body, p);
        let bo = app.customer_id("Bo");
        assert_eq!(app.patch(&path, json!({"customer": bo})).expect(200).body["customer"], bo.as_str());
        assert_eq!(app.patch(&path, json!({"customer": null})).expect(200).body["customer"], Value::Null);
        assert_eq!(app.get(&format!("/payments/?customer={bo}")).body["count"], 0);
    }

    fn a_retried_create_makes_one_customer(app) {
        let body = json!({"name": "Once"}).to_string();
        let send = || app.send("POST", "/customers/", Some(&body), &[("Idempotency-Key", "cust-1")]);
        let first = send().expect(201);
        let second = send().expect(201);
        assert_eq!(second.header("idempotent-replayed"), Some("true"));
        assert_eq!(first.body, second.body);
        assert_eq!(app.get("/customers/").body["count"], 1);
    }
}
