//! A read that carries the credential check its request owes (`accounts::cache`) in its
//! own statement, on PostgreSQL: `SELECT * FROM (the read) AS checked WHERE
//! cobro_epoch_holds(n)` (migration 000017). The call is a one-time filter, evaluated
//! before any row, so the read's answer, rows or none, is one the check passed: a read by
//! id is one round trip instead of two. Use [`read_checked!`](crate::read_checked) for the
//! first read of a request's work; a work that makes none is checked after it
//! (`accounts::cache::at_begin`).

use diesel::pg::{Pg, PgConnection};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::BigInt;
use diesel::sqlite::SqliteConnection;

use super::DbConnection;
use crate::accounts::cache;

/// `query`, answered only if the credential epoch is still `epoch`.
#[derive(Debug, Clone)]
pub struct Checked<Q> {
    query: Q,
    epoch: i64,
}

impl<Q> Checked<Q> {
    pub fn new(query: Q, epoch: i64) -> Self {
        Checked { query, epoch }
    }
}

impl<Q: Query> Query for Checked<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Checked<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT * FROM (");
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(") AS checked WHERE cobro_epoch_holds(");
        out.push_bind_param::<BigInt, _>(&self.epoch)?;
        out.push_sql(")");
        Ok(())
    }
}

/// Prepared once per query type, as the query itself is.
impl<Q: QueryId> QueryId for Checked<Q> {
    type QueryId = Checked<Q::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q, Conn> diesel::RunQueryDsl<Conn> for Checked<Q> {}

/// Runs a read on the connection's own backend: `sqlite` or `pg`, or on PostgreSQL with a
/// check owed, `checked` with the epoch the check expects. If the epoch moved, the
/// credential is asked about afresh and, if it still holds, the read made again with `pg`.
pub fn read<T>(
    conn: &mut DbConnection,
    sqlite: impl FnOnce(&mut SqliteConnection) -> QueryResult<T>,
    pg: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
    checked: impl FnOnce(&mut PgConnection, i64) -> QueryResult<T>,
) -> QueryResult<T> {
    // Inside a transaction the check was made at its `BEGIN` (and a failed statement would
    // abort the transaction, leaving no way to ask about the credential again).
    let owed = if super::in_transaction(conn) {
        None
    } else {
        cache::owed_epoch()
    };
    match conn {
        DbConnection::Sqlite(lite) => return sqlite(lite),
        DbConnection::Pg(postgres) => {
            let Some(epoch) = owed else {
                return pg(postgres);
            };
            match checked(postgres, epoch) {
                Err(err) if cache::is_epoch_moved(&err) => {}
                result => {
                    if result.is_ok() {
                        cache::passed();
                    }
                    return result;
                }
            }
        }
    }
    cache::moved(conn)?;
    match conn {
        DbConnection::Pg(postgres) => pg(postgres),
        DbConnection::Sqlite(lite) => sqlite(lite),
    }
}

/// `$run` (a read of `$query`, named `$q`, on the connection `$c`) as
/// [`on_backend!`](crate::on_backend), with the check owed riding in its statement on
/// PostgreSQL ([`read`]). `$run` must work on a [`Checked`] query too: `load` or
/// `get_result`, not `first`. The query must not be one the planner can prove empty (a
/// literal false, a `LIMIT 0`): its plan would then skip the check, and a row-less answer
/// would pass it. Keep its row order out of it too: SQL does not promise that a subquery's
/// order survives (a read by id, or a count, has none to keep).
#[macro_export]
macro_rules! read_checked {
    ($conn:expr, $query:expr, |$q:ident, $c:ident| $run:expr) => {
        $crate::db::checked::read(
            $conn,
            |$c| {
                let $q = ::std::clone::Clone::clone(&$query);
                $run
            },
            |$c| {
                let $q = ::std::clone::Clone::clone(&$query);
                $run
            },
            |$c, epoch| {
                let $q =
                    $crate::db::checked::Checked::new(::std::clone::Clone::clone(&$query), epoch);
                $run
            },
        )
    };
}
