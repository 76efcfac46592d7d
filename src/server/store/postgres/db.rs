//! One connection (or one transaction on it) with its prepared statements:
//! each statement is parsed by PostgreSQL once per connection, so a query
//! costs one round trip, not two.

use std::cell::RefCell;
use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row, Statement};

use super::pg;
use crate::server::store::StoreResult;

/// The statements prepared on one connection, by their SQL.
pub(super) type Statements = HashMap<&'static str, Statement>;

/// A client or transaction with its connection's prepared statements.
pub(super) struct Db<'a, C> {
    client: &'a C,
    statements: RefCell<&'a mut Statements>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a, C: GenericClient + Sync> Db<'a, C> {
    pub fn new(client: &'a C, statements: &'a mut Statements) -> Self {
        Db {
            client,
            statements: RefCell::new(statements),
        }
    }

    async fn statement(&self, sql: &'static str) -> StoreResult<Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await.map_err(pg)?;
        self.statements.borrow_mut().insert(sql, statement.clone());
        Ok(statement)
    }

    pub async fn query(&self, sql: &'static str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql).await?;
        self.client.query(&statement, params).await.map_err(pg)
    }

    pub async fn query_opt(&self, sql: &'static str, params: Params<'_>) -> StoreResult<Option<Row>> {
        let statement = self.statement(sql).await?;
        self.client.query_opt(&statement, params).await.map_err(pg)
    }

    pub async fn execute(&self, sql: &'static str, params: Params<'_>) -> StoreResult<u64> {
        let statement = self.statement(sql).await?;
        self.client.execute(&statement, params).await.map_err(pg)
    }
}
