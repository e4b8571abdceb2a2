//! The dashboard's pages send a visitor who is not signed in to the sign-in
//! page with a plain 302, before anything is rendered.
//!
//! The pages redirect by themselves too, for navigation in the browser.
//! Answering here spares the server a render that ends in a redirect, and
//! keeps leptos's `<Redirect>` off the server, where it was seen to deadlock
//! in a lock inversion inside leptos's reactive owner tree.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::session;
use crate::app::encode_component;
use crate::db::users;
use crate::server::AppState;

/// Whether `path` is one of the dashboard's pages.
pub fn is_dashboard_page(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

/// Redirects a request for a dashboard page to `/login?next=<page>` unless
/// its session belongs to an active user.
pub async fn redirect_signed_out(
    State(state): State<AppState>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    let page = matches!(*request.method(), Method::GET | Method::HEAD)
        && is_dashboard_page(request.uri().path());
    if !page {
        return next.run(request).await;
    }
    let signed_in = match session::user_id(&session).await {
        Ok(Some(user_id)) => match users::find_by_id(&state.db, &user_id).await {
            Ok(user) => user.is_some_and(|user| user.is_active()),
            // Let the page say what went wrong.
            Err(_) => return next.run(request).await,
        },
        Ok(None) => false,
        Err(_) => return next.run(request).await,
    };
    if signed_in {
        return next.run(request).await;
    }
    let login = format!("/login?next={}", encode_component(request.uri().path()));
    (StatusCode::FOUND, [(header::LOCATION, login)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::is_dashboard_page;

    #[test]
    fn dashboard_pages_are_recognised() {
        assert!(is_dashboard_page("/dashboard"));
        assert!(is_dashboard_page("/dashboard/keys"));
        assert!(!is_dashboard_page("/dashboards"));
        assert!(!is_dashboard_page("/login"));
    }
}
