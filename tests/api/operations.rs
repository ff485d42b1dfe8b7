//! Operations: health, the OpenAPI document and docs page, CORS.

use crate::both;
use crate::helpers::*;

both! {
    fn health_names_the_backend(app) {
        let resp = send("GET", &app.url("/health/"), &[], None).expect(200);
        let expected = if app.server.db.backend == cobro::db::Backend::Sqlite { "sqlite" } else { "postgresql" };
        assert_eq!(resp.body, json!({"status": "ok", "database": expected}));
    }

    fn openapi_describes_every_route(app) {
        let spec = send("GET", &app.url("/openapi.json"), &[], None).expect(200).body;
        let paths = spec["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/payments/", &["get", "post"][..]),
            ("/payments/{id}/", &["get", "put", "patch", "delete"][..]),
            ("/payments/{id}/cancel/", &["post"][..]),
            ("/payments/{id}/authorize/", &["post"][..]),
            ("/payments/{id}/settle/", &["post"][..]),
            ("/payments/{id}/attempts/", &["get"][..]),
            ("/sources/", &["get", "post"][..]),
            ("/sources/{id}/", &["get", "delete"][..]),
            ("/events/", &["get"][..]),
            ("/events/{id}/", &["get"][..]),
            ("/health/", &["get"][..]),
        ] {
            for method in methods {
                assert!(paths[path][method].is_object(), "{method} {path} is not described");
            }
        }
        assert!(spec["components"]["schemas"]["Payment"]["properties"]["checkout_url"].is_object());
        assert!(spec["components"]["securitySchemes"]["token"].is_object());
    }

    fn docs_page_works_offline(app) {
        let page = send("GET", &app.url("/docs/"), &[], None).expect(200);
        assert!(page.text.contains("swagger-ui"), "{}", page.text);
        assert!(!page.text.contains("https://"), "the docs page loads something from the internet");
        let css = send("GET", &app.url("/docs/swagger-ui.css"), &[], None).expect(200);
        assert!(css.text.len() > 1000);
        send("GET", &app.url("/docs/swagger-ui-bundle.js"), &[], None).expect(200);
    }

    fn cors_allows_configured_origins_only(app) {
        let preflight = |origin: &str| send("OPTIONS", &app.url("/payments/"), &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization, x-simple-workspace, content-type"),
        ], None);
        let allowed = preflight(ALLOWED_ORIGIN);
        assert_eq!(allowed.status, 200, "{}", allowed.text);
        assert_eq!(allowed.header("access-control-allow-origin"), Some(ALLOWED_ORIGIN));
        let refused = preflight("https://evil.example");
        assert_ne!(refused.header("access-control-allow-origin"), Some("https://evil.example"));
        let actual = app.send("GET", "/payments/", None, &[("Origin", ALLOWED_ORIGIN)]).expect(200);
        assert_eq!(actual.header("access-control-allow-origin"), Some(ALLOWED_ORIGIN));
    }
}
