//! PostgreSQL: bots' update offsets (migration 0009).

use super::PgStore;
use crate::store::StoreError;
use crate::store::bot_offsets::BotOffsetStore;

#[async_trait::async_trait]
impl BotOffsetStore for PgStore {
    async fn last_update(&self, bot: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT last_update FROM bot_offsets WHERE bot = $1")
                .bind(bot)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn take_update(&self, bot: &str, id: i64) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO bot_offsets (bot, last_update) VALUES ($1, $2) \
             ON CONFLICT (bot) DO UPDATE SET last_update = excluded.last_update \
             WHERE bot_offsets.last_update < excluded.last_update",
        )
        .bind(bot)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn queue_answer(&self, channel: &str, answer: &serde_json::Value) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO bot_answers (channel, answer, created_at) VALUES ($1, $2, $3)")
            .bind(channel)
            .bind(answer.to_string())
            .bind(crate::store::now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn queued_answers(
        &self,
        channel: &str,
        limit: i64,
    ) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, answer FROM bot_answers WHERE channel = $1 ORDER BY id LIMIT $2")
                .bind(channel)
                .bind(limit)
                .fetch_all(&self.delivery)
                .await?;
        rows.into_iter()
            .map(|(id, answer)| Ok((id, serde_json::from_str(&answer)?)))
            .collect()
    }

    async fn answers_sent(&self, lease: &crate::store::Lease, ids: &[i64]) -> Result<(), StoreError> {
        let mut tx = self.delivery.begin().await?;
        super::leases::lock_lease(&mut tx, lease).await?;
        sqlx::query("DELETE FROM bot_answers WHERE id = ANY($1) AND channel = $2")
            .bind(ids)
            .bind(&lease.channel)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
