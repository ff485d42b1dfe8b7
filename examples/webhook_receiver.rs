//! The webhook receiver of `scripts/bench.sh`: answers every POST with 200 at once and
//! counts them.
//!
//!   cargo run --release --example webhook_receiver -- 127.0.0.1:PORT
//!
//! `GET /stats` answers `{"count": N, "first_ms": …, "last_ms": …}`: how many POSTs came, and
//! when the first and the last came (Unix time in milliseconds; 0 before the first).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};

static COUNT: AtomicU64 = AtomicU64::new(0);
static FIRST_MS: AtomicU64 = AtomicU64::new(0);
static LAST_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn receive(_body: web::Bytes) -> HttpResponse {
    let at = now_ms();
    let _ = FIRST_MS.compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
    LAST_MS.fetch_max(at, Ordering::Relaxed);
    COUNT.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Ok().finish()
}

async fn stats() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "count": COUNT.load(Ordering::Relaxed),
        "first_ms": FIRST_MS.load(Ordering::Relaxed),
        "last_ms": LAST_MS.load(Ordering::Relaxed),
    }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    HttpServer::new(|| {
        App::new()
            .route("/stats", web::get().to(stats))
            .default_service(web::post().to(receive))
    })
    .workers(1)
    .bind(bind)?
    .run()
    .await
}
