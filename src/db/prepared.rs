//! [`update`]: an `UPDATE` that stays prepared.
//!
//! diesel never keeps its `UPDATE`s prepared (their SQL may take many forms, by the `Some`
//! and `None` of a changeset), so each one is parsed and planned afresh. On SQLite that
//! includes compiling the triggers the statement fires: a payment's update carries
//! `payment_counts`' two. This `UPDATE` is the same SQL as diesel's, kept in the
//! connection's statement cache under its SQL text: the same text is the same statement
//! whatever its binds, so it is right for any changeset, and each form it takes is an
//! entry kept for the connection's life. A filter diesel will not keep prepared (an `IN`
//! list) still is not.

use diesel::backend::Backend;
use diesel::query_builder::{AsChangeset, AstPass, QueryFragment, QueryId};
use diesel::result::{Error, QueryResult};
use diesel::Table;

/// `UPDATE table SET changes WHERE filter`, kept prepared (see the module). Run it with
/// `execute`, like diesel's.
pub fn update<T, C, W>(table: T, filter: W, changes: C) -> Update<T::FromClause, C::Changeset, W>
where
    T: Table,
    C: AsChangeset<Target = T>,
{
    Update {
        table: table.from_clause(),
        changes: changes.as_changeset(),
        filter,
    }
}

#[derive(Debug)]
pub struct Update<T, V, W> {
    /// The table, as its name is written.
    table: T,
    changes: V,
    filter: W,
}

impl<T, V, W, DB> QueryFragment<DB> for Update<T, V, W>
where
    DB: Backend,
    T: QueryFragment<DB>,
    V: QueryFragment<DB>,
    W: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if self.changes.is_noop(out.backend())? {
            return Err(Error::QueryBuilderError(
                "an update with nothing to set".into(),
            ));
        }
        out.push_sql("UPDATE ");
        self.table.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        self.changes.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        self.filter.walk_ast(out.reborrow())
    }
}

/// No static id: the cache finds the statement by its SQL text, never by its type alone.
impl<T, V, W> QueryId for Update<T, V, W> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<T, V, W, Conn> diesel::RunQueryDsl<Conn> for Update<T, V, W> {}
