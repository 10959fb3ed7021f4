//! PostgreSQL: messages of herald's own web channel.

use serde_json::Value;
use sqlx::{Postgres, QueryBuilder, Row};

use super::PgStore;
use crate::store::StoreError;
use crate::store::web::*;

#[async_trait::async_trait]
impl WebStore for PgStore {
    async fn web_post(
        &self,
        channel: &str,
        body: &Value,
        idempotency_key: Option<&str>,
        now: i64,
    ) -> Result<WebMessageRow, StoreError> {
        // A key already posted (the answer of an earlier attempt was lost
        // with the store's connection) is that message: it is answered,
        // not posted twice nor refused forever.
        let row = sqlx::query(
            "INSERT INTO web_messages (channel, body, idempotency_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (channel, idempotency_key) WHERE idempotency_key IS NOT NULL \
             DO UPDATE SET idempotency_key = excluded.idempotency_key \
             RETURNING id, body, created_at, updated_at",
        )
        .bind(channel)
        .bind(body.to_string())
        .bind(idempotency_key)
        .bind(now)
        .bind(now)
        .fetch_one(&self.delivery)
        .await?;
        web_message_from(&row, channel)
    }

    async fn web_edit(
        &self,
        channel: &str,
        id: i64,
        body: &Value,
        now: i64,
    ) -> Result<Option<WebMessageRow>, StoreError> {
        let row = sqlx::query(
            "UPDATE web_messages SET body = $1, updated_at = $2 WHERE id = $3 AND channel = $4 RETURNING created_at",
        )
        .bind(body.to_string())
        .bind(now)
        .bind(id)
        .bind(channel)
        .fetch_optional(&self.delivery)
        .await?;
        row.map(|r| {
            Ok(WebMessageRow {
                id,
                channel: channel.to_owned(),
                body: body.clone(),
                created_at: r.try_get("created_at")?,
                updated_at: now,
            })
        })
        .transpose()
    }

    async fn web_find(&self, channel: &str, keys: &[&str]) -> Result<Vec<(String, i64)>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(500) {
            let mut qb: QueryBuilder<Postgres> =
                QueryBuilder::new("SELECT idempotency_key, id FROM web_messages WHERE channel = ");
            qb.push_bind(channel);
            qb.push(" AND idempotency_key IN ");
            super::push_list(&mut qb, chunk.iter().copied());
            for row in qb.build().fetch_all(&self.delivery).await? {
                found.push((row.try_get("idempotency_key")?, row.try_get("id")?));
            }
        }
        Ok(found)
    }

    async fn web_messages(&self, channel: &str, limit: i64) -> Result<Vec<WebMessageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, body, created_at, updated_at FROM \
             (SELECT * FROM web_messages WHERE channel = $1 ORDER BY id DESC LIMIT $2) AS recent ORDER BY id",
        )
        .bind(channel)
        .bind(limit)
        .fetch_all(&self.delivery)
        .await?;
        rows.iter().map(|r| web_message_from(r, channel)).collect()
    }

    async fn web_message(&self, channel: &str, id: i64) -> Result<Option<WebMessageRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, body, created_at, updated_at FROM web_messages WHERE channel = $1 AND id = $2",
        )
        .bind(channel)
        .bind(id)
        .fetch_optional(&self.delivery)
        .await?;
        row.map(|r| web_message_from(&r, channel)).transpose()
    }
}
