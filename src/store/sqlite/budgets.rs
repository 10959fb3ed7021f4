//! SQLite: rate budget windows kept across restarts (platforms that enforce their limits).

use sqlx::{QueryBuilder, Sqlite};
use std::collections::HashMap;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::budgets::*;

#[async_trait::async_trait]
impl BudgetStore for SqliteStore {
    async fn load_budget_windows(&self, keys: &[String]) -> Result<HashMap<String, KeptWindow>, StoreError> {
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT key, sends, paused_until FROM budget_windows WHERE key IN ");
        super::push_list(&mut qb, keys);
        for row in qb.build().fetch_all(&self.delivery).await? {
            let (key, window) = kept_window_from(&row)?;
            out.insert(key, window);
        }
        Ok(out)
    }

    async fn save_budget_windows(
        &self,
        windows: &[(String, KeptWindow)],
        now: i64,
    ) -> Result<(), StoreError> {
        if windows.is_empty() {
            return Ok(());
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO budget_windows (key, sends, paused_until, updated_at) ");
        let mut encoded = Vec::with_capacity(windows.len());
        for (key, snapshot) in windows {
            encoded.push((
                key,
                serde_json::to_string(&snapshot.sends)?,
                snapshot.paused_until,
            ));
        }
        qb.push_values(encoded, |mut b, (key, sends, paused)| {
            b.push_bind(key).push_bind(sends).push_bind(paused).push_bind(now);
        });
        qb.push(
            " ON CONFLICT (key) DO UPDATE SET sends = excluded.sends, paused_until = excluded.paused_until, \
             updated_at = excluded.updated_at",
        );
        qb.build().execute(&self.delivery).await?;
        Ok(())
    }

    async fn change_budget_window(
        &self,
        key: &str,
        now: i64,
        change: &(dyn Fn(KeptWindow) -> Option<KeptWindow> + Send + Sync),
    ) -> Result<(), StoreError> {
        let mut tx = self.delivery.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT key, sends, paused_until FROM budget_windows WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        let kept = match row {
            Some(row) => kept_window_from(&row)?.1,
            None => KeptWindow::default(),
        };
        if let Some(new) = change(kept) {
            sqlx::query(
                "INSERT INTO budget_windows (key, sends, paused_until, updated_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (key) DO UPDATE SET sends = excluded.sends, paused_until = excluded.paused_until, \
                 updated_at = excluded.updated_at",
            )
            .bind(key)
            .bind(serde_json::to_string(&new.sends)?)
            .bind(new.paused_until)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
