//! The Store contract, on both databases: migrations from empty, conversations, append-only
//! messages (in code and by trigger), batched usage rows and the purge path.

use std::sync::Arc;

use colloquy::config::DatabaseConfig;
use colloquy::domain::ids::now_utc;
use colloquy::domain::{
    ApiKey, Conversation, MessageRole, MessageStatus, NewMessage, Role, UsageRecord, new_id,
};
use colloquy::store::{self, PurgeReport, Store, StoreError};
use sqlx::Connection;
use uuid::Uuid;

use crate::helpers::{Backend, TestDatabase};
use crate::on_both_backends;

on_both_backends!(
    migrations_from_empty,
    conversations_round_trip,
    messages_append_in_order,
    concurrent_appends_get_distinct_seqs,
    raw_update_and_delete_on_messages_are_refused,
    usage_rows_round_trip,
    purge_removes_only_the_owner,
    api_keys_round_trip,
);

pub async fn open(backend: Backend) -> Option<(TestDatabase, Arc<dyn Store>)> {
    let db = TestDatabase::create(backend).await?;
    let config = DatabaseConfig {
        url: db.url.clone(),
        max_connections: 8,
        acquire_timeout_secs: 5,
        migrate_on_start: true,
        allow_sqlite_in_production: false,
    };
    let store = store::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((db, store))
}

fn conversation(owner: &str) -> Conversation {
    let now = now_utc();
    Conversation {
        id: new_id(),
        owner: owner.to_owned(),
        title: Some("Quarterly numbers".into()),
        specialist_id: Some("analyst".into()),
        message_count: 0,
        created_at: now,
        updated_at: now,
        archived_at: None,
        deleted_at: None,
    }
}

pub fn message(conversation_id: Uuid, role: MessageRole, content: &str) -> NewMessage {
    NewMessage {
        id: new_id(),
        conversation_id,
        role,
        content: content.to_owned(),
        attachments: serde_json::json!([{"file_id": "f1"}]),
        input_tokens: Some(12),
        output_tokens: None,
        status: MessageStatus::Complete,
        created_at: now_utc(),
    }
}

/// Runs SQL on a connection of its own, as an operator or a bug elsewhere might.
pub async fn raw_exec(db: &TestDatabase, sql: &'static str) -> Result<(), sqlx::Error> {
    match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::raw_sql(sql).execute(&mut c).await.map(drop)
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await?;
            sqlx::raw_sql(sql).execute(&mut c).await.map(drop)
        }
    }
}

async fn table_names(db: &TestDatabase) -> Vec<String> {
    match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
    }
}

async fn migrations_from_empty(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let config = DatabaseConfig {
        url: db.url.clone(),
        max_connections: 2,
        acquire_timeout_secs: 5,
        migrate_on_start: false,
        allow_sqlite_in_production: false,
    };
    let store = store::connect(&config).await.unwrap();
    assert!(
        !table_names(&db).await.contains(&"messages".to_owned()),
        "empty before migrating"
    );
    store.migrate().await.unwrap();
    // Running again is a no-op, not an error.
    store.migrate().await.unwrap();
    let tables = table_names(&db).await;
    for table in [
        "conversations",
        "messages",
        "usage_logs",
        "files",
        "api_keys",
    ] {
        assert!(tables.contains(&table.to_owned()), "{table} in {tables:?}");
    }
    store.ping().await.unwrap();
    store.close().await;
    assert!(
        matches!(store.ping().await, Err(StoreError::Unavailable(_))),
        "closed pool is unavailable"
    );
}

