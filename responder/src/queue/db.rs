//! The two databases the queue can live in, behind one small interface:
//! SQLite embedded in the data directory (the default), or PostgreSQL
//! shared by several replicas. SQL is written once with `?N` placeholders
//! (rewritten to `$N` for PostgreSQL); parameters are integers and text;
//! rows are read by column index. Where the dialects differ (claims,
//! upserts, JSON, size limits) the queue asks [`Db::is_postgres`].
//!
//! The PostgreSQL client is the synchronous `postgres` crate: every call
//! is made off the async threads (the queue's callers use
//! `spawn_blocking` or threads of their own), as with SQLite.

use super::QueueError;

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum P<'a> {
    Int(i64),
    Text(&'a str),
    OptText(Option<&'a str>),
}

impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            P::Int(i) => i.to_sql(),
            P::Text(t) => t.to_sql(),
            P::OptText(t) => t.to_sql(),
        }
    }
}

/// A connection to either database.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

/// A PostgreSQL connection and the statements prepared on it (each SQL
/// text is parsed by the server once, not at every call).
pub struct Pg {
    url: String,
    client: postgres::Client,
    statements: std::collections::HashMap<String, postgres::Statement>,
}

impl Pg {
    pub fn connect(url: &str) -> Result<Pg, QueueError> {
        Ok(Pg {
            url: url.to_string(),
            client: super::connect_postgres(url)?,
            statements: std::collections::HashMap::new(),
        })
    }

    /// Run `call`; after a failure, if the connection is gone (the server
    /// restarted, the network dropped), connect again so that the next
    /// call can succeed. The failure is reported as it is.
    fn healing<T>(
        &mut self,
        call: impl FnOnce(&mut Pg) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let result = call(self);
        if result.is_err() && self.client.is_closed() {
            if let Ok(fresh) = Pg::connect(&self.url) {
                tracing::warn!("job queue: reconnected to PostgreSQL");
                *self = fresh;
            }
        }
        result
    }

    /// A query with PostgreSQL's own parameter types (arrays, for the
    /// bulk statements), through the statement cache.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, QueueError> {
        self.healing(|pg| {
            let stmt = pg.statement(sql)?;
            Ok(pg.client.query(&stmt, params)?)
        })
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, QueueError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&dollar(sql))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// A result row of either database.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// Column `i` as a type both databases read (`i64`, `String`, and
    /// their `Option`s for nullable columns).
    fn get<T>(&self, i: usize) -> Result<T, QueueError>
    where
        T: rusqlite::types::FromSql + for<'r> postgres::types::FromSql<'r>,
    {
        Ok(match self {
            Row::Sqlite(r) => r.get(i)?,
            Row::Postgres(r) => r.try_get(i)?,
        })
    }

    pub fn int(&self, i: usize) -> Result<i64, QueueError> {
        self.get(i)
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, QueueError> {
        self.get(i)
    }

    pub fn text(&self, i: usize) -> Result<String, QueueError> {
        self.get(i)
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, QueueError> {
        self.get(i)
    }
}

/// `?1` -> `$1`, outside string literals.
fn dollar(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

fn pg_params<'a>(params: &'a [P<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &(dyn postgres::types::ToSql + Sync) {
            match p {
                P::Int(i) => i,
                P::Text(t) => t,
                P::OptText(t) => t,
            }
        })
        .collect()
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// The PostgreSQL connection, for statements only it can run.
    pub fn postgres(&mut self) -> Option<&mut Pg> {
        match self {
            Db::Postgres(pg) => Some(pg),
            Db::Sqlite(_) => None,
        }
    }

    /// Statements without parameters or results (schema, `BEGIN`).
    pub fn batch(&mut self, sql: &str) -> Result<(), QueueError> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql)?,
            Db::Postgres(c) => c.healing(|pg| Ok(pg.client.batch_execute(sql)?))?,
        }
        Ok(())
    }

    /// Run a statement; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[P]) -> Result<usize, QueueError> {
        Ok(match self {
            Db::Sqlite(c) => c.execute(sql, rusqlite::params_from_iter(params.iter()))?,
            Db::Postgres(c) => c.healing(|pg| {
                let stmt = pg.statement(sql)?;
                Ok(pg.client.execute(&stmt, &pg_params(params))? as usize)
            })?,
        })
    }

    /// Every row of a query, each read by `f`.
    pub fn query<T>(
        &mut self,
        sql: &str,
        params: &[P],
        mut f: impl FnMut(Row) -> Result<T, QueueError>,
    ) -> Result<Vec<T>, QueueError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(Row::Sqlite(r))?);
                }
                Ok(out)
            }
            Db::Postgres(c) => c
                .query(sql, &pg_params(params))?
                .iter()
                .map(|r| f(Row::Postgres(r)))
                .collect(),
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt<T>(
        &mut self,
        sql: &str,
        params: &[P],
        f: impl FnMut(Row) -> Result<T, QueueError>,
    ) -> Result<Option<T>, QueueError> {
        Ok(self.query(sql, params, f)?.into_iter().next())
    }

    /// Start a transaction that writes: SQLite takes the write lock at
    /// once (rather than fail to upgrade a read snapshot later).
    pub fn begin(&mut self) -> Result<(), QueueError> {
        match self {
            Db::Sqlite(_) => self.batch("BEGIN IMMEDIATE"),
            Db::Postgres(_) => self.batch("BEGIN"),
        }
    }

    pub fn commit(&mut self) -> Result<(), QueueError> {
        self.batch("COMMIT")
    }

    /// Undo an open transaction after a failure (ignoring a second one:
    /// the connection reports the first).
    pub fn rollback(&mut self) {
        let _ = self.batch("ROLLBACK");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            super::dollar("UPDATE t SET a = ?1, b = '?2' WHERE c = ?12 AND d = ?"),
            "UPDATE t SET a = $1, b = '?2' WHERE c = $12 AND d = ?"
        );
    }
}
