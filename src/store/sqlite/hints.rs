//! SQLite: one process serves the store, so there is no one to hint.

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::hints::*;

#[async_trait::async_trait]
impl HintStore for SqliteStore {
    fn shared(&self) -> bool {
        false
    }

    async fn announce(&self, _hint: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn listen(&self) -> Result<Option<HintFeed>, StoreError> {
        Ok(None)
    }
}
