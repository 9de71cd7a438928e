//! Files on every combination of database and storage (local directory, S3-compatible):
//! byte-identical round trips, ranges, exact type checks, limits that leave nothing behind,
//! hostile names, concurrency, ownership and deletion.

use colloquy::domain::Role;
use futures_util::StreamExt;
use object_store::ObjectStore;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{
    Backend, Part, Storage, TestApp, assert_envelope, multipart, storage_overrides,
};
use crate::on_every_store;

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
];
const PDF: &[u8] = include_bytes!("fixtures/hello.pdf");

struct FileApp {
    app: TestApp,
    _dir: tempfile::TempDir,
}

async fn spawn(backend: Backend, storage: Storage, extra: &[(&str, &str)]) -> Option<FileApp> {
    let dir = tempfile::tempdir().unwrap();
    let owned = storage_overrides(storage, dir.path()).await?;
    let mut overrides: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    overrides.extend_from_slice(extra);
    let app = TestApp::spawn_with(backend, &overrides).await?;
    Some(FileApp { app, _dir: dir })
}

/// How many objects the app's file storage holds.
async fn stored_objects(app: &TestApp) -> usize {
    let objects = colloquy::files::storage::build(&app.config.files).unwrap();
    objects
        .list(None)
        .filter_map(|o| async move { o.ok() })
        .count()
        .await
}

on_every_store!(
    round_trip_ranges_and_delete,
    type_checks_leave_nothing,
    over_limit_leaves_nothing,
    names_concurrency_and_ownership
);

