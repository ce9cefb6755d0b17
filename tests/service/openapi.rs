//! `/openapi.json` documents every route the router serves, and every
//! documented route is served.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::support::{spawn_app, TestDb, ADMIN_TOKEN};

/// The control surface DESIGN.md promises, plus our own additions.
const PROMISED: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/oauth/callback"),
    ("post", "/webhook/event"),
    ("get", "/admin/actors"),
    ("post", "/admin/actors/{name}/restart"),
    ("post", "/admin/apaas/ai"),
    ("post", "/admin/auth-cards"),
    ("post", "/admin/device-logins"),
    ("get", "/admin/sessions"),
    ("get", "/admin/sessions/{id}"),
    ("post", "/admin/sessions/{id}/revoke"),
    ("get", "/admin/outbox"),
    ("post", "/admin/outbox/{id}/retry"),
    ("post", "/admin/sync"),
    ("get", "/admin/sync/{id}"),
];

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| !matches!(k.as_str(), "parameters" | "summary" | "description"))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

#[actix_rt::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let app = spawn_app(TestDb::sqlite()).await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("OpenAPI JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let documented = operations(&doc);
    for (method, path) in PROMISED {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in /openapi.json"
        );
    }

    let client = reqwest::Client::new();
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{name}", "no-such-actor");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let response = client
            .request(method.clone(), app.url(&concrete))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: method not routed");
        assert!(
            !body.contains("\"no_route\""),
            "{method} {path} is documented but not served: {body}"
        );
        if path.starts_with("/admin/") {
            let secured = &doc["paths"][path.as_str()][method.as_str().to_lowercase()]["security"];
            assert!(
                secured.is_array(),
                "{method} {path} does not declare the bearer token"
            );
        }
    }
    app.stop().await;
}

/// `configure` registers routes through utoipa-actix-web's `.service`,
/// which documents them; actix's own `.route`/`web::resource`/`web::scope`
/// would serve a route the document does not show.
#[test]
fn routes_are_only_registered_through_documented_services() {
    let http = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut stack = vec![http];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/http") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source");
            for bypass in [".route(", "web::resource(", "web::scope("] {
                assert!(
                    !source.contains(bypass),
                    "{} registers a route with `{bypass}`, which /openapi.json would not show",
                    path.display()
                );
            }
        }
    }
}
