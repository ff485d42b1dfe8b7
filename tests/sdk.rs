//! Billingrails' official Node SDK (`@billingrails/node` 0.2.2, in `tests/sdk/billingrails/`)
//! against a real `cobro serve`, on SQLite and on PostgreSQL: in test mode it creates an
//! account and two invoices, issues them, records an offline payment for the first, pays the
//! second online with a reusable sandbox source, lists and retrieves the payments, sees both
//! invoices paid, and reads the same objects through the Piriod routes (`test.mjs`).
//!
//! Needs `node` and `npm ci --prefix tests/sdk/billingrails`; skipped without them unless
//! REQUIRE_SDK=1 (as `.ci/run` sets).

mod common;

use std::path::Path;
use std::process::Command;

use common::{for_each_backend, Server, TestDb};

for_each_backend!(the_billingrails_node_sdk_pays_two_invoices);

fn the_billingrails_node_sdk_pays_two_invoices(db: &TestDb) {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/billingrails");
    let ready = project.join("node_modules/@billingrails/node").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ready {
        assert!(
            std::env::var("REQUIRE_SDK").as_deref() != Ok("1"),
            "REQUIRE_SDK=1 but node or the SDK is missing (npm ci --prefix tests/sdk/billingrails)"
        );
        eprintln!("skipped: node or the Billingrails SDK is missing");
        return;
    }
    let server = Server::start(db, &[]);
    let workspace = server.read_bootstrap().workspace;
    let key = db.cobro(&["key", "create", &workspace, "--mode", "test"]);
    let output = Command::new("node")
        .arg(project.join("test.mjs"))
        .env("COBRO_URL", server.url(""))
        .env("COBRO_KEY", key.trim())
        .output()
        .expect("run node");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the SDK test failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        db.backend_name(),
        server.log()
    );
    println!("sdk ({}): {}", db.backend_name(), stdout.trim());
}
