//! Reading a result row the same way on either backend, so each row type
//! is decoded once (`*_from` functions next to the types) while the SQL
//! that produced the row stays backend-specific.

use super::StoreError;

/// Typed column access by name on a row of any backend.
pub(crate) trait Columns {
    /// A non-null text column.
    fn text(&self, name: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// A non-null integer column.
    fn int(&self, name: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn maybe_int(&self, name: &str) -> Result<Option<i64>, StoreError>;
    /// A boolean column (SQLite keeps 0/1 integers; sqlx reads both).
    fn flag(&self, name: &str) -> Result<bool, StoreError>;
    /// A non-null text column holding JSON, parsed.
    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StoreError>
    where
        Self: Sized,
    {
        Ok(serde_json::from_str(&self.text(name)?)?)
    }
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, name: &str) -> Result<String, StoreError> {
                Ok(sqlx::Row::try_get(self, name)?)
            }
            fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::Row::try_get(self, name)?)
            }
            fn int(&self, name: &str) -> Result<i64, StoreError> {
                Ok(sqlx::Row::try_get(self, name)?)
            }
            fn maybe_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::Row::try_get(self, name)?)
            }
            fn flag(&self, name: &str) -> Result<bool, StoreError> {
                Ok(sqlx::Row::try_get(self, name)?)
            }
        }
    };
}

columns_for!(sqlx::sqlite::SqliteRow);
columns_for!(sqlx::postgres::PgRow);