async fn conversations_round_trip(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let c = conversation("alice");
    store.create_conversation(&c).await.unwrap();
    assert_eq!(store.get_conversation(c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(store.get_conversation(Uuid::now_v7()).await.unwrap(), None);
    // Creating the same id twice is a conflict, not a crash.
    assert!(matches!(
        store.create_conversation(&c).await,
        Err(StoreError::Conflict(_))
    ));
    // Soft-deleted conversations are not returned.
    let mut gone = conversation("alice");
    gone.deleted_at = Some(now_utc());
    store.create_conversation(&gone).await.unwrap();
    assert_eq!(store.get_conversation(gone.id).await.unwrap(), None);
}

async fn messages_append_in_order(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let c = conversation("alice");
    store.create_conversation(&c).await.unwrap();
    let first = store
        .append_message(&message(c.id, MessageRole::User, "hello"))
        .await
        .unwrap();
    let second = store
        .append_message(&message(c.id, MessageRole::Assistant, "hi"))
        .await
        .unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));
    let listed = store.list_messages(c.id).await.unwrap();
    assert_eq!(listed, vec![first.clone(), second]);
    assert_eq!(
        listed[0].attachments,
        serde_json::json!([{"file_id": "f1"}])
    );
    let after = store.get_conversation(c.id).await.unwrap().unwrap();
    assert_eq!(after.message_count, 2);
    assert!(after.updated_at >= c.updated_at);
    // Appending to a conversation that does not exist is refused.
    let orphan = message(Uuid::now_v7(), MessageRole::User, "lost");
    assert!(matches!(
        store.append_message(&orphan).await,
        Err(StoreError::ConversationNotFound(_))
    ));
    assert!(
        store
            .list_messages(orphan.conversation_id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_appends_get_distinct_seqs(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let c = conversation("alice");
    store.create_conversation(&c).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_message(&message(c.id, MessageRole::User, &format!("m{i}")))
                    .await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().expect("append under contention").seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<i64>>());
}

async fn raw_update_and_delete_on_messages_are_refused(backend: Backend) {
    let Some((db, store)) = open(backend).await else {
        return;
    };
    let c = conversation("alice");
    store.create_conversation(&c).await.unwrap();
    store
        .append_message(&message(c.id, MessageRole::User, "original"))
        .await
        .unwrap();
    let mut statements = vec![
        "UPDATE messages SET content = 'rewritten'",
        "DELETE FROM messages",
        "DELETE FROM conversations",
    ];
    if backend == Backend::Postgres {
        statements.push("TRUNCATE messages");
    }
    for sql in statements {
        assert!(raw_exec(&db, sql).await.is_err(), "{sql} must be refused");
    }
    let listed = store.list_messages(c.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].content, "original");
}

fn usage(user_hash: &str, n: i64) -> UsageRecord {
    UsageRecord {
        id: new_id(),
        request_id: format!("req-{n}"),
        user_hash: user_hash.to_owned(),
        conversation_id: Some(Uuid::now_v7()),
        specialist_id: Some("analyst".into()),
        provider: "mock".into(),
        model: "mock/echo".into(),
        input_tokens: 100 + n,
        output_tokens: 20,
        cached_tokens: 5,
        usage_estimated: n % 2 == 0,
        cost_nano_usd: 1_234_567_890_123,
        latency_ms: 321,
        ttft_ms: Some(45),
        streamed: true,
        success: n != 2,
        error_code: (n == 2).then(|| "upstream_timeout".to_owned()),
        created_at: now_utc() + time::Duration::milliseconds(n),
    }
}

async fn usage_rows_round_trip(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let rows: Vec<UsageRecord> = (0..3).map(|n| usage("hash-a", n)).collect();
    store.insert_usage(&rows).await.unwrap();
    store.insert_usage(&[usage("hash-b", 9)]).await.unwrap();
    store.insert_usage(&[]).await.unwrap();
    let listed = store.list_usage("hash-a", 10).await.unwrap();
    let mut expected = rows.clone();
    expected.reverse();
    assert_eq!(listed, expected, "newest first, every field intact");
    assert_eq!(store.list_usage("hash-a", 1).await.unwrap().len(), 1);
    assert_eq!(store.list_usage("nobody", 10).await.unwrap(), vec![]);
}

async fn purge_removes_only_the_owner(backend: Backend) {
    let Some((db, store)) = open(backend).await else {
        return;
    };
    let mine = conversation("alice");
    let theirs = conversation("bob");
    for c in [&mine, &theirs] {
        store.create_conversation(c).await.unwrap();
        store
            .append_message(&message(c.id, MessageRole::User, "q"))
            .await
            .unwrap();
        store
            .append_message(&message(c.id, MessageRole::Assistant, "a"))
            .await
            .unwrap();
    }
    let report = store.purge_owner("alice", &[]).await.unwrap().0;
    assert_eq!(
        report,
        PurgeReport {
            conversations: 1,
            messages: 2,
            files: 0,
            api_keys: 0,
            usage_logs: 0,
            idempotency_keys: 0,
            budgets: 0
        }
    );
    assert_eq!(store.get_conversation(mine.id).await.unwrap(), None);
    assert!(store.list_messages(mine.id).await.unwrap().is_empty());
    assert_eq!(store.list_messages(theirs.id).await.unwrap().len(), 2);
    // The purge path closes behind itself: ordinary deletes are refused again.
    assert!(store.purge_owner("nobody", &[]).await.is_ok());
    assert!(raw_exec(&db, "DELETE FROM messages").await.is_err());
    assert_eq!(store.list_messages(theirs.id).await.unwrap().len(), 2);
}

fn api_key(owner: &str, name: &str) -> ApiKey {
    let generated = colloquy::auth::api_keys::generate().unwrap();
    ApiKey {
        id: new_id(),
        owner: owner.to_owned(),
        user_hash: format!("hash-of-{owner}"),
        name: name.to_owned(),
        prefix: generated.prefix,
        hash: generated.hash,
        role: Role::Viewer,
        created_at: now_utc(),
        last_used_at: None,
        revoked_at: None,
    }
}

async fn api_keys_round_trip(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let keys: Vec<ApiKey> = (0..3).map(|n| api_key("alice", &format!("k{n}"))).collect();
    for k in &keys {
        store.insert_api_key(k).await.unwrap();
    }
    store
        .insert_api_key(&api_key("bob", "theirs"))
        .await
        .unwrap();
    assert_eq!(
        store.get_api_key(keys[0].id).await.unwrap(),
        Some(keys[0].clone())
    );
    assert_eq!(store.get_api_key(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(
        store.api_keys_by_prefix(&keys[1].prefix).await.unwrap(),
        vec![keys[1].clone()]
    );
    assert!(
        store
            .api_keys_by_prefix("ck_nothing")
            .await
            .unwrap()
            .is_empty()
    );
    // The hash is unique: a duplicate is a conflict.
    let mut dup = api_key("alice", "dup");
    dup.hash = keys[0].hash.clone();
    assert!(matches!(
        store.insert_api_key(&dup).await,
        Err(StoreError::Conflict(_))
    ));

    // Newest first, paged by id.
    let page = store.list_api_keys("alice", None, 2).await.unwrap();
    assert_eq!(page, vec![keys[2].clone(), keys[1].clone()]);
    let rest = store
        .list_api_keys("alice", Some(keys[1].id), 2)
        .await
        .unwrap();
    assert_eq!(rest, vec![keys[0].clone()]);
    assert_eq!(
        store.list_api_keys("nobody", None, 10).await.unwrap(),
        vec![]
    );

    let at = now_utc();
    assert!(store.revoke_api_key(keys[0].id, at).await.unwrap());
    assert!(
        !store.revoke_api_key(keys[0].id, now_utc()).await.unwrap(),
        "second revoke is a no-op"
    );
    assert!(!store.revoke_api_key(Uuid::now_v7(), at).await.unwrap());
    assert_eq!(
        store
            .get_api_key(keys[0].id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at)
    );
    store.touch_api_key(keys[1].id, at).await.unwrap();
    assert_eq!(
        store
            .get_api_key(keys[1].id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(at)
    );

    // Purging an owner removes their keys.
    let report = store.purge_owner("alice", &[]).await.unwrap().0;
    assert_eq!(report.api_keys, 3);
    assert!(
        store
            .list_api_keys("alice", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_api_keys("bob", None, 10).await.unwrap().len(), 1);
}
