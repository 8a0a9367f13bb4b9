use std::fmt::Write;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;

use crate::openapi::ApiDoc;

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes")
});

static REFERENCE: LazyLock<String> = LazyLock::new(render_reference);

/// This OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

/// An API reference page, rendered from this document.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub(crate) async fn reference() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(REFERENCE.as_str())
}

/// A self-contained page (no scripts from elsewhere, so it works offline) rendered from the same
/// document as `/openapi.json`.
fn render_reference() -> String {
    let document = ApiDoc::openapi();
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Conveyor API reference</title>\
         <style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;line-height:1.4}\
         code{background:#f3f3f3;padding:0 .2rem}.op{border-top:1px solid #ddd;padding:.5rem 0}\
         .method{font-weight:bold;text-transform:uppercase;display:inline-block;width:4.5rem}</style>\
         </head><body>",
    );
    let _ = write!(
        page,
        "<h1>{}</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {}).</p>",
        escape(&document.info.title),
        escape(document.info.description.as_deref().unwrap_or_default()),
        escape(
            &serde_json::to_value(&document.openapi)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ),
    );
    for (path, item) in &document.paths.paths {
        let operations = [
            ("get", &item.get),
            ("post", &item.post),
            ("delete", &item.delete),
            ("put", &item.put),
            ("patch", &item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                render_operation(&mut page, method, path, operation);
            }
        }
    }
    page.push_str("</body></html>");
    page
}

fn render_operation(page: &mut String, method: &str, path: &str, operation: &Operation) {
    let _ = write!(
        page,
        "<div class=\"op\"><h3><span class=\"method\">{method}</span><code>{}</code> {}</h3><p>{}</p><ul>",
        escape(path),
        escape(operation.summary.as_deref().unwrap_or_default()),
        escape(operation.description.as_deref().unwrap_or_default()),
    );
    for (status, response) in &operation.responses.responses {
        let description = match response {
            utoipa::openapi::RefOr::T(response) => response.description.clone(),
            utoipa::openapi::RefOr::Ref(reference) => reference.ref_location.clone(),
        };
        let _ = write!(
            page,
            "<li><code>{}</code> {}</li>",
            escape(status),
            escape(&description)
        );
    }
    page.push_str("</ul></div>");
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
