//! `GET /health/`: 200 with the backend's name when the database answers, 503 otherwise.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use diesel::connection::SimpleConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::Db;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `sqlite` or `postgresql`.
    pub database: &'static str,
}

/// Liveness and database check (no authentication).
#[utoipa::path(get, path = "/health/", tag = "operations", security(()),
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(db: web::Data<Db>) -> HttpResponse {
    let database = db.backend.name();
    // A short wait: a health check must answer fast, also when it fails. The writer is
    // asked too (on SQLite, a thread of its own that every write goes through).
    let ping = async {
        db.run(|conn| Ok(conn.batch_execute("SELECT 1")?)).await?;
        db.write(|_| Ok(())).await
    };
    let answered = matches!(
        actix_web::rt::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(()))
    );
    if answered {
        HttpResponse::Ok().json(Health {
            status: "ok",
            database,
        })
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "10"))
            .json(Health {
                status: "unavailable",
                database,
            })
    }
}
