//! The OpenAPI 3 document of the control surface, served at `/openapi.json`.
//!
//! It is not written by hand: every route is registered through
//! `utoipa-actix-web` from its `#[utoipa::path]` annotation (see
//! [`super::configure`]), so the router and this document are built from
//! the same list and cannot drift apart.

use actix_web::{get, web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

/// Title, version and the shared components; paths are added as routes
/// are registered.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "lark-service control surface",
        description = "Health, metrics, the operator API under `/admin` (bearer `ADMIN_TOKEN`), and the open platform's HTTP entry points."
    ),
    components(schemas(super::error::ErrorBody)),
    modifiers(&BearerToken),
    tags(
        (name = "health", description = "liveness, readiness and metrics"),
        (name = "admin", description = "the operator API; `Authorization: Bearer $ADMIN_TOKEN`"),
        (name = "platform", description = "called by the open platform or the user's browser"),
    )
)]
struct ControlSurface;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole document, as the router registers it.
pub fn document() -> Document {
    let (_, document) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ControlSurface::openapi())
        .configure(super::configure)
        .split_for_parts();
    document
}

/// The document as served; rendered once at start-up.
pub struct Rendered(pub String);

/// This document.
#[utoipa::path(tag = "health", responses((status = 200, description = "OpenAPI 3 JSON", body = Object)))]
#[get("/openapi.json")]
pub async fn openapi_json(doc: web::Data<Rendered>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}
