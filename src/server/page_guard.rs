//! Guards the dashboard's pages before they render: a visitor who is not
//! signed in gets a plain 302 to the sign-in page, and a signed-in user who
//! is not an admin gets 403 on the admin pages.
//!
//! The pages redirect by themselves too, for navigation in the browser, and
//! render their own "admins only" notice. Answering here makes the HTTP
//! status right, which a streamed page cannot always do itself, spares the
//! server a render that ends in a redirect, and keeps leptos's `<Redirect>`
//! off the server, where it was seen to deadlock in a lock inversion inside
//! leptos's reactive owner tree.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::app::encode_component;
use crate::auth::session;
use crate::db::users::{self, UserRow};
use crate::state::AppState;

/// Whether `path` is one of the dashboard's pages.
pub fn is_dashboard_page(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

/// Whether `path` is one of the admin pages.
pub fn is_admin_page(path: &str) -> bool {
    path == "/dashboard/admin" || path.starts_with("/dashboard/admin/")
}

/// Redirects a page request without an active user to
/// `/login?next=<page>`, and sets 403 on an admin page rendered for a user
/// who is not an admin.
pub async fn guard(
    State(state): State<AppState>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    if !is_dashboard_page(request.uri().path()) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    // Should the session or the database fail, the page says what went wrong.
    let Ok(user) = active_user(&state, &session).await else {
        return next.run(request).await;
    };
    let forbidden = match user {
        Some(user) => {
            is_admin_page(&path) && !state.config.is_admin(&user.role, user.email.as_deref())
        }
        None if matches!(*request.method(), Method::GET | Method::HEAD) => {
            let login = format!("/login?next={}", encode_component(&path));
            return (StatusCode::FOUND, [(header::LOCATION, login)]).into_response();
        }
        None => false,
    };
    let mut response = next.run(request).await;
    if forbidden && response.status().is_success() {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

/// The session's user, if it is signed in, in the user's current session
/// epoch, and the user is active.
async fn active_user(state: &AppState, session: &Session) -> Result<Option<UserRow>, ()> {
    let Some(user_id) = session::user_id(session).await.map_err(drop)? else {
        return Ok(None);
    };
    let user = users::find_by_id(&state.db, &user_id).await.map_err(drop)?;
    let Some(user) = user.filter(UserRow::is_active) else {
        return Ok(None);
    };
    // A session from before a password reset or change is signed out.
    if !session::is_current(session, user.session_epoch)
        .await
        .map_err(drop)?
    {
        session::sign_out(session).await.map_err(drop)?;
        return Ok(None);
    }
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::{is_admin_page, is_dashboard_page};

    #[test]
    fn dashboard_and_admin_pages_are_recognised() {
        assert!(is_dashboard_page("/dashboard"));
        assert!(is_dashboard_page("/dashboard/keys"));
        assert!(!is_dashboard_page("/dashboards"));
        assert!(!is_dashboard_page("/login"));
        assert!(is_admin_page("/dashboard/admin"));
        assert!(is_admin_page("/dashboard/admin/users"));
        assert!(!is_admin_page("/dashboard/administrator"));
        assert!(!is_admin_page("/dashboard/usage"));
    }
}
