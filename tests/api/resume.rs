//! Picking a stream up again after a lost connection (`GET /v1/chat/stream/{message_id}`
//! with `Last-Event-ID`), over real connections on both databases against a fake OpenAI
//! upstream that holds its answer back until told.

use std::time::Duration;

use colloquy::domain::Role;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::chat::{read_events, stream_request, with_openai};
use crate::fakes::{self, Reply, Upstream};
use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

on_both_backends!(
    a_lost_stream_is_picked_up_where_it_left_off,
    only_the_owner_picks_a_stream_up,
);

fn resume(
    app: &TestApp,
    token: &str,
    message_id: &str,
    last: Option<&str>,
) -> reqwest::RequestBuilder {
    let request = app
        .get(&format!("/v1/chat/stream/{message_id}"))
        .bearer_auth(token);
    match last {
        Some(last) => request.header("last-event-id", last),
        None => request,
    }
}

/// The answer's text in a list of events, and a check that every id is the byte offset
/// after its event, counting from `from`.
fn text_of(events: &[(String, String, Value)], from: usize) -> String {
    let mut offset = from;
    let mut text = String::new();
    for (id, name, data) in events {
        if name == "delta" {
            let content = data["content"].as_str().unwrap();
            offset += content.len();
            text.push_str(content);
        }
        assert_eq!(id.parse::<usize>().unwrap(), offset, "{name} {data}");
    }
    text
}

/// A held answer: "Thé first part, " now, the rest when the upstream is released.
fn held_answer(up: &Upstream) {
    up.push(Reply::Sse {
        events: vec![
            fakes::openai_delta("Thé first part, "),
            fakes::openai_delta("and the rest."),
            fakes::openai_finish("stop"),
            fakes::openai_usage(40, 9, 0),
            fakes::OPENAI_DONE.into(),
        ],
        first_delay: Duration::ZERO,
        gated: true,
        cut: false,
    });
}

async fn a_lost_stream_is_picked_up_where_it_left_off(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(backend, &up, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    held_answer(&up);
    let response = stream_request(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": "tell me"}),
    )
    .send()
    .await
    .unwrap();
    let mut stream = response.bytes_stream().eventsource();
    let start = stream.next().await.unwrap().unwrap();
    let start: Value = serde_json::from_str(&start.data).unwrap();
    let message_id = start["message_id"].as_str().unwrap().to_owned();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.event, "delta");
    assert_eq!(first.id, "Thé first part, ".len().to_string());
    drop(stream); // The connection is lost mid-answer.

    // Picked up while the answer is still held upstream: the headers come at once, the
    // rest of the answer when it is produced.
    let picked = resume(&app, &alice, &message_id, Some(&first.id))
        .send()
        .await
        .unwrap();
    assert_eq!(picked.status(), 200);
    assert_eq!(picked.headers()["content-type"], "text/event-stream");
    up.release();
    let events = read_events(picked).await;
    let from: usize = first.id.parse().unwrap();
    assert_eq!(text_of(&events, from), "and the rest.");
    let names: Vec<&str> = events.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"delta"), "no second start: {names:?}");
    assert_eq!(names.last(), Some(&"done"));
    assert_eq!(events.last().unwrap().2["output_tokens"], 9);

    // After its end, for a while: the whole answer again from the start, or the end alone
    // for a client that had all the text.
    let events = read_events(
        resume(&app, &alice, &message_id, None)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(text_of(&events, 0), "Thé first part, and the rest.");
    assert_eq!(events.last().unwrap().1, "done");
    let total = "Thé first part, and the rest.".len().to_string();
    let events = read_events(
        resume(&app, &alice, &message_id, Some(&total))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str()),
        (total.as_str(), "done")
    );

    // The stored answer is the same text, once.
    let conversation: uuid::Uuid = start["conversation_id"].as_str().unwrap().parse().unwrap();
    let stored = app.store.list_messages(conversation).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].id.to_string(), message_id);
    assert_eq!(stored[1].content, "Thé first part, and the rest.");

    // Ids that are not a position in this answer: inside "é", past its end, not a number.
    for bad in ["3", "9999", "abc", "-1"] {
        let body = assert_envelope(
            resume(&app, &alice, &message_id, Some(bad))
                .send()
                .await
                .unwrap(),
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(
            body["error"]["details"]["field"], "Last-Event-ID",
            "{bad}: {body}"
        );
    }
}

async fn only_the_owner_picks_a_stream_up(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(backend, &up, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::User);
    held_answer(&up);
    let response = stream_request(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": "mine"}),
    )
    .send()
    .await
    .unwrap();
    let mut stream = response.bytes_stream().eventsource();
    let start: Value = serde_json::from_str(&stream.next().await.unwrap().unwrap().data).unwrap();
    let message_id = start["message_id"].as_str().unwrap().to_owned();

    // Another user's stream is as good as missing, like an id nobody has, or no id at all.
    for (token, id) in [
        (&bob, message_id.as_str()),
        (&alice, &uuid::Uuid::now_v7().to_string()),
        (&alice, "not-an-id"),
    ] {
        assert_envelope(
            resume(&app, token, id, None).send().await.unwrap(),
            404,
            "stream_not_found",
        )
        .await;
    }
    let anonymous = app
        .get(&format!("/v1/chat/stream/{message_id}"))
        .send()
        .await
        .unwrap();
    assert_envelope(anonymous, 401, "unauthorized").await;
    up.release();
    while stream.next().await.is_some() {}

    // A stateless answer is stored nowhere, so it has no id to pick it up by.
    up.push(Reply::Sse {
        events: vec![
            fakes::openai_delta("Stateless."),
            fakes::openai_finish("stop"),
            fakes::openai_usage(5, 2, 0),
            fakes::OPENAI_DONE.into(),
        ],
        first_delay: Duration::ZERO,
        gated: false,
        cut: false,
    });
    let events = read_events(
        stream_request(
            &app,
            &alice,
            json!({"specialist_id": "general", "message": "x", "conversation_history": []}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert!(events[0].2["message_id"].is_null(), "{:?}", events[0]);
}
