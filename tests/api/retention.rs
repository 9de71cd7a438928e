//! The retention job on both databases, on a clock the test moves: inactive conversations
//! are archived, long-deleted ones purged with their messages (and search copies), nothing
//! else is touched; and two instances never run it at once.

use colloquy::config::RetentionConfig;
use colloquy::domain::ids::now_utc;
use colloquy::domain::{Conversation, MessageRole, new_id};
use colloquy::retention::{RetentionReport, run_once};
use colloquy::store::Store;
use time::{Duration, OffsetDateTime};

use crate::helpers::{Backend, count};
use crate::on_both_backends;
use crate::store::{message, open};

on_both_backends!(
    archives_and_purges_as_time_passes,
    two_instances_never_run_it_at_once
);

const CONFIG: RetentionConfig = RetentionConfig {
    archive_after_days: 90,
    purge_deleted_after_days: 30,
    interval_secs: 3600,
};

/// A conversation last active at `active`, with `messages` messages, deleted at `deleted`.
async fn conversation(
    store: &dyn Store,
    active: OffsetDateTime,
    messages: usize,
    deleted: Option<OffsetDateTime>,
) -> uuid::Uuid {
    let id = new_id();
    store
        .create_conversation(&Conversation {
            id,
            owner: "alice".into(),
            title: None,
            specialist_id: None,
            message_count: 0,
            created_at: active,
            updated_at: active,
            archived_at: None,
            deleted_at: None,
        })
        .await
        .unwrap();
    for n in 0..messages {
        let mut m = message(id, MessageRole::User, &format!("retained words {n}"));
        m.created_at = active;
        store.append_message(&m).await.unwrap();
    }
    if let Some(at) = deleted {
        assert!(store.delete_conversation(id, at).await.unwrap());
    }
    id
}

async fn archives_and_purges_as_time_passes(backend: Backend) {
    let Some((db, store)) = open(backend).await else {
        return;
    };
    let store = store.as_ref();
    let now = now_utc();
    let day = Duration::days(1);
    let idle = conversation(store, now - 100 * day, 2, None).await;
    let busy = conversation(store, now - day, 2, None).await;
    let long_gone = conversation(store, now - 50 * day, 3, Some(now - 40 * day)).await;
    let just_gone = conversation(store, now - 10 * day, 4, Some(now - 5 * day)).await;

    let report = run_once(store, &CONFIG, "a", &move || now).await.unwrap();
    assert_eq!(
        report,
        Some(RetentionReport {
            archived: 1,
            purged_conversations: 1,
            purged_messages: 3
        })
    );
    let archived = store
        .list_conversations("alice", true, None, 10)
        .await
        .unwrap();
    assert_eq!(archived.iter().map(|c| c.id).collect::<Vec<_>>(), [idle]);
    assert_eq!(archived[0].archived_at, Some(now));
    let live = store
        .list_conversations("alice", false, None, 10)
        .await
        .unwrap();
    assert_eq!(live.iter().map(|c| c.id).collect::<Vec<_>>(), [busy]);
    assert_eq!(
        count(&db, "SELECT count(*) FROM conversations").await,
        3,
        "only the long-deleted one is gone"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM messages").await, 8);
    if backend == Backend::Sqlite {
        assert_eq!(count(&db, "SELECT count(*) FROM messages_fts").await, 8);
    }
    // A soft-deleted conversation still holds its messages until then.
    assert_eq!(
        store.messages_after(just_gone, 0, 10).await.unwrap().len(),
        4
    );
    assert!(
        store
            .messages_after(long_gone, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The same moment again changes nothing.
    assert_eq!(
        run_once(store, &CONFIG, "a", &move || now).await.unwrap(),
        Some(RetentionReport::default())
    );
    // 26 days on, the other deleted one has been gone 31 days, and busy idles for 27.
    let later = now + 26 * day;
    assert_eq!(
        run_once(store, &CONFIG, "a", &move || later).await.unwrap(),
        Some(RetentionReport {
            archived: 0,
            purged_conversations: 1,
            purged_messages: 4
        })
    );
    assert_eq!(count(&db, "SELECT count(*) FROM messages").await, 4);
    if backend == Backend::Sqlite {
        assert_eq!(count(&db, "SELECT count(*) FROM messages_fts").await, 4);
    }
    // The append-only guard is closed again after each purge.
    assert!(
        crate::store::raw_exec(&db, "DELETE FROM messages")
            .await
            .is_err(),
        "messages are append-only outside the purge path"
    );

    // Off is off.
    let off = RetentionConfig {
        archive_after_days: 0,
        purge_deleted_after_days: 0,
        interval_secs: 3600,
    };
    let far = now + 1000 * day;
    assert_eq!(
        run_once(store, &off, "a", &move || far).await.unwrap(),
        Some(RetentionReport::default())
    );
    assert_eq!(count(&db, "SELECT count(*) FROM conversations").await, 2);
}

async fn two_instances_never_run_it_at_once(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let start = now_utc();
    let hour = Duration::hours(1);
    for round in 0..5 {
        // Far enough apart that the previous round's lease has run out.
        let now = start + 10 * round * hour;
        let clock = move || now;
        let (a, b) = tokio::join!(
            run_once(store.as_ref(), &CONFIG, "a", &clock),
            run_once(store.as_ref(), &CONFIG, "b", &clock),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            a.is_some() != b.is_some(),
            "round {round}: exactly one runs ({a:?}, {b:?})"
        );
        let (winner, loser) = if a.is_some() { ("a", "b") } else { ("b", "a") };
        // While the winner's lease lasts the other cannot run; the winner can again.
        let soon = now + hour;
        assert_eq!(
            run_once(store.as_ref(), &CONFIG, loser, &move || soon)
                .await
                .unwrap(),
            None
        );
        assert!(
            run_once(store.as_ref(), &CONFIG, winner, &move || soon)
                .await
                .unwrap()
                .is_some()
        );
    }
    // A holder that stops running loses the lease once it runs out.
    let quiet = start + 100 * hour;
    assert!(
        run_once(store.as_ref(), &CONFIG, "c", &move || quiet)
            .await
            .unwrap()
            .is_some()
    );
}
