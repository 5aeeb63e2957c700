//! Whatever happens to one request's transaction — its caller stops waiting
//! halfway, the database refuses one of its statements — the connection it
//! used goes back to the pool clean, and nothing of the failed write stays.
//! Checked at every instant a store call can be dropped at, and on every
//! write operation of the API, then by the requests that follow on the same
//! pool.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use std::sync::Arc;
use std::task::Poll;

use sea_orm::sea_query::Expr;
use segments_conditions::Registry;
use segments_domain::Label;
use segments_store::{DatabaseSettings, Store};
use segments_tests::{Backend, TestApp, TestDatabase, on_both_backends};
use serde_json::{Value, json};

/// One request: method, path and body.
type Call = (Method, String, Option<Value>);

/// Creates what the writes of one round act on and returns every write
/// operation of the API, in an order where each finds what it needs even if
/// the writes before it failed (deletions last).
async fn every_write(app: &TestApp, round: usize) -> Vec<Call> {
    let old = format!("old{round}");
    let contact = app
        .contact(json!({"name": format!("Fixture {round}"), "tags": [old], "attributes": {"plan": "pro"}}))
        .await["id"]
        .as_i64()
        .unwrap();
    let other = app
        .contact(json!({"name": format!("Other {round}"), "external_id": format!("x-{round}")}))
        .await["id"]
        .as_i64()
        .unwrap();
    let tags = app.get("/v1/tags?limit=1000").await.expect(200);
    let tag = tags["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == old.as_str())
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let list = app
        .segment(json!({"name": format!("List {round}"), "kind": "static"}))
        .await;
    let dynamic = app
        .segment(
            json!({"name": format!("Dynamic {round}"), "kind": "dynamic",
            "conditions": {"type": "tag", "params": {"op": "has_any", "tags": [old]}}}),
        )
        .await;
    app.attribute(&format!("spare{round}"), "text").await;
    let key = app
        .post("/v1/api-keys", json!({"name": format!("spare {round}")}))
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let post = |path: String, body: Value| (Method::POST, path, Some(body));
    vec![
        post(
            "/v1/contacts".into(),
            json!({"name": format!("New {round}"), "tags": ["fresh"], "attributes": {"plan": "free"}}),
        ),
        post(
            "/v1/contacts/bulk-upsert".into(),
            json!({"contacts": [
                {"external_id": format!("x-{round}"), "name": format!("Other {round}"), "tags": ["bulk"]},
                {"external_id": format!("y-{round}"), "name": "Bulk new", "attributes": {"plan": "pro"}},
            ]}),
        ),
        (
            Method::PATCH,
            format!("/v1/contacts/{contact}"),
            Some(json!({"name": "Renamed", "opted_in": true, "tags": [old, "patched"]})),
        ),
        (
            Method::PUT,
            format!("/v1/contacts/{contact}/attributes/plan"),
            Some(json!({"value": "enterprise"})),
        ),
        post(
            format!("/v1/contacts/{contact}/tags"),
            json!({"tags": ["added"]}),
        ),
        post(
            format!("/v1/contacts/{contact}/tags/remove"),
            json!({"tags": ["added"]}),
        ),
        post(
            "/v1/tags/apply".into(),
            json!({"contact_ids": [contact, other], "tags": ["applied"]}),
        ),
        post(
            "/v1/tags/remove".into(),
            json!({"contact_ids": [contact, other], "tags": ["applied"]}),
        ),
        (
            Method::PATCH,
            format!("/v1/tags/{tag}"),
            Some(json!({"name": format!("renamed{round}")})),
        ),
        post(
            "/v1/attributes".into(),
            json!({"key": format!("extra{round}"), "type": "number"}),
        ),
        post(
            "/v1/segments".into(),
            json!({"name": format!("Made {round}"), "kind": "dynamic",
                "conditions": {"type": "opt_in", "params": {"opted_in": true}}}),
        ),
        (
            Method::PATCH,
            format!("/v1/segments/{dynamic}"),
            Some(json!({"name": format!("Edited {round}"),
                "conditions": {"type": "opt_in", "params": {"opted_in": false}}})),
        ),
        post(
            format!("/v1/segments/{list}/members"),
            json!({"contact_ids": [contact], "names": [format!("Other {round}")]}),
        ),
        post(
            format!("/v1/segments/{list}/members/remove"),
            json!({"contact_ids": [other]}),
        ),
        post(
            "/v1/api-keys".into(),
            json!({"name": format!("made {round}")}),
        ),
        (
            Method::DELETE,
            format!("/v1/contacts/{contact}/attributes/plan"),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/contacts/{contact}/tags/patched"),
            None,
        ),
        (Method::DELETE, format!("/v1/attributes/spare{round}"), None),
        (Method::DELETE, format!("/v1/api-keys/{key}"), None),
        (Method::DELETE, format!("/v1/segments/{dynamic}"), None),
        (Method::DELETE, format!("/v1/tags/{tag}"), None),
        (Method::DELETE, format!("/v1/contacts/{other}"), None),
    ]
}

/// Everything a client can read of the workspace, to compare before and
/// after a write that failed.
async fn observable(app: &TestApp) -> Value {
    let mut state = serde_json::Map::new();
    for path in [
        "/v1/contacts?limit=1000",
        "/v1/tags?limit=1000",
        "/v1/segments?limit=1000",
        "/v1/attributes?limit=1000",
        "/v1/api-keys?limit=1000",
    ] {
        state.insert(path.into(), app.get(path).await.expect(200));
    }
    Value::Object(state)
}

async fn database(app: &TestApp) -> DatabaseConnection {
    Database::connect(app.database_url()).await.unwrap()
}

/// Connections of this app's database that sit idle inside a transaction:
/// each is a pooled connection some request left in one.
async fn idle_in_transaction(app: &TestApp, db: &DatabaseConnection) -> i64 {
    if app.backend != Backend::Postgres {
        return 0;
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// A thousand ordinary requests, eight at a time, from two workspaces:
/// every one must succeed on the pool the failures left behind.
async fn thousand_requests_succeed(app: &TestApp) {
    let other = app.other_workspace().await;
    let outcomes: Vec<(String, u16, Value)> = futures::stream::iter(0..1000usize)
        .map(|i| {
            let key = if i % 2 == 0 { app.key.clone() } else { other.clone() };
            async move {
                let (method, path, body) = match i % 4 {
                    0 => (Method::GET, "/v1/contacts?limit=5".to_owned(), None),
                    1 => (
                        Method::POST,
                        "/v1/contacts".to_owned(),
                        Some(json!({"name": format!("After {i}"), "tags": ["after"]})),
                    ),
                    2 => (Method::GET, "/v1/segments".to_owned(), None),
                    _ => (
                        Method::POST,
                        "/v1/contacts/search".to_owned(),
                        Some(json!({"conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["after"]}}, "limit": 5})),
                    ),
                };
                let reply = app.call_as(&key, method.clone(), &path, body).await;
                (format!("{method} {path}"), reply.status.as_u16(), reply.body)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, status, _)| !(200..300).contains(status))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 1000 requests failed after the provoked failures; first: {:?}",
        failed.len(),
        failed.first()
    );
}

/// Store calls whose caller stops waiting — in `BEGIN`, in a statement, in
/// `COMMIT` — as a request's deadline or a `try_join!` whose other half
/// failed stops them: each call is dropped at its first wait, then at its
/// second, and so on until it finishes, so that every instant it can be
/// abandoned at is tried. With one pooled connection, every call reuses the
/// connection the last abandoned call left behind.
async fn abandoned_store_calls_leave_no_transaction_open(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let settings = DatabaseSettings {
        max_connections: 1,
        ..database.settings()
    };
    let store = Store::connect(&settings, Arc::new(Registry::builtin()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let (workspace, _) = store.create_workspace(&label("first")).await.unwrap();
    let observer = Database::connect(database.url()).await.unwrap();
    let mut abandoned = 0;
    for round in 0..3 {
        for kind in 0..2 {
            for waits in 1.. {
                let call = async {
                    if kind == 0 {
                        store
                            .create_workspace(&label("abandoned"))
                            .await
                            .map(|_| ())
                    } else {
                        store
                            .count_where(workspace.id, Expr::val(true), None)
                            .await
                            .map(|_| ())
                    }
                };
                match abandoned_at_wait(waits, call).await {
                    Some(done) => {
                        done.unwrap();
                        break;
                    }
                    None => {
                        abandoned += 1;
                        // The next call on the connection would hide a
                        // transaction left open (its BEGIN joins it, its
                        // COMMIT ends it): look before there is one.
                        let open = left_open(backend, &observer).await;
                        assert!(
                            !open,
                            "kind {kind}, dropped at wait {waits}: a transaction stayed open"
                        );
                    }
                }
                assert!(waits < 10_000, "round {round}: the call never finished");
            }
        }
    }
    // Each call waits at least once (for its BEGIN).
    assert!(abandoned >= 6, "only {abandoned} calls were abandoned");
    // And the pool's one connection still commits what it is given.
    let (after, key) = store.create_workspace(&label("after")).await.unwrap();
    let reread = Store::connect(&database.settings(), Arc::new(Registry::builtin()))
        .await
        .unwrap();
    let principal = reread.authenticate(&key.secret).await.unwrap();
    assert_eq!(principal.map(|p| p.workspace_id), Some(after.id));
}

/// Whether a transaction stays open on the database of `observer` (which
/// has none itself) for half a second: a dropped transaction's rollback
/// reaches the server as its connection returns to the pool, a moment later.
async fn left_open(backend: Backend, observer: &DatabaseConnection) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    loop {
        let open = if backend == Backend::Postgres {
            let row = observer
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                     AND state LIKE 'idle in transaction%'",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap() > 0
        } else {
            // An open write transaction holds SQLite's write lock: taking
            // it at once, without waiting, proves none is held.
            observer
                .execute_unprepared("PRAGMA busy_timeout = 0")
                .await
                .unwrap();
            match observer.execute_unprepared("BEGIN IMMEDIATE").await {
                Ok(_) => {
                    observer.execute_unprepared("ROLLBACK").await.unwrap();
                    false
                }
                Err(_) => true,
            }
        };
        if !open || std::time::Instant::now() > deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `call` until it has waited `waits` times, and drops it there (right
/// after it started its `waits`-th wait) unless it finished before.
async fn abandoned_at_wait<T>(waits: usize, call: impl Future<Output = T>) -> Option<T> {
    let mut call = std::pin::pin!(call);
    let mut waited = 0;
    std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
        Poll::Ready(done) => Poll::Ready(Some(done)),
        Poll::Pending => {
            waited += 1;
            if waited >= waits {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
    })
    .await
}

fn label(s: &str) -> Label {
    Label::parse(s).unwrap()
}

/// Turns on, for one table at a time, a trigger that fails every row
/// written to it, and runs every write operation under it: a write
/// either succeeds whole, or answers 500 and leaves nothing behind.
async fn refused_statements_inside_every_write_leave_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("plan", "text").await;
    let db = database(&app).await;
    let tables = install_failure_switches(&db).await;
    assert!(tables.len() >= 10, "{tables:?}");
    let mut refused = 0;
    for (round, table) in tables.iter().enumerate() {
        let writes = every_write(&app, round).await;
        for (method, path, body) in writes {
            let before = observable(&app).await;
            switch(&db, Some(table)).await;
            let reply = app.call(method.clone(), &path, body).await;
            switch(&db, None).await;
            let status = reply.status.as_u16();
            if status == 500 {
                reply.problem(500);
                refused += 1;
                assert_eq!(
                    observable(&app).await,
                    before,
                    "{method} {path} failed on {table} and left part of its write"
                );
            } else {
                assert!(
                    (200..300).contains(&status),
                    "{method} {path} with {table} refusing: {status} {}",
                    reply.body
                );
            }
        }
    }
    assert!(refused > 40, "only {refused} writes met a refusing table");
    assert_eq!(idle_in_transaction(&app, &db).await, 0);
    thousand_requests_succeed(&app).await;
    assert_eq!(idle_in_transaction(&app, &db).await, 0);
    app.stop().await;
}

/// A workspace deleted from the database (its keys with it) while the API
/// still trusts a key it authenticated moments ago: every write answers
/// 401, as the next authentication would — not 500.
async fn writes_of_a_deleted_workspace_answer_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("plan", "text").await;
    let writes = every_write(&app, 0).await;
    let workspace = app.workspace_id().await;
    // The key is trusted from here on (`auth_cache`).
    app.get("/v1/contacts").await.expect(200);
    database(&app)
        .await
        .execute_unprepared(&format!(
            "DELETE FROM workspaces WHERE id = {}",
            workspace.0
        ))
        .await
        .unwrap();
    let mut wrong = Vec::new();
    for (method, path, body) in writes {
        let reply = app.call(method.clone(), &path, body).await;
        if reply.status != 401 {
            wrong.push(format!("{method} {path}: {} {}", reply.status, reply.body));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    app.stop().await;
}

/// Adds, to every table of the schema, triggers that refuse any row written
/// while `test_failure_switch` names the table. Returns the tables.
async fn install_failure_switches(db: &DatabaseConnection) -> Vec<String> {
    let backend = db.get_database_backend();
    let list = if backend == DbBackend::Postgres {
        "SELECT table_name AS name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
         AND table_name <> 'seaql_migrations' ORDER BY 1"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations' ORDER BY 1"
    };
    let tables: Vec<String> = db
        .query_all_raw(Statement::from_string(backend, list))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("", "name").unwrap())
        .collect();
    db.execute_unprepared("CREATE TABLE test_failure_switch (name TEXT NOT NULL)")
        .await
        .unwrap();
    if backend == DbBackend::Postgres {
        db.execute_unprepared(
            "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF EXISTS (SELECT 1 FROM test_failure_switch WHERE name = TG_TABLE_NAME) THEN \
             RAISE EXCEPTION 'refused by the test on %', TG_TABLE_NAME; END IF; \
             IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$",
        )
        .await
        .unwrap();
    }
    for table in &tables {
        if backend == DbBackend::Postgres {
            db.execute_unprepared(&format!(
                "CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE OR DELETE ON \"{table}\" \
                 FOR EACH ROW EXECUTE FUNCTION test_refuse()"
            ))
            .await
            .unwrap();
        } else {
            for op in ["INSERT", "UPDATE", "DELETE"] {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER test_refuse_{table}_{op} BEFORE {op} ON \"{table}\" \
                     WHEN EXISTS (SELECT 1 FROM test_failure_switch WHERE name = '{table}') \
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                ))
                .await
                .unwrap();
            }
        }
    }
    tables
}

async fn switch(db: &DatabaseConnection, table: Option<&str>) {
    db.execute_unprepared("DELETE FROM test_failure_switch")
        .await
        .unwrap();
    if let Some(table) = table {
        db.execute_unprepared(&format!(
            "INSERT INTO test_failure_switch (name) VALUES ('{table}')"
        ))
        .await
        .unwrap();
    }
}

on_both_backends!(
    abandoned_store_calls_leave_no_transaction_open,
    refused_statements_inside_every_write_leave_nothing,
    writes_of_a_deleted_workspace_answer_401,
);