async fn round_trip_ranges_and_delete(backend: Backend, storage: Storage) {
    let Some(FileApp { app, .. }) = spawn(backend, storage, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let text = "Revenue: 12 %\nCosts: 3 %\n".repeat(50);
    let response = app
        .upload(
            &alice,
            &[
                (Some("pixel.png"), Some("image/png"), PNG),
                (
                    Some("notes.md"),
                    Some("text/markdown; charset=utf-8"),
                    text.as_bytes(),
                ),
            ],
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let files = body["data"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["mime"], "image/png");
    assert_eq!(files[0]["size"], PNG.len());
    assert_eq!(files[0]["sha256"], hex::encode(Sha256::digest(PNG)));
    let png_id = files[0]["id"].as_str().unwrap().to_owned();
    let md_id = files[1]["id"].as_str().unwrap().to_owned();

    // Byte-identical, with the verified type and safe headers.
    let response = app
        .get(&format!("/v1/files/{png_id}/content"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"pixel.png\"; filename*=UTF-8''pixel.png"
    );
    assert_eq!(h["accept-ranges"], "bytes");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(&response.bytes().await.unwrap()[..], PNG);

    // Ranges and conditional requests.
    let part = app
        .get(&format!("/v1/files/{md_id}/content"))
        .bearer_auth(&alice)
        .header("range", "bytes=9-12")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 9-12/{}", text.len())
    );
    assert_eq!(part.text().await.unwrap(), &text[9..13]);
    let tail = app
        .get(&format!("/v1/files/{md_id}/content"))
        .bearer_auth(&alice)
        .header("range", "bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.text().await.unwrap(), &text[text.len() - 3..]);
    let beyond = app
        .get(&format!("/v1/files/{md_id}/content"))
        .bearer_auth(&alice)
        .header("range", "bytes=99999-")
        .send()
        .await
        .unwrap();
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", text.len())
    );
    assert_envelope(beyond, 416, "range_not_satisfiable").await;
    let cached = app
        .get(&format!("/v1/files/{png_id}/content"))
        .bearer_auth(&alice)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);

    // Listing, metadata, text for the chat (extracted once, then cached).
    let list: Value = app
        .get("/v1/files?limit=1")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (list["data"][0]["id"].as_str(), list["has_more"].as_bool()),
        (Some(md_id.as_str()), Some(true))
    );
    let meta: Value = app
        .get(&format!("/v1/files/{png_id}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["name"], "pixel.png");
    for _ in 0..2 {
        let t: Value = app
            .get(&format!("/v1/files/{md_id}/text"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(t["text"], text);
        assert_eq!(t["truncated"], false);
    }
    let response = app
        .get(&format!("/v1/files/{png_id}/text"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 415, "unsupported_media_type").await;

    // Delete, then 404 everywhere, and the bytes are gone.
    let before = stored_objects(&app).await;
    let deleted = app
        .client
        .delete(app.url(&format!("/v1/files/{md_id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    for path in [
        format!("/v1/files/{md_id}"),
        format!("/v1/files/{md_id}/content"),
        format!("/v1/files/{md_id}/text"),
    ] {
        let response = app.get(&path).bearer_auth(&alice).send().await.unwrap();
        assert_envelope(response, 404, "not_found").await;
    }
    assert_eq!(
        stored_objects(&app).await,
        before - 2,
        "the file and its cached text are gone"
    );
}

async fn type_checks_leave_nothing(backend: Backend, storage: Storage) {
    let Some(FileApp { app, .. }) = spawn(backend, storage, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let exe: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00This program cannot be run in DOS mode";
    let cases: Vec<(Part<'_>, &str)> = vec![
        (
            (Some("pixel.txt"), Some("text/plain"), PNG),
            "a PNG declared as text",
        ),
        (
            (Some("cat.png"), Some("image/png"), exe),
            "an executable declared as an image",
        ),
        (
            (Some("cat.jpg"), Some("image/jpeg; x-malware"), PNG),
            "a parameter smuggled into the type",
        ),
        (
            (Some("cat.png"), Some("image/png; charset=utf-8"), PNG),
            "a charset on an image",
        ),
        (
            (Some("tool.exe"), Some("application/x-msdownload"), exe),
            "a type not on the list",
        ),
        ((Some("noname"), None, PNG), "no declared type"),
        (
            (
                Some("bad.txt"),
                Some("text/plain"),
                b"valid start \xff\xfe broken",
            ),
            "invalid UTF-8",
        ),
        (
            (
                Some("doc.pdf"),
                Some("application/pdf"),
                b"not really a pdf",
            ),
            "a PDF without its magic",
        ),
    ];
    for (part, why) in cases {
        let response = app.upload(&alice, &[part]).await;
        assert_eq!(response.status(), 415, "{why}");
        assert_envelope(response, 415, "unsupported_media_type").await;
    }
    // All or nothing: a good file before a bad one is not kept.
    let response = app
        .upload(
            &alice,
            &[
                (Some("ok.png"), Some("image/png"), PNG),
                (Some("bad.png"), Some("image/png"), exe),
            ],
        )
        .await;
    assert_eq!(response.status(), 415);
    // Not multipart at all; an empty form; a viewer.
    let response = app
        .post("/v1/files")
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_envelope(response, 415, "unsupported_media_type").await;
    let response = app.upload(&alice, &[]).await;
    assert_envelope(response, 422, "invalid_field").await;
    let viewer = app.token("victor", Role::Viewer);
    let response = app
        .upload(&viewer, &[(Some("ok.png"), Some("image/png"), PNG)])
        .await;
    assert_envelope(response, 403, "forbidden").await;

    let list: Value = app
        .get("/v1/files")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "no metadata left"
    );
    assert_eq!(stored_objects(&app).await, 0, "no bytes left");
}

async fn over_limit_leaves_nothing(backend: Backend, storage: Storage) {
    let Some(FileApp { app, .. }) = spawn(
        backend,
        storage,
        &[("COLLOQUY_FILES__MAX_UPLOAD_BYTES", "20000")],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let big = "x".repeat(50_000);
    let response = app
        .upload(
            &alice,
            &[(Some("big.txt"), Some("text/plain"), big.as_bytes())],
        )
        .await;
    assert_envelope(response, 413, "payload_too_large").await;
    // Streamed in chunks, no length declared: refused while streaming.
    let (content_type, body) = multipart(&[(Some("big.txt"), Some("text/plain"), big.as_bytes())]);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let response = app
        .post("/v1/files")
        .bearer_auth(&alice)
        .header("content-type", content_type)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 413, "payload_too_large").await;
    // Just under the limit is fine.
    let fits = "y".repeat(20_000);
    assert_eq!(
        app.upload(
            &alice,
            &[(Some("fits.txt"), Some("text/plain"), fits.as_bytes())]
        )
        .await
        .status(),
        201
    );
    let list: Value = app
        .get("/v1/files")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(stored_objects(&app).await, 1, "only the file that fits");
}

async fn names_concurrency_and_ownership(backend: Backend, storage: Storage) {
    let Some(FileApp { app, .. }) = spawn(backend, storage, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::User);
    let hostile = [
        ("../../etc/passwd", "passwd"),
        ("..\\\\..\\\\boot.ini", "boot.ini"),
        ("  .hidden  ", "hidden"),
        ("naïve résumé.txt", "naïve résumé.txt"),
    ];
    for (raw, shown) in hostile {
        let body: Value = app
            .upload(&alice, &[(Some(raw), Some("text/plain"), b"hello")])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["data"][0]["name"], shown, "{raw}");
        let id: uuid::Uuid = body["data"][0]["id"].as_str().unwrap().parse().unwrap();
        let stored = app.store.get_file(id).await.unwrap().unwrap();
        assert!(
            stored.storage_key.ends_with(&format!("files/{id}")),
            "{}",
            stored.storage_key
        );
        let response = app
            .get(&format!("/v1/files/{id}/content"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        // The header carries the cleaned name, ASCII-safe and RFC 8187-encoded.
        let disposition = response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            disposition,
            colloquy::files::names::content_disposition(shown),
            "{raw}"
        );
    }
    let response = app
        .upload(
            &alice,
            &[(Some("naïve résumé.txt"), Some("text/plain"), b"x")],
        )
        .await;
    let body: Value = response.json().await.unwrap();
    let id = body["data"][0]["id"].as_str().unwrap();
    let response = app
        .get(&format!("/v1/files/{id}/content"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"na_ve r_sum_.txt\"; filename*=UTF-8''na%C3%AFve%20r%C3%A9sum%C3%A9.txt"
    );

    // Concurrent uploads all land, each once.
    let uploads = (0..6).map(|n| {
        let content = format!("file number {n}");
        let app = &app;
        let alice = &alice;
        async move {
            app.upload(
                alice,
                &[(Some("c.txt"), Some("text/plain"), content.as_bytes())],
            )
            .await
            .status()
        }
    });
    let statuses = futures_util::future::join_all(uploads).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let list: Value = app
        .get("/v1/files?limit=100")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 11);

    // Another user sees none of it: 404, never 403.
    let id = list["data"][0]["id"].as_str().unwrap();
    for path in [
        format!("/v1/files/{id}"),
        format!("/v1/files/{id}/content"),
        format!("/v1/files/{id}/text"),
    ] {
        let response = app.get(&path).bearer_auth(&bob).send().await.unwrap();
        assert_envelope(response, 404, "not_found").await;
    }
    let response = app
        .client
        .delete(app.url(&format!("/v1/files/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 404, "not_found").await;
    let theirs: Value = app
        .get("/v1/files")
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn pdf_and_docx_text_is_extracted() {
    let Some(FileApp { app, .. }) = spawn(
        Backend::Sqlite,
        Storage::Local,
        &[("COLLOQUY_FILES__TEXT_BUDGET_CHARS", "20")],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let docx = docx_with("Board minutes: approve the budget.");
    let docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    let body: Value = app
        .upload(
            &alice,
            &[
                (Some("q3.pdf"), Some("application/pdf"), PDF),
                (Some("minutes.docx"), Some(docx_type), &docx),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let pdf_id = body["data"][0]["id"].as_str().unwrap();
    let docx_id = body["data"][1]["id"].as_str().unwrap();
    let pdf: Value = app
        .get(&format!("/v1/files/{pdf_id}/text"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(pdf["text"].as_str().unwrap().contains("Quarterly"), "{pdf}");
    assert_eq!(pdf["truncated"], true, "cut at the 20-character budget");
    let doc: Value = app
        .get(&format!("/v1/files/{docx_id}/text"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["text"], "Board minutes: appro");
}

/// A minimal .docx: a zip with the content types and the document part.
fn docx_with(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#).unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    write!(zip, r#"<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"#).unwrap();
    zip.finish().unwrap().into_inner()
}
