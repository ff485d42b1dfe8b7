//! Customer storage; scoped like every tenant table (see `in_scope`).

use std::str::FromStr;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use super::domain::{Customer, CustomerStatus};
use crate::db::schema::customers;
use crate::db::{containing, lower, lower_nullable, DbConnection, MultiBackend, Scope};
use crate::error::ApiError;

type InScope = diesel::dsl::And<
    diesel::dsl::Eq<customers::workspace_id, String>,
    diesel::dsl::Eq<customers::test_mode, bool>,
>;

fn in_scope(scope: &Scope) -> InScope {
    customers::workspace_id
        .eq(scope.workspace_id().to_string())
        .and(customers::test_mode.eq(scope.test_mode()))
}

fn scoped(scope: &Scope) -> customers::BoxedQuery<'static, MultiBackend> {
    customers::table.filter(in_scope(scope)).into_boxed()
}

#[derive(Queryable)]
struct CustomerRow {
    id: String,
    _workspace_id: String,
    test_mode: bool,
    name: String,
    email: Option<String>,
    tax_id: Option<String>,
    country: Option<String>,
    status: String,
    metadata: String,
    version: i64,
    created: NaiveDateTime,
    updated: NaiveDateTime,
}

impl CustomerRow {
    fn into_customer(self) -> Result<Customer, ApiError> {
        let corrupt =
            |what: &str| ApiError::internal(format!("customer {} has an invalid {what}", self.id));
        Ok(Customer {
            status: CustomerStatus::from_str(&self.status).map_err(|_| corrupt("status"))?,
            metadata: serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?,
            id: self.id,
            test_mode: self.test_mode,
            name: self.name,
            email: self.email,
            tax_id: self.tax_id,
            country: self.country,
            version: self.version,
            created: self.created,
            updated: self.updated,
        })
    }
}

pub fn find(
    conn: &mut DbConnection,
    scope: &Scope,
    id: &str,
) -> Result<Option<Customer>, ApiError> {
    let row = scoped(scope)
        .filter(customers::id.eq(id.to_string()))
        .get_result::<CustomerRow>(conn)
        .optional()?;
    row.map(CustomerRow::into_customer).transpose()
}

/// Whether `id` is a customer of this workspace and mode.
pub fn exists(conn: &mut DbConnection, scope: &Scope, id: &str) -> Result<bool, ApiError> {
    Ok(diesel::select(diesel::dsl::exists(
        customers::table
            .filter(in_scope(scope))
            .filter(customers::id.eq(id.to_string())),
    ))
    .get_result(conn)?)
}

pub fn insert(conn: &mut DbConnection, scope: &Scope, c: &Customer) -> Result<Customer, ApiError> {
    let row: CustomerRow = diesel::insert_into(customers::table)
        .values((
            customers::id.eq(&c.id),
            customers::workspace_id.eq(scope.workspace_id()),
            customers::test_mode.eq(scope.test_mode()),
            customers::name.eq(&c.name),
            customers::email.eq(&c.email),
            customers::tax_id.eq(&c.tax_id),
            customers::country.eq(&c.country),
            customers::status.eq(c.status.as_str()),
            customers::metadata.eq(Value::Object(c.metadata.clone()).to_string()),
            customers::version.eq(c.version),
            customers::created.eq(c.created),
            customers::updated.eq(c.updated),
        ))
        .get_result(conn)?;
    row.into_customer()
}

/// Saves a changed customer if nobody changed it since it was `read`; false when someone
/// did (then nothing was written).
pub fn save(
    conn: &mut DbConnection,
    scope: &Scope,
    read: &Customer,
    c: &Customer,
) -> Result<bool, ApiError> {
    let updated = diesel::update(customers::table)
        .filter(in_scope(scope))
        .filter(customers::id.eq(&c.id))
        .filter(customers::version.eq(read.version))
        .set((
            customers::name.eq(&c.name),
            customers::email.eq(&c.email),
            customers::tax_id.eq(&c.tax_id),
            customers::country.eq(&c.country),
            customers::status.eq(c.status.as_str()),
            customers::metadata.eq(Value::Object(c.metadata.clone()).to_string()),
            customers::version.eq(read.version + 1),
            customers::updated.eq(c.updated),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

pub fn delete(conn: &mut DbConnection, scope: &Scope, read: &Customer) -> Result<bool, ApiError> {
    let deleted = diesel::delete(customers::table)
        .filter(in_scope(scope))
        .filter(customers::id.eq(&read.id))
        .filter(customers::version.eq(read.version))
        .execute(conn)?;
    Ok(deleted == 1)
}

#[derive(Clone, Debug, Default)]
pub struct CustomerFilter {
    /// Exact, in lower case as stored.
    pub email: Option<String>,
    /// Part of the name, any case.
    pub name: Option<String>,
    pub country: Option<String>,
    pub tax_id: Option<String>,
    pub status: Option<CustomerStatus>,
    /// Part of the name, email or tax id, any case.
    pub search: Option<String>,
}

impl CustomerFilter {
    /// The list's query parameters, with django-filter's messages.
    pub fn parse(params: &crate::http::query::QueryParams) -> Result<Self, ApiError> {
        let mut r = crate::http::query::FilterReader::new(params);
        let filter = CustomerFilter {
            email: r.text("email"),
            name: r.text("name"),
            country: r.text("country"),
            tax_id: r.text("tax_id"),
            status: r.choice::<CustomerStatus>("status"),
            search: r.text("search"),
        };
        r.finish()?;
        Ok(filter)
    }
}

fn filtered<'a>(scope: &Scope, f: &'a CustomerFilter) -> customers::BoxedQuery<'a, MultiBackend> {
    let mut q = scoped(scope);
    if let Some(email) = &f.email {
        q = q.filter(customers::email.eq(email.to_lowercase()));
    }
    if let Some(name) = &f.name {
        q = q.filter(lower(customers::name).like(containing(name)).escape('\\'));
    }
    if let Some(country) = &f.country {
        q = q.filter(customers::country.eq(country.to_uppercase()));
    }
    if let Some(tax_id) = &f.tax_id {
        q = q.filter(customers::tax_id.eq(tax_id));
    }
    if let Some(status) = f.status {
        q = q.filter(customers::status.eq(status.as_str()));
    }
    if let Some(term) = &f.search {
        let pattern = containing(term);
        q = q.filter(
            lower(customers::name)
                .like(pattern.clone())
                .escape('\\')
                .or(customers::email.like(pattern.clone()).escape('\\'))
                .or(lower_nullable(customers::tax_id).like(pattern).escape('\\')),
        );
    }
    q
}

pub fn count(conn: &mut DbConnection, scope: &Scope, f: &CustomerFilter) -> Result<i64, ApiError> {
    Ok(filtered(scope, f).count().get_result(conn)?)
}

/// Newest first.
pub fn list(
    conn: &mut DbConnection,
    scope: &Scope,
    f: &CustomerFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<Customer>, ApiError> {
    let rows = filtered(scope, f)
        .order_by(customers::created.desc())
        .then_order_by(customers::id.desc())
        .offset(offset)
        .limit(limit)
        .load::<CustomerRow>(conn)?;
    rows.into_iter().map(CustomerRow::into_customer).collect()
}
